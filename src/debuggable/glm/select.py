"""Picking one point of a regularisation path, with the rule recorded.

* :func:`select_by_accuracy`: the sparsest point whose (validation) accuracy is
  within ``margin`` of the best on the path; the paper uses ``margin=0.05`` (five
  percentage points) on the validation set;
* :func:`select_by_features`: the densest point that uses at most ``per_class``
  features for every class;
* :func:`select_by_lambda`: the grid point nearest to a given lambda (log scale).

Each returns a :class:`Selection` and stores its rule as ``path.selection``, so the
choice is saved with the path.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.glm.result import GLMPath


@dataclass
class Selection:
    """The chosen path point and why it was chosen."""

    index: int
    lam: float
    rule: dict

    def as_dict(self) -> dict:
        return asdict(self)


def _record(path: GLMPath, index: int, rule: dict) -> Selection:
    index = int(index)
    rule = dict(rule)
    rule.update({
        "index": index,
        "lambda": float(path.lambdas[index]),
        "nnz": int(path.nnz[index]),
        "n_features": int(path.n_features[index]),
        "max_features_per_class": int(path.features_per_class[index].max()) if path.coef.size else 0,
        "train_accuracy": float(path.train_accuracy[index]),
        "val_accuracy": float(path.val_accuracy[index]),
    })
    path.selection = rule
    return Selection(index=index, lam=float(path.lambdas[index]), rule=rule)


def _check_path(path: Any) -> GLMPath:
    if not isinstance(path, GLMPath) or len(path) == 0:
        raise DebuggableError(f"path: expected a non-empty GLMPath, got {type(path).__name__}.")
    return path


def select_by_accuracy(path: GLMPath, margin: float = 0.05, split: str = "val") -> Selection:
    """The sparsest point with accuracy >= best - ``margin`` (accuracies in [0, 1])."""
    path = _check_path(path)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not (0 <= float(margin) < 1):
        raise DebuggableError(f"margin: expected a fraction in [0, 1) such as 0.05 for five percentage points, got {margin!r}.")
    if split not in ("val", "train"):
        raise DebuggableError(f"split: expected 'val' or 'train', got {split!r}.")
    acc = path.val_accuracy if split == "val" else path.train_accuracy
    if not np.any(np.isfinite(acc)):
        what = "fit with X_val and y_val" if split == "val" else "a classification family"
        raise DebuggableError(f"split: expected {split} accuracies on the path, got none ({what} to have them).")
    best = float(np.nanmax(acc))
    ok = np.nonzero(np.isfinite(acc) & (acc >= best - float(margin) - 1e-12))[0]
    nnz = path.nnz[ok]
    # sparsest; ties go to the larger lambda (earlier on the path)
    i = int(ok[np.lexsort((ok, nnz))[0]])
    return _record(path, i, {"rule": "accuracy", "margin": float(margin), "split": split, "best_accuracy": best})


def select_by_features(path: GLMPath, per_class: int) -> Selection:
    """The densest point whose every class uses at most ``per_class`` features."""
    path = _check_path(path)
    if isinstance(per_class, bool) or not isinstance(per_class, numbers.Integral) or int(per_class) < 0:
        raise DebuggableError(f"per_class: expected a non-negative integer number of features, got {per_class!r}.")
    fpc = path.features_per_class.max(axis=1)
    ok = np.nonzero(fpc <= int(per_class))[0]
    if ok.size == 0:
        raise DebuggableError(
            f"per_class: expected a count reachable on this path, got {per_class} while the sparsest point uses {int(fpc.min())} "
            "features for some class; start the path at a larger lambda."
        )
    i = int(ok.max())
    return _record(path, i, {"rule": "features_per_class", "per_class": int(per_class)})


def select_by_lambda(path: GLMPath, lam: float) -> Selection:
    """The grid point nearest to ``lam`` on a log scale."""
    path = _check_path(path)
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not (math.isfinite(float(lam)) and float(lam) > 0):
        raise DebuggableError(f"lam: expected a positive finite lambda, got {lam!r}.")
    i = int(np.argmin(np.abs(np.log(path.lambdas) - math.log(float(lam)))))
    return _record(path, i, {"rule": "lambda", "requested_lambda": float(lam)})


def select(path: GLMPath, rule: str = "accuracy", **kwargs: Any) -> Selection:
    """Dispatch on ``rule``: ``"accuracy"``, ``"features"`` or ``"lambda"``."""
    table = {"accuracy": select_by_accuracy, "features": select_by_features, "lambda": select_by_lambda}
    if rule not in table:
        raise DebuggableError(f"rule: expected 'accuracy', 'features' or 'lambda', got {rule!r}.")
    return table[rule](path, **kwargs)
