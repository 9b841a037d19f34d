"""The Newton-CG step's parts against direct computations, and the solver with and without it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from debuggable.glm import elastic_net_path
from debuggable.glm.datafits import make_datafit
from debuggable.glm._design import InMemoryDesign
from debuggable.glm.solvers.newton_cg import ClassBlockPreconditioner, KroneckerPreconditioner, newton_cg_direction
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


@pytest.mark.parametrize("family,K", [("multinomial", 4), ("binomial", 1), ("gaussian", 2)])
def test_diagonal_curvature_is_the_diagonal_of_each_samples_hessian(family, K):
    # oracle: autograd's Hessian of each sample's weighted loss in its predictions
    rng = np.random.default_rng(4)
    n = 7
    y = rng.normal(size=(n, K)) if family == "gaussian" else rng.integers(0, max(K, 2), size=n)
    w = torch.as_tensor(rng.uniform(0.5, 2.0, size=n))
    datafit = make_datafit(family, torch.as_tensor(y), w, torch.device("cpu"))
    Z = torch.as_tensor(rng.normal(size=(n, K)))
    got = datafit.diagonal_curvature(Z)
    for i in range(n):
        def loss_i(z, i=i):
            return _mean_loss(family, z.unsqueeze(0), y[i : i + 1], w[i : i + 1])

        H = torch.autograd.functional.hessian(loss_i, Z[i])
        np.testing.assert_allclose(got[i].numpy(), torch.diagonal(H).numpy(), rtol=1e-10, atol=1e-14)


def _face_hessian_class_blocks(X, P, face, ridge):
    """The softmax Hessian's class-diagonal blocks on the face, from the textbook formula
    ``(1/n) sum_i p_ik (1 - p_ik) [x_i, 1][x_i, 1]^T`` (independent of the solver's code)."""
    n, m = X.shape
    X1 = np.hstack([X, np.ones((n, 1))])
    blocks = []
    for k in range(P.shape[1]):
        idx = np.flatnonzero(np.append(face[:m, k], True))
        Hk = (X1[:, idx] * (P[:, k] * (1 - P[:, k]))[:, None]).T @ X1[:, idx] / n
        Hk[np.arange(len(idx) - 1), np.arange(len(idx) - 1)] += ridge
        blocks.append((idx, Hk))
    return blocks


def test_class_block_preconditioner_inverts_the_hessians_class_blocks():
    rng = np.random.default_rng(5)
    n, m, K, ridge = 60, 6, 4, 1e-3
    X = rng.normal(size=(n, m))
    Z = rng.normal(size=(n, K)) * 2
    P = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    face = rng.random((m + 1, K)) < 0.6
    face[m] = True
    design = InMemoryDesign(torch.as_tensor(X), None)  # float64, so the blocks are exact
    datafit = make_datafit("multinomial", torch.as_tensor(rng.integers(0, K, size=n)), None, torch.device("cpu"))
    pre = ClassBlockPreconditioner(ridge, mass=1.0)  # every sample: the exact blocks
    built = pre.update(design, torch.arange(m), torch.as_tensor(face), datafit.diagonal_curvature(torch.as_tensor(Z)), n)
    assert built == K
    V = torch.as_tensor(rng.normal(size=(m + 1, K)))
    out = pre(V).numpy()
    for k, (idx, Hk) in enumerate(_face_hessian_class_blocks(X, P, face, ridge)):
        np.testing.assert_allclose(out[idx, k], np.linalg.solve(Hk, V.numpy()[idx, k]), rtol=1e-7)
        assert not out[np.setdiff1d(np.arange(m + 1), idx), k].any()  # off the face: zero


def test_class_block_preconditioner_rebuilds_only_classes_whose_face_leaves_the_kept_gram():
    rng = np.random.default_rng(6)
    n, m, K, ridge = 50, 5, 3, 1e-3
    X = rng.normal(size=(n, m))
    P1 = rng.dirichlet(np.ones(K), size=n)
    P2 = np.full_like(P1, 1.0 / K)  # a later point
    design = InMemoryDesign(torch.as_tensor(X), None)
    cols = torch.arange(m)
    face = np.ones((m + 1, K), dtype=bool)
    face[[0, 1], 0] = False  # class 0 without features 0 and 1 ...
    near = np.zeros((m, K), dtype=bool)
    near[0, 0] = True  # ... feature 0 about to enter
    face[4, 1] = False  # class 1 without feature 4, nothing near
    pre = ClassBlockPreconditioner(ridge, mass=1.0)
    assert pre.update(design, cols, torch.as_tensor(face), torch.as_tensor(P1 * (1 - P1)), n,
                      near=torch.as_tensor(near)) == K
    # class 0 gains feature 0 (covered), class 1 gains feature 4 (not covered), class 2 loses feature 3
    face2 = face.copy()
    face2[0, 0] = True
    face2[4, 1] = True
    face2[3, 2] = False
    assert pre.update(design, cols, torch.as_tensor(face2), torch.as_tensor(P2 * (1 - P2)), n) == 1
    V = torch.as_tensor(rng.normal(size=(m + 1, K)))
    out = pre(V).numpy()
    old = _face_hessian_class_blocks(X, P1, face2, ridge)  # kept Gram, at the first point's weights
    new = _face_hessian_class_blocks(X, P2, face2, ridge)  # rebuilt at the second point
    for k, (idx, Hk) in enumerate([old[0], new[1], old[2]]):
        np.testing.assert_allclose(out[idx, k], np.linalg.solve(Hk, V.numpy()[idx, k]), rtol=1e-7)


@pytest.mark.parametrize("classes_per_sort", [1, 2])
def test_class_block_preconditioner_keeps_the_samples_holding_the_requested_mass(classes_per_sort, monkeypatch):
    import debuggable.glm.solvers.newton_cg as newton_cg

    monkeypatch.setattr(newton_cg, "_SORT_ELEMS", 10 * classes_per_sort)  # the classes are sorted in chunks
    n, m, K = 10, 1, 2
    X = torch.linspace(-1, 1, n, dtype=torch.float64).reshape(n, m)
    curvature = torch.zeros(n, K, dtype=torch.float64)
    curvature[:, 0] = torch.tensor([5.0, 0, 0, 3, 0, 0, 1, 0, 0, 1])  # total 10: 80% lies on samples 0 and 3
    curvature[:, 1] = 1.0 + 1e-3 * torch.arange(n, 0, -1)  # nearly uniform: 80% needs 8 samples
    face = torch.ones(m + 1, K, dtype=torch.bool)
    pre = ClassBlockPreconditioner(0.0, mass=0.8)
    pre.update(InMemoryDesign(X, None), torch.arange(m), face, curvature, n)
    assert pre.samples == 2 + 8
    X1 = torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1)
    keep = [0, 3]
    H0 = (X1[keep] * curvature[keep, :1]).T @ X1[keep] / n
    V = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(pre(V)[:, 0].numpy(), torch.linalg.solve(H0, V[:, 0]).numpy(), rtol=1e-6)


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


