"""Feature visualisation from noise (Olah et al., 2017; the paper's Fig. 3).

Synthesises an image that maximises one deep feature. The image is parametrised in
Fourier space with a 1/f amplitude scaling (``"fourier"``: favours natural-image
statistics and suppresses the high-frequency patterns a plain pixel parametrisation
falls into), or directly as pixels (``"pixel"``); colour images are decorrelated with
the usual ImageNet colour-correlation square root. Each step randomly shifts the
image by up to ``jitter`` pixels (transformation robustness) and an optional total
variation penalty smooths it. Pixels reach the model through a sigmoid, so they stay
in [0, 1]. Robust models give recognisable visualisations; standard ones mostly do not.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import (
    check_feature,
    check_float,
    check_image_backbone,
    check_int,
    eval_mode,
    feature_dim_of,
    resolve_device,
)

PARAMETRISATIONS = ("fourier", "pixel")

# Square root of the colour covariance of ImageNet (Lucid's decorrelation matrix).
_COLOUR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)


def _frequency_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freq, 1.0 / max(h, w)) ** decay_power
    # Normalised so a unit-variance spectrum gives unit-variance pixels (ortho FFT).
    scale = scale / np.sqrt(np.mean(scale**2))
    return torch.as_tensor(scale, dtype=torch.float32)


class _Image:
    """The parametrised images: ``params`` -> pixels (n, C, H, W) in [0, 1]."""

    def __init__(self, n: int, shape: tuple[int, int, int], parametrisation: str, decay_power: float,
                 generator: torch.Generator, device: torch.device, init_std: float):
        c, h, w = shape
        self.c, self.h, self.w = c, h, w
        self.kind = parametrisation
        if parametrisation == "fourier":
            spec = torch.randn((n, c, h, w // 2 + 1, 2), generator=generator) * init_std
            self.scale = _frequency_scale(h, w, decay_power).to(device)
        else:
            spec = torch.randn((n, c, h, w), generator=generator) * init_std
        self.params = spec.to(device).requires_grad_(True)
        colour = torch.as_tensor(_COLOUR_SQRT / np.max(np.linalg.norm(_COLOUR_SQRT, axis=0)))
        self.colour = colour.to(device)

    def pixels(self) -> torch.Tensor:
        if self.kind == "fourier":
            spec = torch.view_as_complex(self.params) * self.scale
            x = torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho")
        else:
            x = self.params
        if self.c == 3:
            x = torch.einsum("ij,bjhw->bihw", self.colour, x)
        return torch.sigmoid(x)


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward also lets through, where the unit is off, gradients that would
    switch it on (Lucid's "redirected ReLU"): a feature that is exactly 0 on the starting
    noise still gets a direction to grow in."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # The loss is minimised: grad < 0 means "increase this unit".
        return torch.where((x > 0) | (grad < 0), grad, torch.zeros_like(grad))


def _redirect_relus(module: Any) -> list[Any]:
    """Forward hooks making every (non in-place) ``nn.ReLU`` of ``module`` redirected; returns the handles."""
    handles = []
    if not isinstance(module, torch.nn.Module):
        return handles
    for m in module.modules():
        if isinstance(m, torch.nn.ReLU) and not m.inplace:
            handles.append(m.register_forward_hook(lambda mod, inputs, output: _RedirectedReLU.apply(inputs[0])))
    return handles


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def feature_visualisation(
    backbone: Any,
    feature: int | Sequence[int],
    *,
    shape: tuple[int, int, int],
    steps: int = 256,
    lr: float = 0.05,
    jitter: int = 2,
    parametrisation: str = "fourier",
    seed: int = 0,
    device: Any = None,
    decay_power: float = 1.0,
    tv_weight: float = 0.0,
    init_std: float = 0.01,
    redirect_steps: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """An image, synthesised from noise, that maximises feature ``feature``.

    Args:
        backbone: an image :class:`debuggable.models.Backbone`.
        feature: j, in ``0..D-1``; or a list of F indices, optimised together in one
            batch (each image its own feature).
        shape: (C, H, W) of the image the backbone eats.
        steps: Adam steps.
        lr: Adam learning rate.
        jitter: each step shifts the image by a random offset in ``-jitter..jitter``
            pixels per axis (0 turns it off).
        parametrisation: ``"fourier"`` (1/f-scaled spectrum) or ``"pixel"``.
        seed: seeds the starting noise and the jitter offsets.
        device: where to compute (default: the backbone's device).
        decay_power: the exponent of the 1/f amplitude scaling (``"fourier"`` only).
        tv_weight: weight of a total-variation penalty (0: none).
        init_std: standard deviation of the starting noise.
        redirect_steps: for this many first steps (default: half of ``steps``) the
            backbone's ``nn.ReLU`` modules pass gradients that would switch an inactive
            unit on (Lucid's redirected ReLU), so a feature that is 0 on noise (e.g. one
            that detects a small bright patch) can still be optimised.
        progress: show a progress bar over the steps.

    Returns:
        (C, H, W) float32 image in [0, 1] on CPU; (F, C, H, W) for a list of features.
    """
    check_image_backbone(backbone, "feature_visualisation")
    dim = feature_dim_of(backbone)
    single = isinstance(feature, (int, np.integer)) and not isinstance(feature, bool)
    if single:
        feats = [check_feature(feature, dim)]
    elif isinstance(feature, (list, tuple, np.ndarray)) and len(feature) > 0:
        feats = [check_feature(f, dim) for f in np.asarray(feature).tolist()]
    else:
        raise DebuggableError(f"feature: got {feature!r}, expected a feature index or a non-empty list of them.")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape)):
        raise DebuggableError(f"shape: got {shape!r}, expected (C, H, W) positive integers.")
    if parametrisation not in PARAMETRISATIONS:
        raise DebuggableError(f"parametrisation: got {parametrisation!r}, expected one of {list(PARAMETRISATIONS)}.")
    steps = check_int("steps", steps)
    lr = check_float("lr", lr, strict=True)
    jitter = check_int("jitter", jitter)
    seed = check_int("seed", seed)
    decay_power = check_float("decay_power", decay_power)
    tv_weight = check_float("tv_weight", tv_weight)
    init_std = check_float("init_std", init_std)
    redirect_steps = steps // 2 if redirect_steps is None else check_int("redirect_steps", redirect_steps)
    dev = resolve_device(device, backbone)
    gen = torch.Generator().manual_seed(seed)
    image = _Image(len(feats), tuple(int(s) for s in shape), parametrisation, decay_power, gen, dev, init_std)
    index = torch.as_tensor(feats, dtype=torch.int64, device=dev).view(-1, 1)
    opt = torch.optim.Adam([image.params], lr=lr)
    handles = _redirect_relus(backbone) if redirect_steps > 0 else []
    try:
        _optimise(backbone, image, opt, index, steps, jitter, tv_weight, gen, handles, redirect_steps, progress)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        out = image.pixels().detach().float().cpu()
    return out[0] if single else out


def _optimise(backbone: Any, image: _Image, opt: torch.optim.Optimizer, index: torch.Tensor, steps: int, jitter: int,
              tv_weight: float, gen: torch.Generator, handles: list[Any], redirect_steps: int,
              progress: bool) -> None:
    it: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="feature visualisation", unit="step", leave=False)
    with eval_mode(backbone), torch.enable_grad():
        for step in it:
            if step == redirect_steps:
                for h in handles:
                    h.remove()
            x = image.pixels()
            if jitter:
                dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = -backbone(x).features.gather(1, index).sum()
            if tv_weight:
                loss = loss + tv_weight * _total_variation(x)
            # Gradients with respect to the image only: nothing lands in the model's .grad.
            (image.params.grad,) = torch.autograd.grad(loss, [image.params])
            opt.step()


def low_frequency_share(images: Any, cutoff: float = 0.125) -> np.ndarray:
    """Share of each image's energy (mean removed) at spatial frequencies up to ``cutoff``.

    A structure measure for attack perturbations and visualisations: perceptible,
    object-like changes (what robust models give) are mostly low-frequency; the
    adversarial noise standard models give is spread over all frequencies, where
    white noise puts about ``pi * cutoff**2`` of its energy below the cutoff.

    Args:
        images: (N, C, H, W) array or tensor (e.g. perturbations ``x_adv - x``).
        cutoff: radius in cycles per pixel (0.5 is the Nyquist frequency; 0.125 keeps
            periods of 8 pixels and longer).

    Returns:
        (N,) in [0, 1]; 0 for an image with no energy besides its mean.
    """
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4:
        raise DebuggableError(f"images: got shape {x.shape}, expected (N, C, H, W).")
    cutoff = check_float("cutoff", cutoff, strict=True)
    x = x.astype(np.float64)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    h, w = x.shape[2:]
    power = np.abs(np.fft.fft2(x, axes=(2, 3))) ** 2
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    total = power.sum(axis=(1, 2, 3))
    low = (power * (radius <= cutoff)).sum(axis=(1, 2, 3))
    return np.divide(low, total, out=np.zeros_like(total), where=total > 1e-30)
