"""Vectorised mutual information against scikit-learn on independently binned data."""

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from debuggable.errors import DebuggableError
from debuggable.failures import mutual_information, select_features


def reference_mi(x, failed, n_bins):
    """The documented binning rule, column by column in NumPy, then scikit-learn's MI."""
    n = x.shape[0]
    out = []
    for j in range(x.shape[1]):
        col = x[:, j]
        edges = np.sort(col)[(np.arange(1, n_bins) * n) // n_bins]
        bins = np.searchsorted(edges, col, side="left")   # number of edges < v
        out.append(mutual_info_score(bins, failed))
    return np.array(out)


@pytest.mark.parametrize("n,n_bins", [(333, 8), (1000, 16), (17, 16), (40, 2)])
def test_matches_sklearn_on_relu_features_with_ties(n, n_bins):
    rng = np.random.default_rng(n)
    x = np.maximum(rng.standard_normal((n, 9)), 0).astype(np.float32)   # half the values tie at 0
    x[:, 4] = np.round(x[:, 4], 1)                                       # many ties everywhere
    failed = rng.random(n) < 0.3
    failed[x[:, 0] > 1.0] = True
    ours = mutual_information(x, failed, n_bins=n_bins)
    np.testing.assert_allclose(ours, reference_mi(x, failed, n_bins), atol=1e-12)
    h = mutual_info_score(failed, failed)
    assert np.all(ours >= 0) and np.all(ours <= h + 1e-12)


def test_a_feature_with_few_values_is_used_exactly():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(600, 1)).astype(np.float32)
    failed = (x[:, 0] == 2) & (rng.random(600) < 0.7)
    assert mutual_information(x, failed, n_bins=16)[0] == pytest.approx(mutual_info_score(x[:, 0], failed))


def test_constant_feature_and_constant_failure_give_zero():
    rng = np.random.default_rng(2)
    x = rng.random((50, 3)).astype(np.float32)
    x[:, 1] = 7.0
    failed = rng.random(50) < 0.5
    assert mutual_information(x, failed)[1] == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(mutual_information(x, np.zeros(50, bool)), 0.0, atol=1e-15)
    np.testing.assert_allclose(mutual_information(x, np.ones(50, bool)), 0.0, atol=1e-15)


def test_torch_input_matches_numpy():
    rng = np.random.default_rng(3)
    x = rng.random((200, 5)).astype(np.float32)
    failed = x[:, 2] > 0.6
    np.testing.assert_allclose(mutual_information(torch.from_numpy(x), torch.from_numpy(failed)),
                               mutual_information(x, failed))


def test_select_features_ranks_the_informative_ones_first():
    rng = np.random.default_rng(4)
    x = rng.random((500, 30)).astype(np.float32)
    failed = (x[:, 17] > 0.6) | (x[:, 3] > 0.85)
    cols, mi = select_features(x, failed, 3)
    assert cols[0] == 17 and cols[1] == 3 and len(cols) == 3
    assert np.all(np.diff(mi) <= 0)
    cols, _ = select_features(x, failed, 100)           # k is capped at D
    assert sorted(cols.tolist()) == list(range(30))
    # ties (all zero) are broken by the lower index
    cols, _ = select_features(np.ones((10, 4), np.float32), np.arange(10) < 5, 4)
    assert cols.tolist() == [0, 1, 2, 3]


def test_bad_arguments():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(DebuggableError, match="n_bins"):
        mutual_information(x, np.zeros(4, bool), n_bins=1)
    with pytest.raises(DebuggableError, match=r"\(n, D\) and \(n,\)"):
        mutual_information(x, np.zeros(3, bool))
    with pytest.raises(DebuggableError, match="k: expected a positive integer"):
        select_features(x, np.zeros(4, bool), 0)
