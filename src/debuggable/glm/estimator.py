"""A scikit-learn classifier around :func:`~debuggable.glm.elastic_net_path`.

``ElasticNetPathClassifier`` fits the whole regularisation path, selects one point
(by default the paper's rule: the sparsest model whose validation accuracy is within
five percentage points of the best) and predicts with it. ``path_`` keeps the whole
path; ``coef_`` (K, D) and ``intercept_`` (K,) are the selected point, in the
original feature scale. Labels may be any sortable values (``classes_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from debuggable.errors import DebuggableError
from debuggable.glm.path import elastic_net_path
from debuggable.glm.select import select_by_accuracy, select_by_features, select_by_lambda


class ElasticNetPathClassifier(ClassifierMixin, BaseEstimator):
    """Sparse multinomial (or binomial) logistic regression chosen from an elastic-net path.

    Parameters mirror :func:`~debuggable.glm.elastic_net_path`, plus the selection:

    * ``selection="accuracy"``: sparsest point within ``margin`` of the best accuracy on
      the validation set (``X_val`` / ``y_val`` given to ``fit``, or a stratified
      ``validation_fraction`` of the training data, or else the training set);
    * ``selection="features"``: densest point with at most ``features_per_class``
      features in every class;
    * ``selection="lambda"``: the grid point nearest ``lam``;
    * ``selection="last"``: the smallest lambda.
    """

    def __init__(self, alpha: float = 0.99, n_lambdas: int = 100, lambda_min_ratio: float = 1e-3, lambdas: Any = None,
                 tol: float = 1e-6, standardize: bool = True, group: bool = False, family: str = "multinomial",
                 selection: str = "accuracy", margin: float = 0.05, features_per_class: int | None = None,
                 lam: float | None = None, validation_fraction: float | None = None, random_state: int | None = 0,
                 device: Any = None, max_time: float | None = None, verbose: bool = False, dtype: Any = None,
                 kkt_tol: float = 5e-3):
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

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None, X_val: Any = None, y_val: Any = None) -> "ElasticNetPathClassifier":
        if self.family not in ("multinomial", "binomial"):
            raise DebuggableError(f"family: expected 'multinomial' or 'binomial' for a classifier, got {self.family!r}.")
        if self.selection not in ("accuracy", "features", "lambda", "last"):
            raise DebuggableError(f"selection: expected 'accuracy', 'features', 'lambda' or 'last', got {self.selection!r}.")
        if self.selection == "features" and self.features_per_class is None:
            raise DebuggableError("features_per_class: expected an integer with selection='features', got None.")
        if self.selection == "lambda" and self.lam is None:
            raise DebuggableError("lam: expected a positive lambda with selection='lambda', got None.")
        y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
        if y.ndim != 1:
            raise DebuggableError(f"y: expected a 1-D array of class labels, got shape {y.shape}.")
        classes, y_idx = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise DebuggableError(f"y: expected at least two classes, got only {classes[0]!r}." if classes.size else "y: expected labels, got none.")
        if self.family == "binomial" and classes.size != 2:
            raise DebuggableError(f"family: 'binomial' needs exactly two classes, got {classes.size}.")
        self.classes_ = classes
        yv_idx = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise DebuggableError("X_val, y_val: expected both or neither, got only one.")
            y_val = np.asarray(y_val.detach().cpu() if hasattr(y_val, "detach") else y_val)
            unknown = ~np.isin(y_val, classes)
            if unknown.any():
                raise DebuggableError(f"y_val: expected labels seen in y, got {y_val[unknown][0]!r}.")
            yv_idx = np.searchsorted(classes, y_val)
        elif self.validation_fraction is not None:
            frac = float(self.validation_fraction)
            if not 0 < frac < 1:
                raise DebuggableError(f"validation_fraction: expected a fraction in (0, 1), got {self.validation_fraction!r}.")
            from sklearn.model_selection import train_test_split

            Xn = np.asarray(X.detach().cpu() if hasattr(X, "detach") else X)
            idx_tr, idx_va = train_test_split(np.arange(len(y_idx)), test_size=frac, stratify=y_idx, random_state=self.random_state)
            X, X_val = Xn[idx_tr], Xn[idx_va]
            y_idx, yv_idx = y_idx[idx_tr], y_idx[idx_va]
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)[idx_tr]
        path = elastic_net_path(
            X, y_idx, family=self.family, alpha=self.alpha, n_lambdas=self.n_lambdas, lambda_min_ratio=self.lambda_min_ratio,
            lambdas=self.lambdas, tol=self.tol, standardize=self.standardize, group=self.group, sample_weight=sample_weight,
            X_val=X_val, y_val=yv_idx, device=self.device, max_time=self.max_time, verbose=self.verbose, dtype=self.dtype,
            kkt_tol=self.kkt_tol,
        )
        if self.selection == "accuracy":
            split = "val" if np.any(np.isfinite(path.val_accuracy)) else "train"
            sel = select_by_accuracy(path, margin=self.margin, split=split)
        elif self.selection == "features":
            sel = select_by_features(path, int(self.features_per_class))
        elif self.selection == "lambda":
            sel = select_by_lambda(path, float(self.lam))
        else:
            sel = select_by_lambda(path, float(path.lambdas[-1]))
        self.path_ = path
        self.selection_ = sel
        self.index_ = sel.index
        self.lambda_ = sel.lam
        self.coef_ = path.coef[sel.index]
        self.intercept_ = path.intercept[sel.index]
        self.n_features_in_ = path.coef.shape[2]
        return self

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "path_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This ElasticNetPathClassifier is not fitted yet; call fit first.")

    def decision_function(self, X: Any) -> np.ndarray:
        self._check_fitted()
        Z = self.path_.decision_function(X, self.index_)
        return Z[:, 0] if self.family == "binomial" else Z

    def predict_proba(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return self.path_.predict_proba(X, self.index_)

    def predict(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return self.classes_[self.path_.predict(X, self.index_)]
