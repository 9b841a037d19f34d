"""scikit-learn estimators around :func:`~debuggable.glm.elastic_net_path`.

``ElasticNetPathClassifier`` (multinomial or binomial) and ``ElasticNetPathRegressor``
(gaussian, one or several targets) fit the whole regularisation path, select one point
and predict with it. ``path_`` keeps the whole path; ``coef_`` and ``intercept_`` are the
selected point, in the original feature scale.

Both pass scikit-learn's ``check_estimator`` (``tests/glm/test_sklearn_checks.py``). The
choices that make them follow its rules:

* inputs go through ``sklearn.utils.validation.validate_data``: dense float arrays only
  (sparse input is refused with scikit-learn's standard ``TypeError``: the solver's
  Gram matrix and standardisation are dense), no NaN or inf, ``n_features_in_`` and
  ``feature_names_in_`` recorded and checked at predict time;
* sample weights are frequency weights: rows of zero weight are dropped and the rest
  scaled to mean 1, and standardisation uses the weighted mean and the weighted
  unbiased standard deviation (``sum w (x - m)^2 / (sum w - 1)``), so integer weights
  give the same problem as repeated rows;
* features that are constant (after weighting) get zero weight and are left out of
  the fit, as the run's ``fit`` stage does for dead units.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from debuggable.glm.path import elastic_net_path
from debuggable.glm.select import select_by_accuracy, select_by_features, select_by_lambda

_FLOATS = [np.float64, np.float32]


def _weights(sample_weight: Any, n: int) -> np.ndarray | None:
    """Validated non-negative (n,) float64 weights, or None."""
    if sample_weight is None:
        return None
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight: expected shape ({n},) to match the rows of X, got {w.shape}.")
    if np.any(w < 0):
        raise ValueError("sample_weight: expected non-negative weights, got a negative one.")
    if not np.any(w > 0):
        raise ValueError("sample_weight: expected some positive weight, got only zeros.")
    return w


def _weighted_moments(X: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column weighted mean and unbiased standard deviation (frequency weights)."""
    Xd = np.asarray(X, dtype=np.float64)
    if w is None:
        return Xd.mean(0), Xd.std(0, ddof=1) if Xd.shape[0] > 1 else np.zeros(Xd.shape[1])
    total = float(w.sum())
    mean = (w @ Xd) / total
    var = (w @ (Xd - mean) ** 2) / max(total - 1.0, 1e-300)
    return mean, np.sqrt(var)


