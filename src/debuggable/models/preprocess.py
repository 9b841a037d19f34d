"""Image preprocessing shared by the image adapters.

Raw image batches are float tensors (B, C, H, W) with values in [0, 1]. Pretrained
networks want a fixed number of channels, a fixed resolution and their own
normalisation; :class:`ImagePreprocess` does all three differentiably, so gradients
(attacks, attributions) flow back to the [0, 1] pixels.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from debuggable.errors import DebuggableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(batch, *, name: str = "batch") -> torch.Tensor:
    """Validate a raw image batch and return it as a floating tensor.

    Args:
        batch: (B, C, H, W) tensor (or array) of images in [0, 1].
        name: the argument name used in error messages.

    Returns:
        The batch as a floating-point tensor (float32 unless it already was floating).
    """
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], str):
        raise DebuggableError(f"{name}: got a list of strings, but this backbone expects images of shape (B, C, H, W).")
    if not isinstance(batch, torch.Tensor):
        try:
            batch = torch.as_tensor(batch)
        except Exception:
            raise DebuggableError(
                f"{name}: got a {type(batch).__name__}, expected a float tensor of images of shape (B, C, H, W)."
            ) from None
    if batch.ndim != 4:
        raise DebuggableError(f"{name}: got shape {tuple(batch.shape)}, expected images of shape (B, C, H, W).")
    if not batch.is_floating_point():
        if batch.dtype == torch.uint8:
            batch = batch.to(torch.float32) / 255.0
        else:
            raise DebuggableError(f"{name}: got dtype {batch.dtype}, expected float images with values in [0, 1].")
    return batch


class ImagePreprocess(nn.Module):
    """[0, 1] images -> a pretrained network's input, differentiably.

    Steps: grayscale (C=1) is repeated to ``channels``; the batch is resized to
    ``size`` (bilinear, antialiased) when its spatial size differs; then
    ``(x - mean) / std`` per channel.

    Args:
        channels: channels the network expects (1 or 3).
        size: (H, W) or one int for square inputs; ``None`` keeps the input size.
        mean: per-channel mean (length ``channels``), in [0, 1] pixel units.
        std: per-channel standard deviation (length ``channels``).
    """

    def __init__(
        self,
        channels: int = 3,
        size: int | Sequence[int] | None = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) < 1:
                raise DebuggableError(f"size: got {size}, expected a positive int or a pair (H, W).")
        self.channels = int(channels)
        self.size = size
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() not in (1, self.channels) or std_t.numel() not in (1, self.channels):
            raise DebuggableError(
                f"mean/std: got {mean_t.numel()} and {std_t.numel()} values, expected 1 or {self.channels} (one per channel)."
            )
        if (std_t <= 0).any():
            raise DebuggableError(f"std: got {std_t.tolist()}, expected positive values.")
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, channels, size[0], size[1]) normalised."""
        x = check_images(x, name="batch")
        x = x.to(device=self.mean.device)
        c = x.shape[1]
        if c != self.channels:
            if c == 1:
                x = x.expand(-1, self.channels, -1, -1)
            elif c == 4 and self.channels == 3:
                x = x[:, :3]
            else:
                raise DebuggableError(
                    f"batch: got images with {c} channels, expected {self.channels} (or 1, which is repeated)."
                )
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, size={self.size}, mean={self.mean.flatten().tolist()}, "
            f"std={self.std.flatten().tolist()}"
        )
