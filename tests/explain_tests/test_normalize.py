"""Normalisation modes and percentile clipping on hand-made maps."""

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.explain_tests.normalize import normalize_attributions, reduce_channels


def test_modes_by_hand():
    a = torch.tensor([[[[2.0, -4.0], [1.0, 0.0]], [[1.0, 1.0], [-3.0, 0.0]]]])  # (1, 2, 2, 2)
    np.testing.assert_allclose(reduce_channels(a, "abs")[0], [[3, 5], [4, 0]])
    np.testing.assert_allclose(reduce_channels(a, "signed")[0], [[3, -3], [-2, 0]])
    np.testing.assert_allclose(reduce_channels(a, "pos")[0], [[3, 0], [0, 0]])
    np.testing.assert_allclose(reduce_channels(a, "neg")[0], [[0, 3], [2, 0]])
    np.testing.assert_allclose(normalize_attributions(a, "abs", percentile=100)[0], [[0.6, 1.0], [0.8, 0.0]])
    np.testing.assert_allclose(normalize_attributions(a, "signed", percentile=100)[0], [[1, -1], [-2 / 3, 0]])


def test_percentile_clipping():
    m = np.arange(1.0, 101.0).reshape(1, 10, 10)  # |values| 1..100
    out = normalize_attributions(m, "abs", percentile=50).numpy()[0]
    scale = np.percentile(np.arange(1.0, 101.0), 50)  # 50.5, linear interpolation like torch.quantile
    np.testing.assert_allclose(out, np.clip(m[0] / scale, 0, 1), rtol=1e-6)
    assert (out == 1.0).sum() == 50


def test_zero_maps_stay_zero_and_errors():
    assert normalize_attributions(np.zeros((2, 1, 3, 3))).abs().sum() == 0
    with pytest.raises(DebuggableError, match="mode"):
        normalize_attributions(np.ones((1, 3, 3)), "max")
    with pytest.raises(DebuggableError, match="percentile"):
        normalize_attributions(np.ones((1, 3, 3)), percentile=0)
    with pytest.raises(DebuggableError, match="attr"):
        normalize_attributions(np.ones((3, 3)))
