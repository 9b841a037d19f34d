import numpy as np
import pytest
import torch

from debuggable.debug import (
    Pattern,
    PatternInsertion,
    crop_pattern,
    occlusion_box,
    paste,
    peak_box,
)
from debuggable.errors import DebuggableError


def test_paste_and_crop_round_trip():
    rng = np.random.default_rng(0)
    img = rng.random((3, 10, 12)).astype(np.float32)
    p = crop_pattern(img, (2, 3, 5, 7), name="crop")
    assert p.box == (2, 3, 5, 7) and p.pixels.shape == (3, 3, 4)
    others = torch.as_tensor(rng.random((4, 3, 10, 12)).astype(np.float32))
    out = paste(others, p)
    np.testing.assert_array_equal(out[:, :, 2:5, 3:7].numpy(), np.broadcast_to(img[:, 2:5, 3:7], (4, 3, 3, 4)))
    outside = np.ones((10, 12), bool)
    outside[2:5, 3:7] = False
    np.testing.assert_array_equal(out.numpy()[:, :, outside], others.numpy()[:, :, outside])
    assert not torch.equal(out, others)  # input untouched, copy changed
    # A mask pastes only its pixels; a 1-channel pattern broadcasts.
    m = Pattern(np.ones((1, 2, 2)), 0, 0, mask=np.array([[True, False], [False, True]]))
    z = paste(torch.zeros(1, 3, 4, 4), m)
    assert z[0, :, 0, 0].tolist() == [1, 1, 1] and z[0, :, 0, 1].tolist() == [0, 0, 0] and z[0, 0, 1, 1] == 1


def test_peak_box_maximises_the_heat_inside():
    rng = np.random.default_rng(0)
    hm = rng.random((9, 11))
    for size in (1, 3, 4):
        r0, c0, r1, c1 = peak_box(hm, size)
        best = max(hm[r:r + size, c:c + size].sum() for r in range(9 - size + 1) for c in range(11 - size + 1))
        assert hm[r0:r1, c0:c1].sum() == pytest.approx(best) and (r1 - r0, c1 - c0) == (size, size)
    hm = np.zeros((8, 8))
    hm[1, 6] = 1.0
    assert peak_box(hm, 3) == (0, 5, 3, 8)  # ties: centred on (1, 6) as far as the border allows
    hm[:] = 0
    hm[4, 4] = 1
    assert peak_box(hm, 3) == (3, 3, 6, 6)
    with pytest.raises(DebuggableError, match="size"):
        peak_box(hm, 9)


def test_occlusion_box_finds_a_bright_square():
    from types import SimpleNamespace

    class Bright(torch.nn.Module):
        """Feature 0 = mean brightness of rows 2..4, cols 5..7 (a 'patch detector')."""
        feature_dim = 2

        def forward(self, x):
            f0 = x[:, 0, 2:5, 5:8].mean((1, 2))
            return SimpleNamespace(features=torch.stack([f0, x.mean((1, 2, 3))], 1))

    img = torch.zeros(1, 10, 10)
    img[0, 2:5, 5:8] = 1.0
    box, drops = occlusion_box(Bright(), img, 0, 3)
    assert box == (2, 5, 5, 8) and drops.shape == (8, 8)
    # The drop of a window is the share of the bright square it covers (feature = its mean).
    assert drops[2, 5] == pytest.approx(1.0) and drops[0, 0] == 0.0
    assert drops[3, 5] == pytest.approx(6 / 9)
    box2, drops2 = occlusion_box(Bright(), img, 0, 3, stride=2)
    assert drops2.shape == (4, 4) and box2 == (2, 4, 5, 7)
    with pytest.raises(DebuggableError, match="feature"):
        occlusion_box(Bright(), img, 5, 3)


def test_insertion_flip_rate_on_a_patch_detector():
    # Class 2 = "bright top-left corner": logit 2 = 10 * (mean of the corner) - 5.
    def model(x):
        corner = x[:, 0, :2, :2].mean((1, 2))
        return torch.stack([torch.full_like(corner, 1.0), x[:, 0].mean((1, 2)), 10 * corner - 5], 1)

    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.random((20, 1, 6, 6)).astype(np.float32) * 0.4)
    y = np.array([0, 1] * 10)
    patch = Pattern(np.ones((1, 2, 2)), 0, 0, name="white square")
    res = PatternInsertion({"m": model, "half": lambda t: model(t) * torch.tensor([1.0, 1.0, 0.0])}, 2).attribute(x, y, patch)
    assert res.rate_without("m") == 0.0
    assert res.flip_rate("m") == 1.0       # 10 * 1 - 5 = 5 > 1
    assert res.flip_rate("half") == 0.0    # the class-2 logit is zeroed
    d = res.to_dict()
    assert d["models"]["m"]["flip_rate"] == 1.0 and d["pattern"]["box"] == [0, 0, 2, 2]
    p2 = torch.softmax(model(paste(x, patch)).double(), 1)[:, 2].numpy()
    np.testing.assert_allclose(res.target_prob_after["m"], p2, rtol=1e-6)
    # A second pattern on the same instance (the originals' scores are reused) equals a fresh run.
    ins = PatternInsertion({"m": model}, 2)
    ins.attribute(x, y, patch)
    dark = Pattern(np.zeros((1, 2, 2)), 0, 0, name="dark square")
    reused, fresh = ins.attribute(x, y, dark), PatternInsertion({"m": model}, 2).attribute(x, y, dark)
    assert reused.flip_rate("m") == fresh.flip_rate("m") == 0.0
    np.testing.assert_array_equal(reused.target_prob_after["m"], fresh.target_prob_after["m"])
    np.testing.assert_array_equal(reused.target_prob_before["m"], fresh.target_prob_before["m"])


def test_bad_input():
    patch = Pattern(np.ones((1, 2, 2)), 0, 0)
    ins = PatternInsertion({"m": lambda t: torch.zeros(t.shape[0], 3)}, 2)
    with pytest.raises(DebuggableError, match="target class"):
        ins.attribute(torch.zeros(2, 1, 4, 4), np.array([2, 0]), patch)
    with pytest.raises(DebuggableError, match="0 images"):
        ins.attribute(torch.zeros(0, 1, 4, 4), np.array([], dtype=int), patch)
    with pytest.raises(DebuggableError, match="does not fit"):
        paste(torch.zeros(1, 1, 4, 4), Pattern(np.ones((1, 2, 2)), 3, 3))
    with pytest.raises(DebuggableError, match="models"):
        PatternInsertion({}, 1).attribute(torch.zeros(1, 1, 4, 4), np.array([0]), patch)
    with pytest.raises(DebuggableError, match="pattern top"):
        Pattern(np.ones((1, 2, 2)), -1, 0)
