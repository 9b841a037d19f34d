"""gaussian_seeds: draws with the images' mean and covariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret import climb_from_seeds, gaussian_seeds, l2_radius


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    # correlated pixels: a shared brightness plus per-pixel noise, inside (0, 1)
    base = rng.uniform(0.3, 0.7, size=(n, 1, 1, 1))
    return (base + 0.05 * rng.standard_normal((n, 1, 3, 2))).astype(np.float32)


def test_draws_have_the_images_mean_and_covariance():
    x = _images()
    s = gaussian_seeds(x, 40_000, seed=1, clip=False).numpy().reshape(40_000, -1)
    flat = x.reshape(len(x), -1).astype(np.float64)
    np.testing.assert_allclose(s.mean(0), flat.mean(0), atol=3e-3)
    np.testing.assert_allclose(np.cov(s, rowvar=False), np.cov(flat, rowvar=False), atol=5e-4, rtol=0.05)


def test_shape_dtype_determinism_and_clipping():
    x = np.concatenate([np.zeros((5, 3, 4, 4)), np.ones((5, 3, 4, 4))]).astype(np.float32)
    a = gaussian_seeds(torch.as_tensor(x), 7, seed=3)
    assert a.shape == (7, 3, 4, 4) and a.dtype == torch.float32
    assert torch.equal(a, gaussian_seeds(x, 7, seed=3))
    assert not torch.equal(a, gaussian_seeds(x, 7, seed=4))
    assert a.min() >= 0 and a.max() <= 1
    assert gaussian_seeds(x, 7, seed=3, clip=False).abs().max() > 1  # the variance is 0.25 per pixel


def test_subset_when_more_images_than_max_images():
    x = _images(n=50)
    a = gaussian_seeds(x, 3, seed=0, max_images=10)
    assert a.shape == (3, 1, 3, 2)


@pytest.mark.parametrize("images, kwargs, match", [
    (np.zeros((1, 1, 2, 2)), {}, "N >= 2"),
    (np.zeros((4, 2, 2)), {}, "expected \\(N, C, H, W\\)"),
    (np.full((3, 1, 2, 2), np.nan), {}, "NaN"),
    (np.zeros((3, 1, 2, 2)), {"n": 0}, "n: got 0"),
    (np.zeros((3, 1, 2, 2)), {"max_images": 1}, "max_images"),
])
def test_bad_input(images, kwargs, match):
    with pytest.raises(DebuggableError, match=match):
        gaussian_seeds(images, kwargs.pop("n", 2), **kwargs)


def test_l2_radius_is_the_per_pixel_rms_times_sqrt_pixels():
    assert l2_radius((3, 224, 224), 0.103) == pytest.approx(39.96, abs=0.01)  # Santurkar et al.'s eps 40
    assert l2_radius((1, 28, 28)) == pytest.approx(0.103 * 28)


def test_climb_on_a_linear_feature_reaches_the_closed_form_optimum():
    # f(x) = <v, x>: the best point in the L2 ball is seed + eps * v / ||v|| (inside [0, 1] here)
    from tests.interpret.conftest import DotBackbone

    v = np.random.default_rng(0).normal(size=(16, 2))
    seeds = torch.full((2, 1, 4, 4), 0.5)
    out = climb_from_seeds(DotBackbone(v), seeds, [0, 1], eps=0.4, steps=5)
    for f in range(2):
        expected = 0.5 + 0.4 * v[:, f] / np.linalg.norm(v[:, f])
        np.testing.assert_allclose(out[f].flatten().numpy(), expected, atol=1e-5)
    with pytest.raises(DebuggableError, match="steps"):
        climb_from_seeds(DotBackbone(v), seeds, 0, eps=0.4, steps=0)
