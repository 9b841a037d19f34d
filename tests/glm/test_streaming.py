"""The streaming solver (block reader protocol) reaches the in-memory optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.glm import elastic_net_path

from .oracles import kkt_violation, make_classification, objective, standardize, to_standardized

torch.set_num_threads(1)


class TinyReader:
    """The feature-store reader protocol, in memory: ``shape`` and ``iter_blocks``."""

    def __init__(self, X: np.ndarray, chunk: int = 37):
        self._X = X
        self.shape = X.shape
        self.n_rows = X.shape[0]
        self.chunk = chunk
        self.passes = 0

    def iter_blocks(self, array="features", block_rows=None, *, as_torch=False, device=None, **kwargs):
        assert array == "features"
        self.passes += 1
        step = block_rows or self.chunk
        for s in range(0, self.n_rows, step):
            blk = self._X[s : s + step]
            yield s, (torch.as_tensor(blk, device=device) if as_torch else blk)


def test_streaming_matches_in_memory():
    X, y = make_classification(500, 20, 4, seed=11)
    kw = dict(alpha=0.95, n_lambdas=6, lambda_min_ratio=1e-2, dtype="float64")
    mem = elastic_net_path(X, y, **kw)
    reader = TinyReader(X)
    st = elastic_net_path(reader, y, solver="streaming", block_rows=64, **kw)
    assert st.info["solver"] == "prox_newton_streaming" and mem.info["solver"] == "prox_newton_in_memory"
    assert reader.passes > 5
    np.testing.assert_allclose(st.lambdas, mem.lambdas, rtol=1e-12)
    np.testing.assert_allclose(st.objective, mem.objective, rtol=1e-8)
    np.testing.assert_allclose(st.coef, mem.coef, atol=1e-5)
    Xs = standardize(X)
    for i, lam in enumerate(st.lambdas):
        W, b = to_standardized(st, i, X)
        assert kkt_violation("multinomial", Xs, y, W, b, lam, 0.95) <= 5e-3 * lam * 0.95
        assert objective("multinomial", Xs, y, W, b, lam, 0.95) == pytest.approx(mem.objective[i], rel=1e-8)


def test_reader_auto_solver_and_val():
    X, y = make_classification(300, 10, 3, seed=12)
    Xv, yv = make_classification(100, 10, 3, seed=13)
    path = elastic_net_path(TinyReader(X), y, X_val=TinyReader(Xv), y_val=yv, n_lambdas=4, lambda_min_ratio=1e-2)
    assert path.info["solver"] == "prox_newton_in_memory"  # small enough to load
    assert np.all(np.isfinite(path.val_accuracy))


def test_streaming_float32_certified():
    X, y = make_classification(400, 16, 3, seed=14)
    st = elastic_net_path(TinyReader(X), y, solver="streaming", n_lambdas=5, lambda_min_ratio=1e-2, group=True)
    assert st.converged.all() and (st.kkt <= 5e-3).all()


class BadReader(TinyReader):
    def iter_blocks(self, array="features", block_rows=None, **kwargs):
        yield 0, self._X[:10]
        yield 20, self._X[20:]


def test_reader_with_gaps_is_rejected():
    X, y = make_classification(60, 5, 3, seed=15)
    with pytest.raises(DebuggableError, match="consecutive"):
        elastic_net_path(BadReader(X), y, n_lambdas=2)


def test_reader_with_nan_is_rejected():
    X, y = make_classification(60, 5, 3, seed=16)
    X[7, 2] = np.nan
    with pytest.raises(DebuggableError, match=r"X: expected finite numbers, got 1 NaN.*row 7, column 2"):
        elastic_net_path(TinyReader(X), y, n_lambdas=2)
