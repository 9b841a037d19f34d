"""glmnet's multinomial path on a benchmark problem, in glmnet's own virtual environment.

Run by ``benchmarks/glm_path.py`` (``--solvers glmnet``) with the interpreter of
``benchmarks/.venvs/glmnet``, which ``glmnet_env.py`` creates: python-glmnet 2.2.1
(Friedman, Hastie and Tibshirani's Fortran coordinate descent) needs numpy < 2 and a
Fortran compiler to build, so it cannot share the project's environment.

Input (``--data``): an ``.npz`` with ``X`` (n, D) float32 standardised features,
``y`` (n,) labels 0..K-1, ``grid`` (L,) strictly decreasing lambdas, ``alpha``,
``tol`` and ``max_iter``. glmnet solves, for each lambda,

    mean_i CE(x_i, y_i; W, b) + lam * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_F^2)

which is the benchmark's objective, so with ``standardize=False`` the same lambdas
apply. Output (``--out``): an ``.npz`` with ``coef`` (L', K, D), ``intercept`` (L', K),
``lambdas`` (L',), ``time`` (seconds of ``LogitNet.fit``, one number for the whole path:
glmnet solves the path in one Fortran call and reports no per-lambda time),
``n_lambda`` and ``jerr`` (glmnet's error flag). ``L'`` can be shorter than ``L``:
glmnet stops a path early when the deviance explained stops changing.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from glmnet import LogitNet

    with np.load(args.data) as f:
        X = np.asfortranarray(f["X"], dtype=np.float64)  # what LogitNet would copy to anyway
        y = np.asarray(f["y"])
        grid = np.asarray(f["grid"], dtype=np.float64)
        alpha = float(f["alpha"])
        tol = float(f["tol"])
        max_iter = int(f["max_iter"])
    model = LogitNet(alpha=alpha, lambda_path=grid, standardize=False, fit_intercept=True, n_splits=0, tol=tol,
                     max_iter=max_iter)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    elapsed = time.perf_counter() - t0
    coef = np.transpose(model.coef_path_, (2, 0, 1))  # (K, D, L') -> (L', K, D)
    intercept = np.transpose(model.intercept_path_, (1, 0))
    np.savez(args.out, coef=coef, intercept=intercept, lambdas=model.lambda_path_, time=elapsed,
             n_lambda=model.n_lambda_, jerr=model.jerr_)


if __name__ == "__main__":
    main()
