"""The working-set model's Hessian operator and its FISTA solve, against NumPy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import debuggable.glm.solvers.fista as fista
from debuggable._threads import RowChunks
from debuggable.glm.penalties import ElasticNet
from debuggable.glm.solvers.fista import kron_operator, solve_quadratic_model

from .spies import spying_rows


def _problem(m: int, K: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3 * m, m + 1))
    G = X.T @ X / (3 * m)  # symmetric positive definite, (m + 1)^2
    P = rng.standard_normal((K, K))
    B = P @ P.T / K + np.eye(K)  # symmetric positive definite, K x K
    return rng, G, B


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("workers", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kron_operator_is_c_g_y_b_transposed(diagonal, workers, dtype, monkeypatch):
    """``Y^T -> (c G Y B)^T``, with ``B`` full or its diagonal; on the row-chunk workers
    (threshold lowered so this small product is split) the same numbers, and the
    workers really ran it."""
    m, K, c = 150, 9, 0.7
    rng, G, B = _problem(m, K)
    if diagonal:
        B = np.diag(B).copy()
    Y = rng.standard_normal((m + 1, K))
    want = (c * G @ Y @ (np.diag(B) if diagonal else B)).T
    rows, seen = spying_rows() if workers else (None, set())
    if workers:
        monkeypatch.setattr(fista, "SPLIT_MIN_MULTIPLY_ADDS", 0)
    try:
        op = kron_operator(torch.as_tensor(G, dtype=dtype), torch.as_tensor(B), c, rows)
        got = op(torch.as_tensor(Y.T.copy()))
    finally:
        if rows is not None:
            rows.close()
    assert got.dtype == torch.float64 and got.shape == (K, m + 1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got.numpy(), want, rtol=tol, atol=tol * np.abs(want).max())
    if workers:
        assert seen and all(name.startswith("debuggable-rows") for name in seen)


def test_kron_operator_keeps_small_products_on_the_calling_thread():
    m, K = 40, 5
    _, G, B = _problem(m, K)
    rows, seen = spying_rows()
    try:
        kron_operator(torch.as_tensor(G), torch.as_tensor(B), 1.0, rows)(torch.ones(K, m + 1, dtype=torch.float64))
    finally:
        rows.close()
    assert K * (m + 1) ** 2 < fista.SPLIT_MIN_MULTIPLY_ADDS and not seen and rows.calls == 0


@pytest.mark.parametrize("workers", [False, True])
def test_the_quadratic_models_solution_satisfies_its_optimality_conditions(workers, monkeypatch):
    """At the returned step ``D`` the smooth part's gradient ``r = g + c G D B`` balances
    the elastic net on ``U = W0 + D_W``: ``r + lam a sign(U) + lam (1 - a) U = 0`` where
    ``U != 0``, ``|r| <= lam a`` where ``U = 0``, and ``r = 0`` on the intercept row."""
    m, K, c, lam, alpha = 60, 6, 1.3, 0.05, 0.9
    rng, G, B = _problem(m, K, seed=2)
    g = rng.standard_normal((m + 1, K)) * 0.2
    W0 = rng.standard_normal((m, K)) * (rng.uniform(size=(m, K)) < 0.3)
    L = c * np.linalg.eigvalsh(G)[-1] * np.linalg.eigvalsh(B)[-1]
    rows = None
    if workers:
        rows = RowChunks()
        rows.set_workers(2)
        monkeypatch.setattr(fista, "SPLIT_MIN_MULTIPLY_ADDS", 0)
    try:
        D, it = solve_quadratic_model(kron_operator(torch.as_tensor(G), torch.as_tensor(B), c, rows),
                                      torch.as_tensor(g), torch.as_tensor(W0), lam, ElasticNet(alpha), L,
                                      tol=1e-10, max_iter=20_000)
    finally:
        if rows is not None:
            rows.close()
    D = D.numpy()
    assert it < 20_000
    r = g + c * G @ D @ B
    U = W0 + D[:m]
    on = U != 0
    a, ridge = lam * alpha, lam * (1 - alpha)
    np.testing.assert_allclose(r[:m][on] + a * np.sign(U[on]) + ridge * U[on], 0, atol=1e-8)
    assert np.all(np.abs(r[:m][~on]) <= a + 1e-8)
    assert 0 < on.sum() < on.size  # a sparse solution: both conditions were tested
    np.testing.assert_allclose(r[m], 0, atol=1e-8)
