"""The multinomial datafit's passes over (n, K) in row blocks, on the calling thread and
on the row-chunk workers, against NumPy float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable._threads import RowChunks
from debuggable.glm import elastic_net_path
from debuggable.glm.datafits import Multinomial, make_datafit

from .spies import spying_rows


def _softmax(Z: np.ndarray) -> np.ndarray:
    E = np.exp(Z - Z.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


def _lse(Z: np.ndarray) -> np.ndarray:
    m = Z.max(1, keepdims=True)
    return (m + np.log(np.exp(Z - m).sum(1, keepdims=True)))[:, 0]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 rows at K = 7, from any size on (the defaults block only arrays of
    at least 2^18 numbers)."""
    monkeypatch.setattr(Multinomial, "BLOCKED_MIN_ENTRIES", 1)
    monkeypatch.setattr(Multinomial, "BLOCK_ENTRIES", 7 * 16)


def _all_passes(fit, Z: torch.Tensor, Zd: torch.Tensor) -> dict:
    loss, M = fit.loss_and_mean(Z)
    loss_s, Zs = fit.loss_along(Z, Zd, 0.375)
    return {
        "loss": loss, "M": M.clone(), "R": fit.residual(M), "sum_rows": fit.sum_rows(Zd),
        "curvature": fit.curvature(Z), "dir_curvature": fit.dir_curvature(Z, Zd),
        "hessian_apply": fit.hessian_apply(Z, Zd), "diagonal_curvature": fit.diagonal_curvature(Z),
        "conjugate": fit.conjugate(Z, 0.6), "loss_along": loss_s, "Zs": Zs,
    }


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("workers", [False, True])
@pytest.mark.parametrize("diagonal", [False, True])
def test_blocked_multinomial_passes_match_numpy(small_blocks, monkeypatch, weights, workers, diagonal):
    if diagonal:  # the curvature summary B as its diagonal, as from 200 classes on
        monkeypatch.setattr(Multinomial, "DIAGONAL_MIN_CLASSES", 2)
    rng = np.random.default_rng(0)
    n, K = 301, 7  # 19 blocks, the last one short
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    w = rng.uniform(0.2, 3.0, n) if weights else None
    Zn, Zdn = 2 * rng.standard_normal((n, K)), rng.standard_normal((n, K))
    fit = make_datafit("multinomial", y, w, torch.device("cpu"))
    rows, seen = spying_rows() if workers else (None, set())
    fit.rows = rows
    try:
        got = _all_passes(fit, torch.from_numpy(Zn), torch.from_numpy(Zdn))
    finally:
        if rows is not None:
            rows.close()
    if workers:
        assert seen and all(name.startswith("debuggable-rows") for name in seen)

    wv = np.ones(n) if w is None else w
    P = _softmax(Zn)
    T = np.eye(K)[y]
    loss = float((wv * (_lse(Zn) - Zn[np.arange(n), y])).sum() / n)
    Zs = Zn + 0.375 * Zdn
    PZ = P * Zdn
    Hd = (PZ - P * PZ.sum(1, keepdims=True)) * wv[:, None]
    diag = P * (1 - P) * wv[:, None]
    if diagonal:
        B = diag.sum(0) / wv.sum()
    else:
        B = (np.einsum("ik,i->k", P, wv)[:, None] * np.eye(K) - (P * wv[:, None]).T @ P) / wv.sum()
    Q = 0.6 * P + 0.4 * T
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = np.where(Q > 0, Q * np.log(Q), 0.0).sum(1)
    expected = {
        "loss": loss, "M": P, "R": (P - T) * wv[:, None], "sum_rows": Zdn.sum(0), "curvature": B,
        "dir_curvature": float((wv * ((PZ * Zdn).sum(1) - PZ.sum(1) ** 2)).sum() / n),
        "hessian_apply": Hd, "diagonal_curvature": diag, "conjugate": float((wv * ent).sum() / n),
        "loss_along": float((wv * (_lse(Zs) - Zs[np.arange(n), y])).sum() / n), "Zs": Zs,
    }
    for key, want in expected.items():
        have = got[key].numpy() if isinstance(got[key], torch.Tensor) else got[key]
        np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-14, err_msg=key)


