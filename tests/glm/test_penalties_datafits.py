"""Penalty and datafit pieces the solver relies on, each against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.glm import elastic_net_path
from debuggable.glm._design import InMemoryDesign
from debuggable.glm.datafits import make_datafit
from debuggable.glm.penalties import ElasticNet, GroupElasticNet
from debuggable.glm.solvers.prox_newton import gradient


@pytest.mark.parametrize("penalty", [ElasticNet(0.99), ElasticNet(0.5), ElasticNet(1.0), ElasticNet(0.05),
                                     GroupElasticNet(0.9), GroupElasticNet(1.0)])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_row_shift_minimises_the_row_penalty(penalty, k):
    g = torch.Generator().manual_seed(k)
    W = torch.randn(40, k, generator=g, dtype=torch.float64)
    W[W.abs() < 0.4] = 0.0
    W[0] = 0.0
    W[1] = 1.5  # a constant row: shifted to exactly zero
    c = penalty.row_shift(W, 0.3)
    grid = torch.linspace(-4, 4, 16001, dtype=torch.float64)
    for j in range(W.shape[0]):
        brute = min(penalty.value((W[j] - grid[i : i + 1]).unsqueeze(0), 0.3) for i in range(0, grid.numel(), 40))
        mine = penalty.value((W[j] - c[j]).unsqueeze(0), 0.3)
        assert mine <= brute + 1e-9
    assert float(c[0]) == 0.0
    assert float((W[1] - c[1]).abs().max()) < 1e-12


def test_multinomial_residual_matches_one_hot_and_weights():
    g = torch.Generator().manual_seed(0)
    y = np.array([0, 2, 1, 2, 0])
    w = np.array([1.0, 0.5, 2.0, 1.0, 3.0])
    fit = make_datafit("multinomial", y, w, torch.device("cpu"))
    Z = torch.randn(5, 3, generator=g, dtype=torch.float64)
    _, M = fit.loss_and_mean(Z)
    R = fit.residual(M)
    expected = (torch.softmax(Z, 1) - torch.nn.functional.one_hot(torch.as_tensor(y), 3)) * torch.as_tensor(w).unsqueeze(1)
    assert torch.allclose(R, expected, atol=1e-15)
    assert torch.equal(M, torch.softmax(Z, 1)) or torch.allclose(M, torch.softmax(Z, 1))  # M untouched


def test_float32_multinomial_gradient_rows_sum_to_zero_and_match_float64():
    g = torch.Generator().manual_seed(1)
    X = torch.relu(torch.randn(3000, 40, generator=g))
    X = (X - X.mean(0)) / X.std(0)
    y = torch.randint(0, 6, (3000,), generator=g).numpy()
    fit = make_datafit("multinomial", y, None, torch.device("cpu"))
    Z = torch.randn(3000, 6, generator=g, dtype=torch.float64)
    _, G32, gb32 = gradient(InMemoryDesign(X.contiguous(), None), fit, Z, exact=False, full=True)
    _, G64, _ = gradient(InMemoryDesign(X.double().contiguous(), None), fit, Z, exact=True, full=True)
    assert float(G32.sum(1).abs().max()) < 1e-15
    assert float(gb32.sum().abs()) < 1e-15
    # the residual is formed before the float32 product: errors scale with it, not with M
    assert float((G32 - G64).abs().max()) < 1e-6 * float(G64.abs().max()) + 1e-7


def test_multinomial_path_rows_are_penalty_centred():
    """Shifting a row of W by a constant does not change the softmax; at the optimum each
    row sits at its penalty-minimising shift (which the solver enforces exactly)."""
    g = torch.Generator().manual_seed(2)
    X = torch.relu(torch.randn(400, 12, generator=g, dtype=torch.float64))
    y = torch.randint(0, 4, (400,), generator=g).numpy()
    path = elastic_net_path(X, y, alpha=0.9, n_lambdas=6, lambda_min_ratio=0.05, dtype="float64")
    pen = ElasticNet(0.9)
    for i, lam in enumerate(path.lambdas):
        Ws = torch.as_tensor(path.coef[i].T * path.feature_std[:, None])  # standardised scale, (D, K)
        c = pen.row_shift(Ws, float(lam))
        assert float(c.abs().max()) <= 1e-9 * max(1.0, float(Ws.abs().max()))
