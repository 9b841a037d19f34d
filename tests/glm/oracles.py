"""Independent oracles for the GLM tests: NumPy objectives and KKT checks, cvxpy solves.

Nothing here imports solver code from ``debuggable.glm``: the objective, gradient and
KKT conditions are re-derived in NumPy from the problem definition.
"""

from __future__ import annotations

import numpy as np


def make_classification(n: int, d: int, k: int, seed: int = 0, scale: float = 1.0):
    """Correlated, non-standardised features (ReLU of a low-rank signal) and labels 0..k-1."""
    rng = np.random.default_rng(seed)
    r = max(2, d // 2)
    mu = rng.normal(size=(k, r)) * scale
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    z = mu[y] + rng.normal(size=(n, r))
    M = rng.normal(size=(r, d)) / np.sqrt(r)
    X = np.maximum(z @ M + 0.3 * rng.normal(size=(n, d)) + 0.2, 0) * rng.uniform(0.5, 3, size=d) + rng.normal(size=d)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, k, size=int(flip.sum()))
    y[:k] = np.arange(k)
    return X, y


def standardize(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(0)) / X.std(0, ddof=1)


def to_standardized(path, i: int, X: np.ndarray):
    """Coefficients of path point ``i`` on the standardised scale: (D, K) and (K,)."""
    mu, sd = X.mean(0), X.std(0, ddof=1)
    W = path.coef[i].T * sd[:, None]
    b = path.intercept[i] + mu @ path.coef[i].T
    return W, b


def datafit(family: str, Z: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """(mean weighted loss, residual dF/dZ) in float64."""
    n = Z.shape[0]
    w = np.ones(n) if w is None else w
    if family == "multinomial":
        m = Z.max(1, keepdims=True)
        lse = np.log(np.exp(Z - m).sum(1)) + m[:, 0]
        loss = lse - Z[np.arange(n), y]
        P = np.exp(Z - lse[:, None])
        R = P.copy()
        R[np.arange(n), y] -= 1
    elif family == "binomial":
        z = Z[:, 0]
        loss = np.logaddexp(0, z) - y * z
        R = (1 / (1 + np.exp(-z)) - y)[:, None]
    else:
        Y = y.reshape(n, -1)
        loss = 0.5 * ((Z - Y) ** 2).sum(1)
        R = Z - Y
    return float((w * loss).sum() / n), R * (w / n)[:, None]


def penalty(W: np.ndarray, lam: float, alpha: float, group: bool = False) -> float:
    l1 = np.linalg.norm(W, axis=1).sum() if group else np.abs(W).sum()
    return float(lam * alpha * l1 + 0.5 * lam * (1 - alpha) * (W ** 2).sum())


def objective(family, Xs, y, W, b, lam, alpha, group=False, w=None) -> float:
    loss, _ = datafit(family, Xs @ W + b, y, w)
    return loss + penalty(W, lam, alpha, group)


def kkt_violation(family, Xs, y, W, b, lam, alpha, group=False, w=None) -> float:
    """Largest subgradient violation (coefficients and intercept), absolute."""
    _, R = datafit(family, Xs @ W + b, y, w)
    G = Xs.T @ R
    gb = R.sum(0)
    if group:
        nrm = np.linalg.norm(W, axis=1)
        act = np.linalg.norm(G + lam * (1 - alpha) * W + lam * alpha * W / np.maximum(nrm, 1e-300)[:, None], axis=1)
        ina = np.maximum(np.linalg.norm(G, axis=1) - lam * alpha, 0)
        v = np.where(nrm > 0, act, ina)
    else:
        v = np.where(W != 0, np.abs(G + lam * (1 - alpha) * W + lam * alpha * np.sign(W)), np.maximum(np.abs(G) - lam * alpha, 0))
    return float(max(v.max(), np.abs(gb).max()))


def lambda_max_numpy(family, Xs, y, alpha, group=False, w=None) -> float:
    n = Xs.shape[0]
    w = np.ones(n) if w is None else w
    if family == "multinomial":
        Y = np.eye(int(y.max()) + 1)[y]
    elif family == "binomial":
        Y = y.reshape(n, 1).astype(float)
    else:
        Y = y.reshape(n, -1)
    ybar = (w[:, None] * Y).sum(0) / w.sum()
    G = Xs.T @ ((ybar - Y) * (w / n)[:, None])
    score = np.linalg.norm(G, axis=1) if group else np.abs(G).max(1)
    return float(score.max() / alpha)


def cvxpy_solve(family, Xs, y, lam, alpha, group=False, w=None):
    """(objective, W, b) from cvxpy (Clarabel) on the standardised problem."""
    import cvxpy as cp

    n, d = Xs.shape
    w = np.ones(n) if w is None else w
    if family == "multinomial":
        k = int(y.max()) + 1
    elif family == "binomial":
        k = 1
    else:
        k = y.reshape(n, -1).shape[1]
    W = cp.Variable((d, k))
    b = cp.Variable(k)
    Z = Xs @ W + np.ones((n, 1)) @ cp.reshape(b, (1, k), order="C")
    if family == "multinomial":
        Y = np.eye(k)[y]
        loss = cp.sum(cp.multiply(w, cp.log_sum_exp(Z, axis=1))) / n - cp.sum(cp.multiply(w[:, None] * Y, Z)) / n
    elif family == "binomial":
        z = Z[:, 0]
        loss = cp.sum(cp.multiply(w, cp.logistic(z))) / n - cp.sum(cp.multiply(w * y, z)) / n
    else:
        Y = y.reshape(n, -1)
        loss = 0.5 * cp.sum(cp.multiply(w[:, None], cp.square(Z - Y))) / n
    l1 = cp.sum(cp.norm(W, 2, axis=1)) if group else cp.sum(cp.abs(W))
    obj = loss + lam * alpha * l1 + 0.5 * lam * (1 - alpha) * cp.sum_squares(W)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL)
    Wv, bv = np.asarray(W.value), np.asarray(b.value)
    return objective(family, Xs, y, Wv, bv, lam, alpha, group, w), Wv, bv
