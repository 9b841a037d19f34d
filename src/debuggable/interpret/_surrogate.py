"""The local linear surrogate LIME fits: a weighted ridge regression on binary masks."""

from __future__ import annotations

import numpy as np

from debuggable.errors import DebuggableError


def cosine_distance_to_ones(z: np.ndarray) -> np.ndarray:
    """(n,) cosine distance between each binary row of ``z`` (n, M) and the all-ones row
    (the unperturbed input); an all-zero row has distance 1."""
    z = np.asarray(z, dtype=np.float64)
    m = z.shape[1]
    on = z.sum(axis=1)
    cos = np.divide(on, np.sqrt(on * m), out=np.zeros_like(on), where=on > 0)
    return 1.0 - cos


def lime_kernel(distances: np.ndarray, width: float) -> np.ndarray:
    """LIME's exponential kernel ``sqrt(exp(-d^2 / width^2))``."""
    return np.sqrt(np.exp(-(np.asarray(distances, dtype=np.float64) ** 2) / width**2))


def weighted_ridge(z: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, alpha: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise ``sum_i s_i (y_i - b - z_i w)^2 + alpha ||w||^2`` (intercept b unpenalised).

    The same objective as ``sklearn.linear_model.Ridge(alpha).fit(z, y, sample_weight=s)``.

    Args:
        z: (n, M) design (binary masks).
        y: (n,) or (n, F) targets.
        sample_weight: (n,) non-negative weights, not all zero.
        alpha: ridge penalty >= 0 (0: weighted least squares, minimum-norm if singular).

    Returns:
        ``(w, b, r2)``: (F, M) coefficients, (F,) intercepts and (F,) weighted R^2 of the
        fit (1 is perfect; a constant target fitted exactly counts as 1).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    y2 = y[:, None] if y.ndim == 1 else y
    s = np.asarray(sample_weight, dtype=np.float64)
    if s.sum() <= 0:
        raise DebuggableError("sample_weight: all weights are zero; expected some weight on the samples.")
    m = z.shape[1]
    sw = s / s.sum()
    z_mean = sw @ z
    y_mean = sw @ y2
    zc, yc = z - z_mean, y2 - y_mean
    if m == 0:
        w = np.zeros((y2.shape[1], 0))
    else:
        root = np.sqrt(s)[:, None]
        a = np.vstack([root * zc, np.sqrt(alpha) * np.eye(m)])
        rhs = np.vstack([root * yc, np.zeros((m, y2.shape[1]))])
        w = np.linalg.lstsq(a, rhs, rcond=None)[0].T
    b = y_mean - w @ z_mean
    resid = y2 - (z @ w.T + b)
    ss_res = s @ (resid**2)
    ss_tot = s @ (yc**2)
    r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res <= 1e-12, 1.0, 0.0))
    return w, b, r2
