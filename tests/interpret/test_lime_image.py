import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from debuggable.errors import DebuggableError
from debuggable.interpret import image_lime, segment_image
from debuggable.interpret._surrogate import cosine_distance_to_ones, lime_kernel, weighted_ridge

from .conftest import DotBackbone, TextBackboneStub


def _linear_problem():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(64, 3))
    image = torch.as_tensor(rng.uniform(size=(1, 8, 8)), dtype=torch.float32)
    return DotBackbone(v), image, v


def test_lime_recovers_a_known_linear_surrogate():
    # With baseline 0, showing superpixel m adds exactly sum_{p in m} v_p x_p to the feature.
    backbone, image, v = _linear_problem()
    res = image_lime(backbone, image, 2, segmentation="grid", n_segments=16, n_samples=200, alpha=0.0, seed=1)
    seg = res.segments
    assert seg.shape == (8, 8) and res.n_segments == 16
    contrib = image.numpy()[0].ravel() * v[:, 2]
    expected = np.array([contrib[seg.ravel() == m].sum() for m in range(16)])
    np.testing.assert_allclose(res.weights, expected, atol=1e-4)
    assert res.intercept == pytest.approx(0.0, abs=1e-4) and res.score == pytest.approx(1.0, abs=1e-6)
    assert res.activation == pytest.approx(contrib.sum(), abs=1e-4)
    top = res.top(3)
    assert top.tolist() == list(np.argsort(-expected)[:3])
    assert res.mask(3).sum() == np.isin(seg, top).sum()
    assert set(res.top(20, sign="negative")) == set(np.flatnonzero(expected < 0))


def test_surrogate_matches_scikit_learn_ridge_with_sample_weights():
    rng = np.random.default_rng(2)
    z = rng.integers(0, 2, size=(80, 6)).astype(float)
    y = rng.normal(size=80)
    s = lime_kernel(cosine_distance_to_ones(z), 0.25)
    w, b, _ = weighted_ridge(z, y, s, alpha=0.7)
    ref = Ridge(alpha=0.7).fit(z, y, sample_weight=s)
    np.testing.assert_allclose(w[0], ref.coef_, atol=1e-8)
    assert b[0] == pytest.approx(ref.intercept_, abs=1e-8)


def test_kernel_and_distance():
    z = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(cosine_distance_to_ones(z), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(lime_kernel(np.array([0.0, 0.5]), 0.5), [1.0, np.exp(-0.5)])


@pytest.mark.parametrize("method", ["slic", "quickshift", "grid"])
def test_superpixels_of_a_small_grey_image_are_consecutive_labels(method):
    img = np.zeros((1, 28, 28))
    img[0, 6:22, 8:20] = 1.0
    img[0, :4, :4] = 1.0  # a corner patch
    seg = segment_image(img, n_segments=25, method=method)
    assert seg.shape == (28, 28) and seg.min() == 0
    assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1)) and seg.max() + 1 >= 4


def test_callable_models_and_mean_baseline():
    backbone, image, v = _linear_problem()

    def forward(x):
        return (x.flatten(1) @ torch.as_tensor(v, dtype=torch.float32)).numpy()

    a = image_lime(forward, image, 0, segmentation="grid", n_segments=4, n_samples=64, alpha=0.0)
    b = image_lime(backbone, image, 0, segmentation="grid", n_segments=4, n_samples=64, alpha=0.0)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-4)
    c = image_lime(backbone, image, 0, segmentation="grid", n_segments=4, n_samples=64, baseline="mean")
    assert c.weights.shape == (4,)


def test_bad_input():
    backbone, image, _ = _linear_problem()
    with pytest.raises(DebuggableError, match=r"feature: index 3 is out of range; expected 0..2"):
        image_lime(backbone, image, 3)
    with pytest.raises(DebuggableError, match="image_lime explains image models, but this backbone's modality is 'text'"):
        image_lime(TextBackboneStub(), image, 0)
    with pytest.raises(DebuggableError, match="segmentation: got 'watershed'"):
        image_lime(backbone, image, 0, segmentation="watershed")
    with pytest.raises(DebuggableError, match="expected one image"):
        image_lime(backbone, image[None].repeat(2, 1, 1, 1), 0)
    with pytest.raises(DebuggableError, match="baseline: got 'blur'"):
        image_lime(backbone, image, 0, baseline="blur")
