"""The Newton-CG step's parts against direct computations, and the solver with and without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from debuggable.glm import elastic_net_path
from debuggable.glm.datafits import make_datafit
from debuggable.glm.solvers.newton_cg import KroneckerPreconditioner, newton_cg_direction
from debuggable.glm.solvers.prox_newton import ProxNewtonSolver


@pytest.mark.parametrize("family,K", [("multinomial", 4), ("binomial", 1), ("gaussian", 2)])
@pytest.mark.parametrize("weighted", [False, True])
def test_hessian_apply_is_the_loss_hessian_times_a_direction(family, K, weighted):
    # oracle: torch.autograd's Hessian-vector product of the datafit's mean loss in (W, b)
    rng = np.random.default_rng(0)
    n, d = 40, 3
    X = torch.as_tensor(rng.normal(size=(n, d)))
    y = rng.normal(size=(n, K)) if family == "gaussian" else rng.integers(0, max(K, 2), size=n)
    w = torch.as_tensor(rng.uniform(0.5, 2.0, size=n)) if weighted else None
    datafit = make_datafit(family, torch.as_tensor(y), w, torch.device("cpu"))
    W = torch.as_tensor(rng.normal(size=(d, K)))
    b = torch.as_tensor(rng.normal(size=K))
    DW = torch.as_tensor(rng.normal(size=(d, K)))
    Db = torch.as_tensor(rng.normal(size=K))

    def loss(Wv, bv):
        return _mean_loss(family, X @ Wv + bv, y, w)

    _, (hW, hb) = torch.autograd.functional.hvp(loss, (W, b), (DW, Db))
    Z = X @ W + b
    Q = datafit.hessian_apply(Z, X @ DW + Db)
    np.testing.assert_allclose((X.T @ Q / n).numpy(), hW.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((Q.sum(0) / n).numpy(), hb.numpy(), rtol=1e-10, atol=1e-12)


def _mean_loss(family, Z, y, w):
    t = torch.as_tensor(y)
    if family == "multinomial":
        per = torch.logsumexp(Z, 1) - Z.gather(1, t[:, None]).squeeze(1)
    elif family == "gaussian":
        per = 0.5 * ((Z - t) ** 2).sum(1)
    else:
        per = torch.nn.functional.softplus(Z[:, 0]) - t.to(Z.dtype) * Z[:, 0]
    if w is not None:
        per = per * w
    return per.sum() / Z.shape[0]


@pytest.mark.parametrize("shift_invariant", [False, True])
def test_kronecker_preconditioner_is_the_inverse_of_its_matrix(shift_invariant):
    rng = np.random.default_rng(1)
    m, K, c, rho = 5, 3, 1.7, 1e-3
    A = rng.normal(size=(m, m))
    G = torch.as_tensor(A @ A.T)
    P = rng.dirichlet(np.ones(K), size=20)
    B = torch.as_tensor((np.diag(P.sum(0)) - P.T @ P) / 20)  # a softmax curvature: singular along 1
    pre = KroneckerPreconditioner(torch.linalg.eigh(G), B, c, rho, shift_invariant=shift_invariant)
    Bt = B + float(torch.diagonal(B).mean()) / K if shift_invariant else B
    M = c * torch.kron(G, Bt) + rho * torch.eye(m * K, dtype=torch.float64)  # index a * K + k
    V = torch.as_tensor(rng.normal(size=(m, K)))
    expected = torch.linalg.solve(M, V.reshape(-1)).reshape(m, K)
    np.testing.assert_allclose(pre(V).numpy(), expected.numpy(), rtol=1e-8)


def test_newton_cg_direction_solves_the_system_on_the_face():
    rng = np.random.default_rng(2)
    m, K = 6, 3
    N = m * K
    A = rng.normal(size=(N, N))
    H = torch.as_tensor(A @ A.T + 0.1 * np.eye(N))
    Xp = torch.as_tensor(rng.normal(size=(10, N)))  # stands for the data: "predictions" X D
    face = torch.as_tensor(rng.random((m, K)) < 0.6)
    grad = torch.as_tensor(rng.normal(size=(m, K))) * face

    def hvp(D):
        return (H @ D.reshape(-1)).reshape(m, K) * face, Xp @ D.reshape(-1)

    D, ZD, used = newton_cg_direction(hvp, grad, face, lambda V: V / 3.0, max_iter=200, rtol=1e-12)
    F = face.reshape(-1)
    expected = torch.zeros(N, dtype=torch.float64)
    expected[F] = torch.linalg.solve(H[F][:, F], -grad.reshape(-1)[F])
    np.testing.assert_allclose(D.reshape(-1).numpy(), expected.numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ZD.numpy(), (Xp @ D.reshape(-1)).numpy(), rtol=1e-9, atol=1e-12)
    assert 1 <= used <= int(F.sum()) + 3  # about the face's dimension: CG's finite termination, up to rounding
    assert not D[~face].any()


def _near_separable(n=1500, d=32, k=20, seed=0):
    """Low-rank class signal through a random map and a ReLU; few samples per
    coefficient, so the small end of the path fits the training set (near separable)."""
    g = torch.Generator().manual_seed(seed)
    r = 16
    mu = torch.randn(k, r, generator=g)
    M = torch.randn(r, d, generator=g) / math.sqrt(r)
    y = torch.arange(n) % k
    X = torch.relu((mu[y] + 1.5 * torch.randn(n, r, generator=g)) @ M + 0.5 * torch.randn(n, d, generator=g))
    X = (X - X.mean(0)) / X.std(0)
    return X.to(torch.float32), y


def test_newton_cg_steps_reach_the_same_certified_path_in_fewer_iterations(monkeypatch):
    X, y = _near_separable()
    calls = []
    step = ProxNewtonSolver._newton_cg_step

    def counted(self, *a, **kw):
        out = step(self, *a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(ProxNewtonSolver, "_newton_cg_step", counted)
    kw = dict(n_lambdas=10, lambda_min_ratio=1e-3, tol=1e-6, standardize=False)
    with_cg = elastic_net_path(X, y, **kw)
    assert sum(calls) >= 3  # the test exercises the step
    monkeypatch.setattr(ProxNewtonSolver, "CG_AFTER", 10**9)
    calls.clear()
    without = elastic_net_path(X, y, **kw)
    assert not calls
    assert with_cg.converged.all() and (with_cg.kkt <= 5e-3).all()
    # where the model steps alone converge too, both are certified to a relative gap of 1e-6
    both = without.converged
    assert both[:-1].all()
    np.testing.assert_allclose(with_cg.objective[both], without.objective[both], rtol=2e-6)
    # at the small end of the path the model steps crawl; Newton-CG does not
    assert with_cg.n_iter.sum() < 0.5 * without.n_iter.sum()