class _PathEstimator(BaseEstimator):
    """Parameters and the fit shared by the classifier and the regressor."""

    _family_choices: tuple[str, ...] = ()
    _selections: tuple[str, ...] = ()

    # -- the fit -------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.family not in self._family_choices:
            raise ValueError(f"family: expected one of {list(self._family_choices)}, got {self.family!r}.")
        if self.selection not in self._selections:
            raise ValueError(f"selection: expected one of {list(self._selections)}, got {self.selection!r}.")
        if self.selection == "features" and self.features_per_class is None:
            raise ValueError("features_per_class: expected an integer with selection='features', got None.")
        if self.selection == "lambda" and self.lam is None:
            raise ValueError("lam: expected a positive lambda with selection='lambda', got None.")
        if self.validation_fraction is not None:
            frac = self.validation_fraction
            if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < float(frac) < 1:
                raise ValueError(f"validation_fraction: expected a fraction in (0, 1), got {frac!r}.")

    def _fit_path(self, X: np.ndarray, targets: np.ndarray, w: np.ndarray | None, X_val, t_val, stratify=None):
        """Drop zero-weight rows, split off a validation set, standardise with the
        weights, leave constant features out, fit the path, map it back."""
        if w is not None:
            keep = w > 0
            X, targets, w = X[keep], targets[keep], w[keep]
            if stratify is not None:
                stratify = stratify[keep]
        if X_val is None and self.validation_fraction is not None:
            from sklearn.model_selection import train_test_split

            idx_tr, idx_va = train_test_split(np.arange(X.shape[0]), test_size=float(self.validation_fraction),
                                              stratify=stratify, random_state=self.random_state)
            X_val, t_val = X[idx_va], targets[idx_va]
            X, targets = X[idx_tr], targets[idx_tr]
            w = None if w is None else w[idx_tr]
        n, d = X.shape
        if n < 2:
            raise ValueError(f"X: expected at least 2 samples with positive weight to fit, got n_samples = {n}.")
        if self.standardize:
            # the raw frequency weights: the unbiased denominator is sum(w) - 1
            mean, std = _weighted_moments(X, w)
        else:
            mean, std = np.zeros(d), np.ones(d)
        if w is not None:
            w = w / w.mean()  # the path minimises (1/n) sum_i w_i loss_i: weights relative to 1
            if np.all(w == w[0]):
                w = None
        used = np.flatnonzero(np.isfinite(std) & (std > 1e-12 * np.maximum(np.abs(mean), 1.0)))
        if used.size == 0:
            raise ValueError(f"X: every one of its {d} features is constant; expected at least one feature that varies.")
        Xs = (np.asarray(X, dtype=np.float64)[:, used] - mean[used]) / std[used]
        Xv = None if X_val is None else (np.asarray(X_val, dtype=np.float64)[:, used] - mean[used]) / std[used]
        path = elastic_net_path(
            Xs, targets, family=self.family, alpha=self.alpha, n_lambdas=self.n_lambdas,
            lambda_min_ratio=self.lambda_min_ratio, lambdas=self.lambdas, tol=self.tol, standardize=False,
            group=self.group, sample_weight=w, X_val=Xv, y_val=t_val, device=self.device, max_time=self.max_time,
            verbose=self.verbose, kkt_tol=self.kkt_tol, dtype=self.dtype, max_iter=self.max_iter,
        )
        # back to the original features: zero weight for the constant ones
        coef = np.zeros(path.coef.shape[:2] + (d,))
        coef[:, :, used] = path.coef / std[used]
        path.intercept = path.intercept - coef @ mean
        path.coef = coef
        path.feature_mean, path.feature_std = mean, np.where(std > 0, std, 1.0)
        path.info.update(standardize=bool(self.standardize), n_features=d, features_used=used.size,
                         sample_weight=w is not None)
        if w is not None and self.family != "gaussian":
            # the selection compares training accuracies: weight them like the loss
            Z = np.einsum("nd,lkd->lnk", np.asarray(X, dtype=np.float64), path.coef) + path.intercept[:, None, :]
            pred = Z.argmax(2) if self.family == "multinomial" else (Z[:, :, 0] > 0).astype(np.int64)
            path.train_accuracy = (pred == targets[None, :]).astype(np.float64) @ w / w.sum()
        return path

    def _select(self, path, score: str):
        if self.selection == "features":
            return select_by_features(path, int(self.features_per_class))
        if self.selection == "lambda":
            return select_by_lambda(path, float(self.lam))
        if self.selection == "last":
            return select_by_lambda(path, float(path.lambdas[-1]))
        if score == "accuracy":
            split = "val" if np.any(np.isfinite(path.val_accuracy)) else "train"
            return select_by_accuracy(path, margin=self.margin, split=split)
        # regression: the sparsest point whose mean squared error is within `margin` (relative) of the best
        loss = path.val_loss if np.any(np.isfinite(path.val_loss)) else path.train_loss
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0 <= float(margin) < 1:
            raise ValueError(f"margin: expected a fraction in [0, 1) such as 0.05, got {margin!r}.")
        best = float(np.nanmin(loss))
        ok = np.flatnonzero(np.isfinite(loss) & (loss <= best * (1 + float(margin)) + 1e-12))
        i = int(ok[np.lexsort((ok, path.nnz[ok]))[0]])
        from debuggable.glm.select import Selection

        rule = {"rule": "loss", "margin": float(margin), "split": "val" if np.any(np.isfinite(path.val_loss)) else "train",
                "best_loss": best, "index": i, "lambda": float(path.lambdas[i]), "nnz": int(path.nnz[i])}
        path.selection = rule
        return Selection(index=i, lam=float(path.lambdas[i]), rule=rule)

    def _set_fitted(self, path, sel) -> None:
        self.path_ = path
        self.selection_ = sel
        self.index_ = sel.index
        self.lambda_ = sel.lam
        self.coef_ = path.coef[sel.index]
        self.intercept_ = path.intercept[sel.index]
        self.n_iter_ = int(path.n_iter.sum())  # outer iterations over the whole path

    def _linear(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "path_")
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=_FLOATS)
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def _val_set(self, X_val: Any, y_val: Any):
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val, y_val: expected both or neither, got only one.")
        if X_val is None:
            return None, None
        X_val = check_array(X_val, accept_sparse=False, dtype=_FLOATS, input_name="X_val")
        if X_val.shape[1] != self.n_features_in_:
            raise ValueError(f"X_val: expected {self.n_features_in_} features like X, got {X_val.shape[1]}.")
        return X_val, np.asarray(y_val)


