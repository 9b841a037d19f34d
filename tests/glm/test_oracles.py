"""The path's optimum against independent oracles: cvxpy, scikit-learn's saga, NumPy KKT."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from debuggable.glm import elastic_net_path, lambda_max

from .oracles import (
    cvxpy_solve,
    kkt_violation,
    lambda_max_numpy,
    make_classification,
    objective,
    standardize,
    to_standardized,
)

torch.set_num_threads(1)
cp = pytest.importorskip("cvxpy")

REL = 1e-6


def _check_against_cvxpy(family, X, y, path, alpha, group=False, w=None, idx=(1, 3)):
    Xs = standardize(X)
    for i in idx:
        lam = float(path.lambdas[i])
        W, b = to_standardized(path, i, X)
        ours = objective(family, Xs, y, W, b, lam, alpha, group, w)
        # the objective the path reports is the same number, computed independently
        assert abs(ours - path.objective[i]) <= 1e-9 * abs(ours)
        ref, _, _ = cvxpy_solve(family, Xs, y, lam, alpha, group, w)
        assert ours <= ref * (1 + REL), (i, ours, ref)
        assert abs(ours - ref) <= REL * abs(ref), (i, ours, ref)


@pytest.mark.parametrize("alpha", [0.99, 0.5])
def test_multinomial_matches_cvxpy(alpha):
    X, y = make_classification(240, 10, 4, seed=1)
    path = elastic_net_path(X, y, alpha=alpha, n_lambdas=5, lambda_min_ratio=1e-2, dtype="float64")
    assert path.converged.all()
    _check_against_cvxpy("multinomial", X, y, path, alpha)


def test_lasso_binomial_and_weights_match_cvxpy():
    X, y3 = make_classification(200, 8, 3, seed=2)
    y = (y3 == 0).astype(int)
    w = np.random.default_rng(0).uniform(0.2, 3.0, size=len(y))
    path = elastic_net_path(X, y, family="binomial", alpha=1.0, n_lambdas=5, lambda_min_ratio=2e-2,
                            sample_weight=w, dtype="float64")
    assert path.coef.shape == (5, 1, 8) and path.converged.all()
    _check_against_cvxpy("binomial", X, y, path, 1.0, w=w)


def test_gaussian_multioutput_matches_cvxpy():
    rng = np.random.default_rng(3)
    X, _ = make_classification(150, 9, 2, seed=3)
    Y = standardize(X)[:, :3] @ rng.normal(size=(3, 2)) + 0.5 * rng.normal(size=(150, 2)) + 4.0
    path = elastic_net_path(X, Y, family="gaussian", alpha=0.8, n_lambdas=5, lambda_min_ratio=1e-2, dtype="float64")
    assert path.coef.shape == (5, 2, 9)
    assert path.n_iter[1:].max() <= 5  # Gram (x) I is the exact Hessian: one Newton step per lambda
    _check_against_cvxpy("gaussian", X, Y, path, 0.8)


def test_group_penalty_matches_cvxpy():
    X, y = make_classification(200, 10, 3, seed=4)
    path = elastic_net_path(X, y, alpha=0.9, group=True, n_lambdas=5, lambda_min_ratio=1e-2, dtype="float64")
    assert path.converged.all()
    # a feature enters or leaves for every class at once
    used = path.coef != 0
    assert np.array_equal(used.any(axis=1), used.all(axis=1))
    _check_against_cvxpy("multinomial", X, y, path, 0.9, group=True)


def test_multinomial_matches_sklearn_saga():
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(200, 6, 3, seed=5)
    alpha = 0.7
    path = elastic_net_path(X, y, alpha=alpha, n_lambdas=4, lambda_min_ratio=1e-2, dtype="float64")
    Xs = standardize(X)
    n = len(y)
    for i in (1, 3):
        lam = float(path.lambdas[i])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's penalty-argument deprecations
            clf = LogisticRegression(C=1.0 / (n * lam), l1_ratio=alpha, solver="saga", tol=1e-12, max_iter=200_000)
            if clf.get_params().get("penalty") == "l2":  # scikit-learn < 1.8 needs it spelled out
                clf.set_params(penalty="elasticnet")
            clf.fit(Xs, y)
        ref = objective("multinomial", Xs, y, clf.coef_.T, clf.intercept_, lam, alpha)
        W, b = to_standardized(path, i, X)
        ours = objective("multinomial", Xs, y, W, b, lam, alpha)
        assert ours <= ref * (1 + REL) and abs(ours - ref) <= REL * ref, (ours, ref)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kkt_holds_at_every_path_point(dtype):
    X, y = make_classification(600, 30, 5, seed=6)
    kkt_tol = 5e-3
    path = elastic_net_path(X, y, alpha=0.99, n_lambdas=12, lambda_min_ratio=1e-3, dtype=dtype, kkt_tol=kkt_tol)
    Xs = standardize(X)
    assert path.converged.all()
    for i, lam in enumerate(path.lambdas):
        W, b = to_standardized(path, i, X)
        v = kkt_violation("multinomial", Xs, y, W, b, float(lam), 0.99)
        # independent NumPy check; the float32 path stores coefficients computed on
        # float32-rounded features, hence the small slack
        slack = 1.0 if dtype == "float64" else 1.5
        assert v <= slack * kkt_tol * lam * 0.99 + 1e-12, (i, v / (lam * 0.99))
        assert path.kkt[i] <= kkt_tol
        assert path.gap[i] <= 1e-6


def test_lambda_max_is_exact():
    X, y = make_classification(300, 12, 4, seed=7)
    Xs = standardize(X)
    for group in (False, True):
        lm = lambda_max(X, y, alpha=0.9, group=group)
        assert lm == pytest.approx(lambda_max_numpy("multinomial", Xs, y, 0.9, group), rel=1e-12)
        path = elastic_net_path(X, y, alpha=0.9, group=group, lambdas=[lm, lm * (1 - 1e-3)], dtype="float64")
        assert np.all(path.coef[0] == 0)  # exactly zero at lambda_max
        assert path.nnz[1] > 0  # and not below it
        # the zero model is optimal at lambda_max: its KKT violation is rounding only
        W, b = to_standardized(path, 0, X)
        assert kkt_violation("multinomial", Xs, y, W, b, lm, 0.9, group) <= 1e-12


def test_lambda_max_other_families_and_weights():
    X, y3 = make_classification(200, 7, 3, seed=8)
    Xs = standardize(X)
    w = np.random.default_rng(1).uniform(0.1, 2, size=len(y3))
    yb = (y3 == 1).astype(int)
    assert lambda_max(X, yb, family="binomial", alpha=0.5, sample_weight=w) == pytest.approx(
        lambda_max_numpy("binomial", Xs, yb, 0.5, w=w), rel=1e-12)
    Yg = np.stack([y3 * 1.0, Xs[:, 0] ** 2], 1)
    assert lambda_max(X, Yg, family="gaussian", alpha=1.0) == pytest.approx(lambda_max_numpy("gaussian", Xs, Yg, 1.0), rel=1e-12)
    # glm-saga's formula, when it is installed, agrees on the unweighted multinomial
    gs = pytest.importorskip("glm_saga.elasticnet")
    ref = gs.maximum_reg(torch.tensor(Xs, dtype=torch.float32), torch.tensor(y3), group=False) / 0.99
    assert lambda_max(X, y3, alpha=0.99) == pytest.approx(ref, rel=1e-5)


def test_original_scale_predictions_match_standardised():
    X, y = make_classification(200, 8, 3, seed=9)
    path = elastic_net_path(X, y, n_lambdas=6, lambda_min_ratio=1e-2, dtype="float64")
    i = 4
    W, b = to_standardized(path, i, X)
    np.testing.assert_allclose(path.decision_function(X, i), standardize(X) @ W + b, rtol=1e-10, atol=1e-10)
    assert path.train_accuracy[i] == pytest.approx((path.predict(X, i) == y).mean())


def test_no_standardize_solves_raw_problem():
    X, y = make_classification(150, 6, 3, seed=10)
    Xr = X / X.std(0)  # well scaled, not centred
    path = elastic_net_path(Xr, y, standardize=False, alpha=0.9, n_lambdas=4, lambda_min_ratio=1e-2, dtype="float64")
    lam = float(path.lambdas[2])
    ours = objective("multinomial", Xr, y, path.coef[2].T, path.intercept[2], lam, 0.9)
    ref, _, _ = cvxpy_solve("multinomial", Xr, y, lam, 0.9)
    assert abs(ours - ref) <= REL * ref


def test_a_capped_working_set_gives_the_same_path(monkeypatch):
    """With the working set capped to the previous lambda's active features, every feature
    that enters must come in through the certificate's KKT check: the path is unchanged."""
    import debuggable.glm.path as path_module
    from debuggable.glm.solvers.prox_newton import ProxNewtonSolver

    X, y = make_classification(400, 40, 4, seed=11)
    monkeypatch.setattr(path_module, "_WS_MIN", 1)
    monkeypatch.setattr(path_module, "_WS_GROWTH", 1.0)
    sizes = []
    solve = ProxNewtonSolver.solve

    def spy(self, lam, W, b, A, **kw):
        sizes.append(int(A.numel()))
        return solve(self, lam, W, b, A, **kw)

    monkeypatch.setattr(ProxNewtonSolver, "solve", spy)
    path = elastic_net_path(X, y, alpha=0.99, n_lambdas=8, lambda_min_ratio=1e-2)
    assert path.converged.all()
    # the cap bound: some lambda started with fewer features than its solution uses
    assert any(s < f for s, f in zip(sizes[1:], path.n_features[1:]))
    _check_against_cvxpy("multinomial", X, y, path, 0.99, idx=(2, 5, 7))
    Xs = standardize(X)
    for i, lam in enumerate(path.lambdas):
        W, b = to_standardized(path, i, X)
        assert kkt_violation("multinomial", Xs, y, W, b, float(lam), 0.99) <= 5e-3 * lam * 0.99 + 1e-12


def test_the_diagonal_curvature_model_for_many_classes_gives_the_same_path(monkeypatch):
    """From ``DIAGONAL_MIN_CLASSES`` classes on, the model keeps only B's diagonal; forced
    on here at K = 6, the path still matches cvxpy (the certificate decides when to stop)."""
    from debuggable.glm.datafits import Multinomial

    X, y = make_classification(300, 12, 6, seed=4)
    calls = []
    original = Multinomial.curvature

    def spy(self, Z):
        B = original(self, Z)
        calls.append(B.dim())
        return B

    monkeypatch.setattr(Multinomial, "DIAGONAL_MIN_CLASSES", 3)
    monkeypatch.setattr(Multinomial, "curvature", spy)
    path = elastic_net_path(X, y, alpha=0.99, n_lambdas=5, lambda_min_ratio=1e-2, dtype="float64")
    assert calls and set(calls) == {1}  # only the diagonal model was built
    assert path.converged.all()
    _check_against_cvxpy("multinomial", X, y, path, 0.99)
