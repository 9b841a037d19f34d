"""Evaluating a decision layer: dense vs sparse, top-k features, sparsity curves.

Features are removed in the standardised space: removing feature j from class c's
score sets the feature to its training mean for that class (the standardised weight
is zeroed and the bias absorbs the mean), which is what "using only some features"
means in the paper's Figure 4(b).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from debuggable.errors import DebuggableError


def _check_xy(features: np.ndarray, labels: np.ndarray, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or x.shape[1] != feature_dim:
        raise DebuggableError(f"features: expected shape (N, {feature_dim}), got {x.shape}.")
    if y.shape != (x.shape[0],):
        raise DebuggableError(f"labels: expected shape ({x.shape[0]},) to match features, got {y.shape}.")
    if x.shape[0] == 0:
        raise DebuggableError("features: no rows to evaluate on.")
    return x, y


def accuracy(weight: np.ndarray, bias: np.ndarray, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of ``features @ weight.T + bias`` (weight (K, D), raw features)."""
    x, y = _check_xy(features, labels, np.asarray(weight).shape[1])
    return float(np.mean((x @ np.asarray(weight, dtype=np.float64).T + bias).argmax(1) == y))


def masked_accuracy(
    weight: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    keep: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
) -> float:
    """Accuracy when class c only uses the features with ``keep[c, j]`` True.

    Args:
        weight, bias: (K, D), (K,) on raw features.
        mean, std: (D,) the normalisation; a dropped feature sits at its mean.
        keep: (K, D) boolean mask.
        features, labels: (N, D) raw features and (N,) labels.
    """
    x, y = _check_xy(features, labels, weight.shape[1])
    ws = weight * std[None, :]
    bs = bias + weight @ mean
    z = (x - mean) / std
    logits = z @ (ws * keep).T + bs
    return float(np.mean(logits.argmax(1) == y))


def top_k_mask(weight: np.ndarray, std: np.ndarray, k: int) -> np.ndarray:
    """(K, D) mask of each class's k largest |standardised weights| (non-zero ones only)."""
    ws = np.abs(weight * std[None, :])
    order = np.argsort(-ws, axis=1, kind="stable")[:, :k]
    mask = np.zeros(ws.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask & (ws > 0)


def top_k_table(
    layers: dict[str, tuple[np.ndarray, np.ndarray]],
    mean: np.ndarray,
    std: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int] = (5, 10, 20),
) -> list[dict[str, Any]]:
    """The paper's Figure 4(b): accuracy with only the top-k features per class, and
    with only the rest, for each named layer (e.g. ``{"dense": (W, b), "sparse": (W, b)}``).

    Returns:
        One row per (layer, k): ``{"layer", "k", "top_k", "rest", "all"}``, accuracies
        in [0, 1]. ``rest`` keeps every non-zero weight except the top k.
    """
    rows = []
    for name, (w, b) in layers.items():
        w = np.asarray(w, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        full = accuracy(w, b, features, labels)
        nonzero = (w * std[None, :]) != 0
        for k in ks:
            top = top_k_mask(w, std, k)
            rows.append({
                "layer": name,
                "k": int(k),
                "top_k": masked_accuracy(w, b, mean, std, top, features, labels),
                "rest": masked_accuracy(w, b, mean, std, nonzero & ~top, features, labels),
                "all": full,
            })
    return rows


def sparsity_curve(path: Any, features: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """Per path point: lambda, non-zeros, mean features per class, density and accuracy.

    Args:
        path: anything with ``lambdas`` (L,), ``coef`` (L, K, D), ``intercept`` (L, K).
        features, labels: an evaluation split (raw features).
    """
    coef = np.asarray(path.coef)
    intercept = np.asarray(path.intercept)
    rows = []
    for i, lam in enumerate(np.asarray(path.lambdas)):
        nnz_per_class = np.count_nonzero(coef[i], axis=1)
        rows.append({
            "index": i,
            "lambda": float(lam),
            "nnz": int(nnz_per_class.sum()),
            "features_per_class": float(nnz_per_class.mean()),
            "density": float(nnz_per_class.sum() / coef[i].size),
            "accuracy": accuracy(coef[i], intercept[i], features, labels),
        })
    return rows