_COMMON_DOC = """
    Parameters mirror :func:`~debuggable.glm.elastic_net_path` (``alpha``, ``n_lambdas``,
    ``lambda_min_ratio``, ``lambdas``, ``tol``, ``kkt_tol``, ``max_iter`` (outer iterations
    per lambda), ``standardize``, ``group``, ``device``, ``dtype``, ``max_time``,
    ``verbose``), plus the choice of one point:

    * ``selection="features"``: the densest point with at most ``features_per_class``
      features for every output; ``"lambda"``: the grid point nearest ``lam``;
      ``"last"``: the smallest lambda;
    * the validation set is ``X_val`` / ``y_val`` given to ``fit``, or a
      ``validation_fraction`` of the training rows (seeded by ``random_state``), or
      else the training set itself.
"""


class ElasticNetPathClassifier(ClassifierMixin, _PathEstimator):
    """Sparse multinomial (or binomial) logistic regression chosen from an elastic-net path.

    ``selection="accuracy"`` (default): the sparsest point whose accuracy on the
    validation set is within ``margin`` of the best (the paper's rule: five points).
    Labels may be any sortable values (``classes_``). Binary problems give a 1-D
    ``decision_function`` (positive means ``classes_[1]``), with either family.
    """ + _COMMON_DOC

    _family_choices = ("multinomial", "binomial")
    _selections = ("accuracy", "features", "lambda", "last")

    def __init__(self, alpha: float = 0.99, n_lambdas: int = 100, lambda_min_ratio: float = 1e-3, lambdas: Any = None,
                 tol: float = 1e-6, standardize: bool = True, group: bool = False, family: str = "multinomial",
                 selection: str = "accuracy", margin: float = 0.05, features_per_class: int | None = None,
                 lam: float | None = None, validation_fraction: float | None = None, random_state: int | None = 0,
                 device: Any = None, max_time: float | None = None, verbose: bool = False, dtype: Any = None,
                 kkt_tol: float = 5e-3, max_iter: int = 500):
        self.alpha = alpha
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.lambdas = lambdas
        self.tol = tol
        self.standardize = standardize
        self.group = group
        self.family = family
        self.selection = selection
        self.margin = margin
        self.features_per_class = features_per_class
        self.lam = lam
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.max_time = max_time
        self.verbose = verbose
        self.dtype = dtype
        self.kkt_tol = kkt_tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None, y_val: Any = None) -> "ElasticNetPathClassifier":
        """Fit the path on (X, y) and select one point; returns ``self``.

        Args:
            X: (n, D) dense array (sparse matrices are refused).
            y: (n,) class labels (a column vector is accepted with a warning).
            sample_weight: (n,) non-negative frequency weights.
            X_val, y_val: a validation set for the selection rule.
        """
        self._check_params()
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=_FLOATS, ensure_min_samples=2)
        check_classification_targets(y)
        w = _weights(sample_weight, X.shape[0])
        classes, y_idx = np.unique(y, return_inverse=True)
        present = classes if w is None else np.unique(y[w > 0])
        if present.size < 2:
            raise ValueError(f"y: expected at least two classes{' with positive sample weight' if w is not None else ''}, "
                             f"got 1 class ({present[0]!r})." if present.size else "y: expected labels, got none.")
        if w is not None and present.size < classes.size:
            classes = present
            y_idx = np.searchsorted(classes, np.where(np.isin(y, classes), y, classes[0]))
        if self.family == "binomial" and classes.size != 2:
            raise ValueError(f"family: 'binomial' fits two classes, got {classes.size}: Only binary classification is supported with it; use family='multinomial'.")
        self.classes_ = classes
        X_val, y_val = self._val_set(X_val, y_val)
        yv_idx = None
        if y_val is not None:
            unknown = ~np.isin(y_val, classes)
            if unknown.any():
                raise ValueError(f"y_val: expected labels seen in y, got {y_val[unknown][0]!r}.")
            yv_idx = np.searchsorted(classes, y_val)
        path = self._fit_path(X, y_idx, w, X_val, yv_idx, stratify=y_idx)
        self._set_fitted(path, self._select(path, "accuracy"))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(n, K) linear scores; (n,) for two classes (positive means ``classes_[1]``)."""
        Z = self._linear(X)
        if self.family == "binomial":
            return Z[:, 0]
        return Z[:, 1] - Z[:, 0] if self.classes_.size == 2 else Z

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, K) class probabilities (columns in ``classes_`` order)."""
        Z = self._linear(X)
        if self.family == "binomial":
            p = 1.0 / (1.0 + np.exp(-Z[:, 0]))
            return np.stack([1 - p, p], 1)
        Z = Z - Z.max(1, keepdims=True)
        P = np.exp(Z)
        return P / P.sum(1, keepdims=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self.family != "binomial"  # the binomial datafit has two classes
        return tags

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """(n,) predicted labels."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[scores.argmax(1)]


class ElasticNetPathRegressor(RegressorMixin, _PathEstimator):
    """Sparse linear regression (the gaussian datafit, one or several targets) chosen
    from an elastic-net path.

    ``selection="loss"`` (default): the sparsest point whose mean squared error on the
    validation set is within ``margin`` (relative, 0.05 = 5%) of the best.
    """ + _COMMON_DOC

    _family_choices = ("gaussian",)
    _selections = ("loss", "features", "lambda", "last")

    def __init__(self, alpha: float = 0.99, n_lambdas: int = 100, lambda_min_ratio: float = 1e-3, lambdas: Any = None,
                 tol: float = 1e-6, standardize: bool = True, group: bool = False, selection: str = "loss",
                 margin: float = 0.05, features_per_class: int | None = None, lam: float | None = None,
                 validation_fraction: float | None = None, random_state: int | None = 0, device: Any = None,
                 max_time: float | None = None, verbose: bool = False, dtype: Any = None, kkt_tol: float = 5e-3,
                 max_iter: int = 500):
        self.alpha = alpha
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.lambdas = lambdas
        self.tol = tol
        self.standardize = standardize
        self.group = group
        self.selection = selection
        self.margin = margin
        self.features_per_class = features_per_class
        self.lam = lam
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.max_time = max_time
        self.verbose = verbose
        self.dtype = dtype
        self.kkt_tol = kkt_tol
        self.max_iter = max_iter

    family = "gaussian"

    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None, y_val: Any = None) -> "ElasticNetPathRegressor":
        """Fit the path on (X, y) and select one point; returns ``self``.

        Args:
            X: (n, D) dense array (sparse matrices are refused).
            y: (n,) or (n, K) real targets.
            sample_weight: (n,) non-negative frequency weights.
            X_val, y_val: a validation set for the selection rule.
        """
        self._check_params()
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=_FLOATS, ensure_min_samples=2, y_numeric=True,
                             multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        w = _weights(sample_weight, X.shape[0])
        X_val, y_val = self._val_set(X_val, y_val)
        if y_val is not None:
            y_val = np.asarray(y_val, dtype=np.float64).reshape(len(y_val), -1)
        targets = y.reshape(len(y), -1)
        path = self._fit_path(X, targets, w, X_val, y_val)
        self._set_fitted(path, self._select(path, "loss"))
        if self._y_1d:
            self.coef_, self.intercept_ = self.coef_[0], self.intercept_[0]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(n,) or (n, K) predictions, shaped like the training targets."""
        check_is_fitted(self, "path_")
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=_FLOATS)
        coef = np.atleast_2d(self.coef_)
        Z = np.asarray(X, dtype=np.float64) @ coef.T + self.intercept_
        return Z[:, 0] if self._y_1d else Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