def test_class_block_newton_cg_streams_like_it_runs_in_memory(monkeypatch):
    # the 20-class problem uses the class-block preconditioner; streamed, its blocks come from one pass
    from .test_streaming import TinyReader

    X, y = _near_separable(n=600, d=24, k=20, seed=3)
    built = []
    update = ClassBlockPreconditioner.update

    def counted(self, design, *a, **kw):
        built.append(type(design).__name__)
        return update(self, design, *a, **kw)

    monkeypatch.setattr(ClassBlockPreconditioner, "update", counted)
    kw = dict(n_lambdas=6, lambda_min_ratio=1e-2, tol=1e-7, standardize=False, dtype="float64")
    mem = elastic_net_path(X.numpy().astype(np.float64), y.numpy(), **kw)
    st = elastic_net_path(TinyReader(X.numpy().astype(np.float64)), y.numpy(), solver="streaming", block_rows=64, **kw)
    assert "InMemoryDesign" in built and "StreamingDesign" in built
    assert mem.converged.all() and st.converged.all()
    np.testing.assert_allclose(st.objective, mem.objective, rtol=1e-6)


def test_class_blocks_give_way_to_the_kronecker_model_when_they_would_not_fit_in_memory(monkeypatch):
    import debuggable.glm.solvers.prox_newton as prox_newton

    X, y = _near_separable(n=600, d=24, k=20, seed=4)
    built, kron = [], []
    update, kron_init = ClassBlockPreconditioner.update, KroneckerPreconditioner.__init__
    monkeypatch.setattr(ClassBlockPreconditioner, "update", lambda self, *a, **kw: built.append(1) or update(self, *a, **kw))
    monkeypatch.setattr(KroneckerPreconditioner, "__init__", lambda self, *a, **kw: kron.append(1) or kron_init(self, *a, **kw))
    kw = dict(n_lambdas=6, lambda_min_ratio=1e-2, standardize=False)
    path = elastic_net_path(X, y, **kw)
    assert built and not kron
    # 20 classes of 24 entries and the intercept: a float32 Gram and a float64 factor each
    assert ClassBlockPreconditioner.memory_bytes(torch.ones(24, 20, dtype=torch.bool), torch.float32) == 20 * 25**2 * 12
    built.clear()
    monkeypatch.setattr(prox_newton, "available_memory", lambda device: 1000)
    small = elastic_net_path(X, y, **kw)
    assert kron and not built
    assert path.converged.all() and small.converged.all()
    np.testing.assert_allclose(small.objective, path.objective, rtol=2e-6)
