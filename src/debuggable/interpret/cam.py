"""CAM heatmaps of one deep feature (Barlow, Appendix B).

A CNN's feature vector is the global average of its last spatial map, so feature j
of an image is the mean of channel j of that map. The heatmap of feature j is that
channel, min-max normalised to [0, 1] per image and bilinearly resized to the image
size: it shows *where* in the image the feature fires.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_feature, check_image_backbone, check_images, eval_mode, resolve_device


def _size(size: Any) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in size)
    ):
        raise DebuggableError(f"size: got {size!r}, expected (H, W) positive integers, the image size.")
    return int(size[0]), int(size[1])


def feature_cam(spatial: Any, feature: int, size: tuple[int, int], *, eps: float = 1e-12) -> np.ndarray:
    """Heatmaps of feature ``feature`` for each image.

    Args:
        spatial: the pre-pooling spatial maps (N, C, h, w), NumPy or torch (e.g. the
            ``spatial`` array of a feature store, or ``backbone(x).spatial``).
        feature: j, the channel, in ``0..C-1``.
        size: (H, W) of the images to overlay.
        eps: a channel whose range (max - min) is below ``eps`` is flat and maps to 0.

    Returns:
        (N, H, W) float32 in [0, 1]: channel j, normalised per image to
        ``(s - min s) / (max s - min s)`` on the h x w grid, then resized bilinearly
        (pixel centres aligned, ``align_corners=False``). Bilinear interpolation is a
        convex combination, so values stay in [0, 1].
    """
    if isinstance(spatial, np.ndarray):
        spatial = torch.from_numpy(np.ascontiguousarray(spatial))
    if not isinstance(spatial, torch.Tensor) or spatial.ndim != 4:
        shape = tuple(spatial.shape) if hasattr(spatial, "shape") else type(spatial).__name__
        raise DebuggableError(f"spatial: got {shape}, expected spatial maps (N, C, h, w) from a CNN backbone.")
    feature = check_feature(feature, int(spatial.shape[1]))
    h, w = _size(size)
    s = spatial[:, feature].detach().to(torch.float64)
    if s.shape[0] == 0:
        return np.zeros((0, h, w), dtype=np.float32)
    if not torch.isfinite(s).all():
        raise DebuggableError(f"spatial: channel {feature} holds NaN or infinite values; expected finite activations.")
    flat = s.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    rng = (flat.max(dim=1).values.view(-1, 1, 1) - lo)
    norm = torch.where(rng > eps, (s - lo) / rng.clamp_min(eps), torch.zeros_like(s))
    up = F.interpolate(norm[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return up.clamp(0.0, 1.0).to(torch.float32).cpu().numpy()


@torch.no_grad()
def backbone_cam(backbone: Any, images: Any, feature: int, *, device: Any = None, batch_size: int = 256) -> np.ndarray:
    """:func:`feature_cam` of ``images`` run through an image ``backbone`` with a spatial map.

    Returns:
        (N, H, W) float32 heatmaps in [0, 1] at the images' size.
    """
    check_image_backbone(backbone, "backbone_cam")
    if not getattr(backbone, "has_spatial", False):
        raise DebuggableError(
            f"backbone: {getattr(backbone, 'name', type(backbone).__name__)!r} has no spatial map; CAM heatmaps need a CNN."
        )
    x = check_images(images)
    dev = resolve_device(device, backbone)
    maps = []
    with eval_mode(backbone):
        for lo in range(0, x.shape[0], batch_size):
            maps.append(backbone(x[lo : lo + batch_size].to(dev)).spatial.float().cpu())
    return feature_cam(torch.cat(maps), feature, (int(x.shape[2]), int(x.shape[3])))


def cam_mass_in_mask(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each heatmap's total mass that falls inside a pixel mask.

    Args:
        cams: (N, H, W) heatmaps >= 0.
        masks: (N, H, W) or (H, W) bool, e.g. where a planted patch was painted.

    Returns:
        (N,) in [0, 1]; compare with ``masks.mean()``, the share a uniform map gives.
        A flat (all-zero) heatmap gives 0.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.broadcast_to(np.asarray(masks, dtype=bool), cams.shape)
    total = cams.reshape(len(cams), -1).sum(1)
    inside = (cams * masks).reshape(len(cams), -1).sum(1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def overlay(image: Any, cam: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """An image with its heatmap blended on top, for display.

    Args:
        image: (C, H, W) in [0, 1], C in {1, 3}.
        cam: (H, W) heatmap in [0, 1].
        alpha: the heatmap's opacity.
        cmap: a matplotlib colour map name.

    Returns:
        (H, W, 3) float32 RGB in [0, 1].
    """
    import matplotlib

    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise DebuggableError(f"image: got shape {img.shape}, expected (C, H, W) with C 1 or 3.")
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != img.shape[1:]:
        raise DebuggableError(f"cam: got shape {cam.shape}, expected {img.shape[1:]} to match the image.")
    rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img
    heat = matplotlib.colormaps[cmap](np.clip(cam, 0, 1))[..., :3].astype(np.float32)
    return np.clip((1 - alpha) * rgb.transpose(1, 2, 0) + alpha * heat, 0.0, 1.0)
