"""Constant feature columns (dead units): dropped from the fit, zero weight, same optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.glm import elastic_net_path
from debuggable.glm.columns import ColumnSubset, constant_features, expand_columns

from .oracles import cvxpy_solve, make_classification, objective, standardize

torch.set_num_threads(1)


class Reader:
    """The feature-store reader protocol over an in-memory array."""

    def __init__(self, x):
        self.x = x
        self.n_rows = x.shape[0]
        self.shape = x.shape

    def iter_blocks(self, array="features", block_rows=None, as_torch=False, device=None, **_):
        step = block_rows or 7
        for lo in range(0, self.n_rows, step):
            blk = self.x[lo : lo + step]
            yield lo, torch.as_tensor(blk, device=device) if as_torch else blk


def _with_dead_units(seed=3):
    """6 informative columns among 9; columns 1 and 5 are dead ReLU units (always 0), column 8 is 2.5."""
    X6, y = make_classification(150, 6, 3, seed=seed)
    X = np.zeros((150, 9))
    X[:, [0, 2, 3, 4, 6, 7]] = X6
    X[:, 8] = 2.5
    return X, y


def test_column_subset_streams_the_kept_columns_only():
    x = np.arange(60.0).reshape(10, 6)
    view = ColumnSubset(Reader(x), np.array([0, 3, 5]))
    assert view.shape == (10, 3)
    for as_torch in (False, True):
        blocks = [np.asarray(b) for _, b in view.iter_blocks("features", block_rows=4, as_torch=as_torch)]
        np.testing.assert_array_equal(np.concatenate(blocks), x[:, [0, 3, 5]])


def test_constant_features_rule():
    mean = np.array([0.0, 3.0, 1e6, 1.0])
    std = np.array([0.0, 0.0, 1e-5, 0.1])  # 1e-5 / 1e6 = 1e-11: float64 rounding of a constant
    assert constant_features(mean, std).tolist() == [0, 1, 2]
    assert constant_features(torch.tensor(mean), torch.tensor(std)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("as_reader", [False, True])
def test_dead_units_get_zero_weight_and_the_optimum_of_the_live_columns(as_reader):
    cp = pytest.importorskip("cvxpy")
    X, y = _with_dead_units()
    dead = constant_features(X.mean(0), X.std(0))
    live = np.setdiff1d(np.arange(X.shape[1]), dead)
    assert dead.size >= 2
    Xv, yv = X[:40], y[:40]
    path = elastic_net_path(Reader(X) if as_reader else X, y, n_lambdas=6, lambda_min_ratio=0.05, alpha=0.9,
                            X_val=Xv, y_val=yv, tol=1e-9)
    assert path.coef.shape == (6, 3, X.shape[1])
    assert np.all(path.coef[:, :, dead] == 0)
    assert path.info["constant_features_skipped"] == dead.tolist()
    assert path.info["n_features"] == X.shape[1]
    np.testing.assert_allclose(path.feature_std[dead], 1.0)
    np.testing.assert_allclose(path.feature_mean[dead], X[:, dead].mean(0))
    # The optimum on the live columns, from cvxpy on the standardised live features.
    Xs = standardize(X[:, live])
    i = 3
    lam = float(path.lambdas[i])
    W = (path.coef[i][:, live] * path.feature_std[live]).T
    b = path.intercept[i] + path.coef[i] @ path.feature_mean
    ours = objective("multinomial", Xs, y, W, b, lam, 0.9)
    ref, _, _ = cvxpy_solve("multinomial", Xs, y, lam, 0.9)
    assert abs(ours - ref) <= 1e-6 * abs(ref), (ours, ref)
    # Logits over all columns equal logits over the live ones: the dead columns add nothing.
    full = X @ path.coef[i].T + path.intercept[i]
    np.testing.assert_allclose(full, X[:, live] @ path.coef[i][:, live].T + path.intercept[i])
    assert np.isfinite(path.val_accuracy).all()


def test_expand_columns_puts_a_reduced_path_back():
    X, y = _with_dead_units(seed=5)
    dead = constant_features(X.mean(0), X.std(0))
    keep = np.setdiff1d(np.arange(X.shape[1]), dead)
    reduced = elastic_net_path(X[:, keep], y, n_lambdas=4, lambda_min_ratio=0.1)
    full = expand_columns(reduced, keep, X.shape[1], X.mean(0))
    assert full.coef.shape == (4, 3, X.shape[1]) and np.all(full.coef[:, :, dead] == 0)
    assert full.info["constant_features_skipped"] == dead.tolist()


def test_constant_features_raise_and_all_constant():
    X, y = _with_dead_units()
    with pytest.raises(DebuggableError, match=r"^X: expected features with non-zero variance, got 3 constant"):
        elastic_net_path(X, y, n_lambdas=3, constant_features="raise")
    with pytest.raises(DebuggableError, match=r"^X: expected at least one feature that varies, got 8 constant features\.$"):
        elastic_net_path(np.ones((20, 8)), np.arange(20) % 2, n_lambdas=3)
    with pytest.raises(DebuggableError, match=r"^constant_features: expected one of 'drop', 'raise', got 'keep'\.$"):
        elastic_net_path(X, y, n_lambdas=3, constant_features="keep")
