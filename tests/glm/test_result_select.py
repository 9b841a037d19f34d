"""GLMPath save/load, predictions, selection rules and the scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.glm import (
    ElasticNetPathClassifier,
    GLMPath,
    elastic_net_path,
    select,
    select_by_accuracy,
    select_by_features,
    select_by_lambda,
)

from .oracles import make_classification

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(400, 15, 4, seed=30)
    Xv, yv = make_classification(200, 15, 4, seed=31)
    path = elastic_net_path(X, y, X_val=Xv, y_val=yv, n_lambdas=12, lambda_min_ratio=1e-3)
    return path, X, y, Xv, yv


def test_path_shapes_and_metrics(fitted):
    path, X, y, Xv, yv = fitted
    L, K, D = path.coef.shape
    assert (L, K, D) == (12, 4, 15) and path.intercept.shape == (12, 4)
    for name in ("objective", "gap", "kkt", "n_iter", "nnz", "time", "train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert getattr(path, name).shape == (12,), name
    assert np.all(np.diff(path.lambdas) < 0)
    assert path.nnz[0] == 0 and path.nnz[-1] > 0
    assert path.loss["val"] is path.val_loss and path.accuracy["train"] is path.train_accuracy
    for i in (0, 5, 11):
        assert path.val_accuracy[i] == pytest.approx((path.predict(Xv, i) == yv).mean())
        P = path.predict_proba(Xv, i)
        assert np.allclose(P.sum(1), 1) and np.array_equal(P.argmax(1), path.predict(Xv, i))
        Z = path.decision_function(Xv, i)
        nll = np.mean(np.log(np.exp(Z).sum(1)) - Z[np.arange(len(yv)), yv])
        assert path.val_loss[i] == pytest.approx(nll, rel=1e-6)
    # the objective decreases along the path and the time is accounted for
    assert np.all(np.diff(path.objective) < 0)
    assert path.info["total_time"] >= path.time.sum()


def test_save_load_roundtrip(fitted, tmp_path):
    path = fitted[0]
    select_by_accuracy(path, margin=0.05)
    out = path.save(tmp_path / "glm")
    assert sorted(p.name for p in out.iterdir()) == ["glm_path.json", "glm_path.safetensors"]
    back = GLMPath.load(out)
    for name in ("lambdas", "coef", "intercept", "objective", "gap", "kkt", "converged", "n_iter", "nnz", "time",
                 "val_accuracy", "feature_mean", "feature_std"):
        a, b = getattr(path, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert back.info == {k: v for k, v in path.info.items()}
    assert back.selection == path.selection
    np.testing.assert_array_equal(back.predict(fitted[3]), path.predict(fitted[3]))


def test_select_by_accuracy_is_sparsest_within_margin(fitted):
    path = fitted[0]
    sel = select_by_accuracy(path, margin=0.05)
    best = np.nanmax(path.val_accuracy)
    ok = path.val_accuracy >= best - 0.05
    assert ok[sel.index] and path.nnz[sel.index] == path.nnz[ok].min()
    assert path.selection["rule"] == "accuracy" and path.selection["margin"] == 0.05
    assert path.selection["best_accuracy"] == best and path.selection["index"] == sel.index
    strict = select_by_accuracy(path, margin=0.0)
    assert path.val_accuracy[strict.index] == best
    assert select(path, "accuracy", margin=0.05).index == sel.index


def test_select_by_features_and_lambda(fitted):
    path = fitted[0]
    sel = select_by_features(path, 3)
    fpc = path.features_per_class.max(1)
    assert fpc[sel.index] <= 3 and np.all(fpc[sel.index + 1 :] > 3) if sel.index + 1 < len(path) else True
    assert path.selection == sel.rule and sel.rule["per_class"] == 3
    lam = float(path.lambdas[4]) * 1.01
    assert select_by_lambda(path, lam).index == 4
    with pytest.raises(DebuggableError, match=r"^margin: expected a fraction in \[0, 1\)"):
        select_by_accuracy(path, margin=5)
    with pytest.raises(DebuggableError, match=r"^rule: expected"):
        select(path, "best")


def test_select_needs_validation_accuracy():
    X, y = make_classification(100, 5, 3, seed=32)
    path = elastic_net_path(X, y, n_lambdas=3)
    with pytest.raises(DebuggableError, match=r"^split: expected val accuracies on the path, got none"):
        select_by_accuracy(path)
    assert select_by_accuracy(path, split="train").rule["split"] == "train"


def test_estimator_sklearn_conventions():
    from sklearn.base import clone

    X, y = make_classification(300, 10, 3, seed=33)
    labels = np.array(["cat", "dog", "emu"])[y]
    est = ElasticNetPathClassifier(n_lambdas=10, lambda_min_ratio=1e-2, validation_fraction=0.25)
    assert clone(est).get_params() == est.get_params()
    assert est.fit(X, labels) is est
    assert list(est.classes_) == ["cat", "dog", "emu"]
    assert est.coef_.shape == (3, 10) and est.intercept_.shape == (3,)
    assert set(est.predict(X)) <= set(est.classes_)
    P = est.predict_proba(X)
    assert P.shape == (300, 3) and np.allclose(P.sum(1), 1)
    assert 0.5 < est.score(X, labels) <= 1.0
    assert est.path_.selection["split"] == "val"
    assert np.array_equal(est.coef_, est.path_.coef[est.index_])
    dense = ElasticNetPathClassifier(n_lambdas=10, lambda_min_ratio=1e-2, selection="last").fit(X, labels)
    assert np.count_nonzero(dense.coef_) >= np.count_nonzero(est.coef_)
    few = ElasticNetPathClassifier(n_lambdas=10, lambda_min_ratio=1e-2, selection="features", features_per_class=2).fit(X, labels)
    assert (few.coef_ != 0).sum(1).max() <= 2
    binary = ElasticNetPathClassifier(family="binomial", n_lambdas=5).fit(X, labels == "cat")
    assert binary.decision_function(X).shape == (300,) and binary.predict_proba(X).shape == (300, 2)