def test_blocked_passes_do_not_depend_on_the_worker_count(small_blocks):
    """The blocks are the same on the calling thread and on the workers, and partial sums
    add in row order: every value is bit for bit the same."""
    rng = np.random.default_rng(1)
    n, K = 250, 7
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    Z, Zd = torch.from_numpy(rng.standard_normal((n, K))), torch.from_numpy(rng.standard_normal((n, K)))
    fit = make_datafit("multinomial", y, rng.uniform(0.5, 2.0, n), torch.device("cpu"))
    alone = _all_passes(fit, Z, Zd)
    fit.rows = RowChunks()
    fit.rows.set_workers(2)
    try:
        shared = _all_passes(fit, Z, Zd)
    finally:
        fit.rows.close()
    assert fit.rows.calls > 0
    for key, value in alone.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, shared[key]), key
        else:
            assert value == shared[key], key


def test_row_blocks_cover_the_rows_once_in_order(small_blocks):
    fit = make_datafit("multinomial", np.arange(100) % 7, None, torch.device("cpu"))
    assert fit.row_blocks(lambda s, e: (s, e)) == [(s, min(100, s + 16)) for s in range(0, 100, 16)]
    assert fit.row_blocks(lambda s, e: (s, e), width=1) == [(0, 100)]  # 100 numbers: one block of 112
    fit.rows = RowChunks()
    fit.rows.set_workers(3)
    try:
        assert fit.row_blocks(lambda s, e: (s, e)) == [(s, min(100, s + 16)) for s in range(0, 100, 16)]
    finally:
        fit.rows.close()


def test_small_arrays_take_one_block():
    fit = make_datafit("multinomial", np.arange(50) % 5, None, torch.device("cpu"))
    assert 50 * 5 < Multinomial.BLOCKED_MIN_ENTRIES
    assert fit.row_blocks(lambda s, e: (s, e)) == [(0, 50)]


def test_path_in_blocks_on_workers_matches_the_path_in_one_block(monkeypatch):
    """A whole path with the datafit's passes in small blocks on two workers reaches the
    same certified solutions as the default (one block at this size)."""
    rng = np.random.default_rng(2)
    n, d, K = 600, 12, 5
    X = rng.standard_normal((n, d))
    y = (X[:, :K] + 0.8 * rng.standard_normal((n, K))).argmax(1)
    kwargs = dict(n_lambdas=6, lambda_min_ratio=0.05, alpha=0.9, tol=1e-9, threads=1)
    base = elastic_net_path(X, y, **kwargs)
    monkeypatch.setattr(Multinomial, "BLOCKED_MIN_ENTRIES", 1)
    monkeypatch.setattr(Multinomial, "BLOCK_ENTRIES", 40 * K)
    calls = []
    real_init = Multinomial.__init__

    def with_workers(self, *args, **kw):
        real_init(self, *args, **kw)
        calls.append(self)

    monkeypatch.setattr(Multinomial, "__init__", with_workers)
    real_row_blocks = Multinomial.row_blocks

    def on_workers(self, fn, width=None):
        if self.rows is not None and not self.rows.active:
            self.rows.set_workers(2)
        return real_row_blocks(self, fn, width)

    monkeypatch.setattr(Multinomial, "row_blocks", on_workers)
    blocked = elastic_net_path(X, y, **kwargs)
    assert calls and calls[-1].rows.calls > 0
    calls[-1].rows.close()
    assert blocked.converged.all() and base.converged.all()
    np.testing.assert_allclose(blocked.objective, base.objective, rtol=1e-8)
    np.testing.assert_allclose(blocked.coef, base.coef, atol=1e-5)
