"""Starting images for synthesis: draws from a Gaussian fitted to real images.

Santurkar et al. (2019, "Image synthesis with a single (robust) classifier") start
gradient ascent on a robust model from a sample of a Gaussian with the data's mean and
pixel covariance: a blurry, class-less image with the data's layout, which the ascent
turns into the pattern it maximises. White noise gives the ascent no such layout to
start from. :func:`climb_from_seeds` is that ascent: :func:`feature_attack` with a seed
in place of a real image, with a radius given per pixel by :func:`l2_radius`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_int
from debuggable.interpret.attack import feature_attack

#: Santurkar et al.'s L2 radius on ImageNet (eps 40 at 224 x 224 x 3), per pixel, root mean square.
SANTURKAR_RMS = 0.103


def gaussian_seeds(images: Any, n: int, *, seed: int = 0, max_images: int = 10_000,
                   clip: bool = True) -> torch.Tensor:
    """``n`` images drawn from the Gaussian with the mean and covariance of ``images``.

    The covariance is never formed: a draw is ``mean + Xc.T @ z / sqrt(N - 1)`` with
    ``Xc`` the centred images as rows and ``z ~ N(0, I_N)``, which has exactly the
    sample covariance ``Xc.T @ Xc / (N - 1)``; the cost is O(N * C * H * W) per seed, so
    it works for 224 x 224 colour images too.

    Args:
        images: (N, C, H, W) real images in [0, 1], N >= 2 (NumPy or torch).
        n: how many seeds.
        seed: seeds the draw (and the subset of images, when N > ``max_images``).
        max_images: fit on a random subset of at most this many images.
        clip: clip the draws to [0, 1] (a Gaussian has tails outside the pixel range).

    Returns:
        (n, C, H, W) float32 tensor on CPU.
    """
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[0] < 2:
        raise DebuggableError(f"images: got shape {x.shape}, expected (N, C, H, W) with N >= 2.")
    if not np.isfinite(x).all():
        raise DebuggableError("images: contains NaN or inf.")
    n = check_int("n", n, minimum=1)
    max_images = check_int("max_images", max_images, minimum=2)
    rng = np.random.default_rng(check_int("seed", seed))
    if x.shape[0] > max_images:
        x = x[np.sort(rng.choice(x.shape[0], size=max_images, replace=False))]
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=0)
    centred = flat - mean
    z = rng.standard_normal((n, flat.shape[0]))
    draws = mean + z @ centred / np.sqrt(flat.shape[0] - 1)
    if clip:
        draws = np.clip(draws, 0.0, 1.0)
    return torch.as_tensor(draws.reshape((n, *x.shape[1:])), dtype=torch.float32)


def l2_radius(shape: tuple[int, ...], rms: float = SANTURKAR_RMS) -> float:
    """The L2 radius that allows a change of ``rms`` per pixel (root mean square) on images
    of ``shape`` (C, H, W): ``rms * sqrt(C * H * W)``."""
    return float(rms * np.sqrt(np.prod(shape)))


def climb_from_seeds(backbone: Any, starts: Any, feature: Any, *, eps: float, steps: int,
                     device: Any = None) -> torch.Tensor:
    """Feature visualisation from seeds: ``starts`` (F, C, H, W), e.g. from :func:`gaussian_seeds`,
    each changed within an L2 ball of radius ``eps`` to raise its feature (``feature``: one
    index, or one per seed) in ``steps`` steps of ``2.5 eps / steps`` (the usual PGD rule).

    Returns:
        (F, C, H, W) images in [0, 1], as :func:`feature_attack`.
    """
    steps = check_int("steps", steps, minimum=1)
    return feature_attack(backbone, starts, feature, eps=eps, steps=steps, step_size=2.5 * eps / steps,
                          device=device)
