"""Feature attack (Barlow, Appendix C): maximise one deep feature near a real image.

Projected gradient ascent on feature j of the backbone's feature vector, inside an
L2 ball of radius ``eps`` around each image: each step moves by ``step_size`` along
the per-image L2-normalised gradient, then projects back onto the ball and clips to
the valid pixel range [0, 1]. On an adversarially robust model the change is visible
and shows what the feature looks for; on a standard model it is mostly noise.
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
    check_images,
    check_int,
    eval_mode,
    feature_dim_of,
    resolve_device,
)
from debuggable.models import project


def _per_image_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def feature_activation(backbone: Any, images: Any, feature: int | Sequence[int], *, device: Any = None,
                       batch_size: int = 256) -> torch.Tensor:
    """(B,) activation of feature ``feature`` (or of one feature per image) on ``images``
    (B, C, H, W) in [0, 1], on CPU."""
    check_image_backbone(backbone, "feature_activation")
    x = check_images(images)
    feature = _feature_index(feature, int(x.shape[0]), feature_dim_of(backbone))
    dev = resolve_device(device, backbone)
    out = []
    with torch.no_grad(), eval_mode(backbone):
        for lo in range(0, x.shape[0], batch_size):
            f = feature if isinstance(feature, int) else feature[lo : lo + batch_size]
            out.append(_select(backbone(x[lo : lo + batch_size].to(dev)).features, f).float().cpu())
    return torch.cat(out)


def _feature_index(feature: Any, n: int, dim: int) -> int | torch.Tensor:
    """One feature index, or (B,) per-image indices as a tensor."""
    if isinstance(feature, (int, np.integer)) and not isinstance(feature, bool):
        return check_feature(feature, dim)
    if isinstance(feature, torch.Tensor):
        feature = feature.tolist()
    if not isinstance(feature, (list, tuple, np.ndarray)) or len(feature) != n:
        raise DebuggableError(f"feature: got {feature!r}, expected a feature index or one index per image ({n}).")
    return torch.as_tensor([check_feature(f, dim) for f in np.asarray(feature).tolist()], dtype=torch.int64)


def _select(features: torch.Tensor, feature: int | torch.Tensor) -> torch.Tensor:
    if isinstance(feature, int):
        return features[:, feature]
    return features.gather(1, feature.to(features.device).view(-1, 1))[:, 0]


def feature_attack(
    backbone: Any,
    images: Any,
    feature: int | Sequence[int],
    *,
    eps: float,
    steps: int,
    step_size: float,
    device: Any = None,
    progress: bool = False,
) -> torch.Tensor:
    """Images changed within an L2 ball to maximise feature ``feature``.

    Args:
        backbone: an image :class:`debuggable.models.Backbone` (its ``features``).
        images: (B, C, H, W) floats in [0, 1] (NumPy or torch).
        feature: j, in ``0..D-1``; or one index per image (attacks of several features
            in one batch).
        eps: the L2 radius of the change per image, in pixel units (images in [0, 1]).
        steps: gradient steps (0 returns the images unchanged).
        step_size: the L2 length of each step, in pixel units.
        device: where to compute (default: the backbone's device).
        progress: show a progress bar over the steps.

    Returns:
        (B, C, H, W) attacked images in [0, 1], detached, on the images' device, with
        ``||x_adv - x||_2 <= eps`` per image.

    The backbone runs in eval mode (every sub-module's flag is restored afterwards)
    and gradients are taken with respect to the input only.
    """
    check_image_backbone(backbone, "feature_attack")
    eps = check_float("eps", eps)
    step_size = check_float("step_size", step_size)
    steps = check_int("steps", steps)
    x = check_images(images)
    feature = _feature_index(feature, int(x.shape[0]), feature_dim_of(backbone))
    out_device, out_dtype = x.device, x.dtype
    dev = resolve_device(device, backbone)
    x0 = x.detach().to(dev, torch.float32)
    x_adv = x0.clone()
    if eps == 0.0 or steps == 0:
        return x_adv.to(out_device, out_dtype)
    it: Any = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="feature attack", unit="step", leave=False)
    with eval_mode(backbone), torch.enable_grad():
        for _ in it:
            x_adv = x_adv.detach().requires_grad_(True)
            value = _select(backbone(x_adv).features, feature).sum()
            (grad,) = torch.autograd.grad(value, [x_adv])
            with torch.no_grad():
                step = grad / _per_image_norm(grad).clamp_min(1e-30)
                x_adv = x_adv + step_size * step
                x_adv = (x0 + project(x_adv - x0, norm="l2", eps=eps)).clamp(0.0, 1.0)
    return x_adv.detach().to(out_device, out_dtype)


def perturbation_object_share(images: Any, perturbed: Any, *, threshold: float = 0.1, dilate: int = 1) -> np.ndarray:
    """(B,) share of each perturbation's energy ``||perturbed - images||^2`` that falls on
    the object: pixels brighter than ``threshold`` in any channel, grown by ``dilate``
    pixels so that edits of the outline count as on the object.

    For images on a dark background (silhouettes, digits) this separates edits of the
    object itself (what a robust model's feature attack does) from noise sprinkled over
    the background (a standard model's). Compare it with the object's share of the
    image area (:func:`object_area_share`); an image with no perturbation gives 0.
    """
    x = check_images(images).detach().float().cpu()
    p = check_images(perturbed, "perturbed").detach().float().cpu()
    if p.shape != x.shape:
        raise DebuggableError(f"perturbed: expected the shape of images {tuple(x.shape)}, got {tuple(p.shape)}.")
    mask = _object_mask(x, threshold, dilate)
    energy = ((p - x) ** 2).sum(1, keepdim=True)
    total = energy.flatten(1).sum(1)
    on = (energy * mask).flatten(1).sum(1)
    return torch.where(total > 0, on / total.clamp_min(1e-30), torch.zeros_like(total)).numpy()


def object_area_share(images: Any, *, threshold: float = 0.1, dilate: int = 1) -> np.ndarray:
    """(B,) share of each image's pixels that :func:`perturbation_object_share` counts as object."""
    mask = _object_mask(check_images(images), threshold, dilate)
    return mask.flatten(1).mean(1).numpy()


def _object_mask(x: torch.Tensor, threshold: float, dilate: int) -> torch.Tensor:
    mask = (x.detach().float().cpu() > threshold).any(1, keepdim=True).float()
    if dilate > 0:
        mask = torch.nn.functional.max_pool2d(mask, 2 * dilate + 1, stride=1, padding=dilate)
    return mask
