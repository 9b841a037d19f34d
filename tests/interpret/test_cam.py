import numpy as np
import pytest
import torch
from skimage.transform import resize

from debuggable.errors import DebuggableError
from debuggable.interpret import backbone_cam, cam_mass_in_mask, feature_cam, overlay

from .conftest import LinearSpatialBackbone, TextBackboneStub


def _bilinear_closed_form(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with pixel centres aligned (source coordinate (i + 0.5) * h / H - 0.5,
    clamped to the grid), written out by hand."""
    h, w = values.shape
    H, W = size
    out = np.empty(size)
    for i in range(H):
        r = min(max((i + 0.5) * h / H - 0.5, 0.0), h - 1)
        r0 = int(np.floor(r))
        r1, fr = min(r0 + 1, h - 1), r - r0
        for j in range(W):
            c = min(max((j + 0.5) * w / W - 0.5, 0.0), w - 1)
            c0 = int(np.floor(c))
            c1, fc = min(c0 + 1, w - 1), c - c0
            top = (1 - fc) * values[r0, c0] + fc * values[r0, c1]
            bot = (1 - fc) * values[r1, c0] + fc * values[r1, c1]
            out[i, j] = (1 - fr) * top + fr * bot
    return out


def test_cam_of_a_linear_feature_equals_the_closed_form():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(size=(3, 1, 8, 12)), dtype=torch.float32)
    a, b = np.array([2.0, -0.5, 1.5]), np.array([0.3, 1.0, -2.0])
    backbone = LinearSpatialBackbone(a, b)
    pooled = x.numpy()[:, 0].reshape(3, 4, 2, 6, 2).mean(axis=(2, 4))  # (3, 4, 6)
    for j in range(3):
        got = backbone_cam(backbone, x, j)
        assert got.shape == (3, 8, 12)
        for n in range(3):
            s = a[j] * pooled[n] + b[j]
            norm = (s - s.min()) / (s.max() - s.min())  # a_j < 0 flips the map; b_j drops out
            np.testing.assert_allclose(got[n], _bilinear_closed_form(norm, (8, 12)), atol=1e-5)
            # scikit-image's bilinear resize is an independent oracle for the same map.
            oracle = resize(norm, (8, 12), order=1, mode="edge", anti_aliasing=False)
            np.testing.assert_allclose(got[n], oracle, atol=1e-5)


def test_affine_map_upsamples_exactly_in_the_interior_and_stays_in_unit_range():
    rr, cc = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    spatial = np.stack([3 * rr + cc, -rr])[None]  # (1, 2, 4, 4)
    cam = feature_cam(spatial, 0, (16, 16))[0]
    assert cam.min() >= 0 and cam.max() <= 1
    # Inside the grid (source coordinates not clamped) bilinear of an affine map is affine.
    i, j = 7, 9
    r, c = (i + 0.5) / 4 - 0.5, (j + 0.5) / 4 - 0.5
    assert cam[i, j] == pytest.approx((3 * r + c) / 12.0, abs=1e-6)
    assert feature_cam(spatial, 1, (4, 4))[0, 0, 0] == pytest.approx(1.0)  # -rr peaks at row 0


def test_flat_channel_gives_a_zero_map_and_mass_in_mask():
    cam = feature_cam(torch.ones(2, 1, 3, 3), 0, (6, 6))
    assert np.all(cam == 0)
    cams = np.zeros((2, 4, 4))
    cams[0, :2, :2] = 1.0
    cams[1] = 1.0
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    np.testing.assert_allclose(cam_mass_in_mask(cams, mask), [1.0, 0.25])
    assert cam_mass_in_mask(np.zeros((1, 4, 4)), mask).tolist() == [0.0]


def test_overlay_is_rgb_in_unit_range():
    img = overlay(np.full((1, 5, 5), 0.5), np.linspace(0, 1, 25).reshape(5, 5))
    assert img.shape == (5, 5, 3) and img.min() >= 0 and img.max() <= 1


def test_bad_input():
    with pytest.raises(DebuggableError, match=r"feature: index 4 is out of range; expected 0..1"):
        feature_cam(np.zeros((1, 2, 3, 3)), 4, (6, 6))
    with pytest.raises(DebuggableError, match=r"expected spatial maps \(N, C, h, w\)"):
        feature_cam(np.zeros((2, 3)), 0, (6, 6))
    with pytest.raises(DebuggableError, match=r"size: got \(6,\)"):
        feature_cam(np.zeros((1, 2, 3, 3)), 0, (6,))
    with pytest.raises(DebuggableError, match="modality is 'text'"):
        backbone_cam(TextBackboneStub(), torch.zeros(1, 1, 4, 4), 0)
