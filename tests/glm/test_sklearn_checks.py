"""The estimators pass scikit-learn's own estimator checks (``parametrize_with_checks``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data, parametrize_with_checks

from debuggable.glm import ElasticNetPathClassifier, ElasticNetPathRegressor

# The checks fit dozens of tiny problems: 10 lambdas keep them to seconds (the
# estimator's default is 100, which changes the grid, not the correctness).
ESTIMATORS = [ElasticNetPathClassifier(n_lambdas=10), ElasticNetPathClassifier(n_lambdas=10, family="binomial"),
              ElasticNetPathRegressor(n_lambdas=10)]

TOLERANCE_REASON = (
    "the path is solved to a certified relative duality gap `tol` (1e-6 by default), so a weighted fit and the "
    "fit on repeated rows agree to about that precision, not to the check's rtol=1e-7; "
    "test_sample_weights_are_frequency_weights checks the equivalence with a tight tol"
)


def expected_failed_checks(estimator) -> dict[str, str]:
    return {"check_sample_weight_equivalence_on_dense_data": TOLERANCE_REASON}


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny problems: torch's thread pool only adds overhead (and spins on a loaded machine)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", [ElasticNetPathRegressor(n_lambdas=10, tol=1e-12, kkt_tol=1e-9, dtype="float64")])
def test_sample_weights_are_frequency_weights_exactly_for_the_regressor(est):
    """Solved tightly, sklearn's own check passes: integer weights == repeated rows."""
    check_sample_weight_equivalence_on_dense_data(type(est).__name__, est)


def test_sample_weights_are_frequency_weights():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 4)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.randn(40) > 0).astype(int) + (X[:, 2] > 1)  # overlapping classes
    sw = rng.randint(0, 4, size=40)
    kw = dict(n_lambdas=6, lambda_min_ratio=0.05, tol=1e-10, kkt_tol=1e-8, dtype="float64")
    weighted = ElasticNetPathClassifier(**kw).fit(X, y, sample_weight=sw)
    repeated = ElasticNetPathClassifier(**kw).fit(X.repeat(sw, 0), y.repeat(sw))
    np.testing.assert_allclose(weighted.path_.lambdas, repeated.path_.lambdas, rtol=1e-12)
    assert weighted.index_ == repeated.index_
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-5, atol=1e-7)


def test_binary_decision_function_is_one_column_and_matches_predict():
    rng = np.random.RandomState(1)
    X = rng.randn(60, 4)
    y = np.where(X[:, 0] - X[:, 1] > 0, "yes", "no")
    for family in ("multinomial", "binomial"):
        est = ElasticNetPathClassifier(n_lambdas=8, family=family).fit(X, y)
        d = est.decision_function(X)
        assert d.shape == (60,)
        np.testing.assert_array_equal(est.predict(X), est.classes_[(d > 0).astype(int)])
        np.testing.assert_allclose(est.predict_proba(X)[:, 1] > 0.5, d > 0)


def test_sparse_input_is_refused_with_sklearns_message():
    X, y = np.random.RandomState(0).randn(30, 3), np.arange(30) % 2
    with pytest.raises(TypeError, match="Sparse data was passed.*dense data is required"):
        ElasticNetPathClassifier(n_lambdas=5).fit(sp.csr_matrix(X), y)
    est = ElasticNetPathClassifier(n_lambdas=5).fit(X, y)
    with pytest.raises(TypeError, match="Sparse data was passed"):
        est.predict(sp.csr_matrix(X))


def test_continuous_target_and_wrong_width_are_refused():
    X = np.random.RandomState(0).randn(30, 3)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        ElasticNetPathClassifier(n_lambdas=5).fit(X, X[:, 0])
    est = ElasticNetPathClassifier(n_lambdas=5).fit(X, np.arange(30) % 3)
    with pytest.raises(ValueError, match="X has 2 features, but ElasticNetPathClassifier is expecting 3"):
        est.predict(X[:, :2])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(np.full((2, 3), np.nan))


def test_max_iter_is_passed_to_the_solver():
    X = np.random.RandomState(0).randn(50, 5)
    y = (X[:, 0] > 0).astype(int)
    est = ElasticNetPathClassifier(n_lambdas=6, max_iter=1, tol=1e-14).fit(X, y)
    assert est.path_.n_iter.max() <= 1 and not est.path_.converged[1:].all()
    assert est.n_iter_ == int(est.path_.n_iter.sum())


def test_regressor_matches_sklearn_elastic_net_on_the_same_grid():
    """Oracle: sklearn's ElasticNet on standardised data (same objective scale: 1/(2n))."""
    from sklearn.linear_model import ElasticNet

    rng = np.random.RandomState(3)
    X = rng.randn(200, 8) * rng.uniform(0.5, 3, size=8) + rng.randn(8)
    y = X[:, 0] * 2 - X[:, 3] + 0.1 * rng.randn(200)
    est = ElasticNetPathRegressor(n_lambdas=6, alpha=0.7, selection="last", tol=1e-12, kkt_tol=1e-8,
                                  dtype="float64").fit(X, y)
    lam = est.path_.lambdas[-1]
    mean, std = X.mean(0), X.std(0, ddof=1)
    ref = ElasticNet(alpha=lam, l1_ratio=0.7, tol=1e-12, max_iter=100000).fit((X - mean) / std, y)
    np.testing.assert_allclose(est.coef_ * std, ref.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(est.predict(X), ref.predict((X - mean) / std), rtol=1e-6, atol=1e-6)
