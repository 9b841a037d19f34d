"""Benchmark: preconditioners for the GLM solver's Newton-CG step, on the exact Hessian.

On the benchmark's synthetic ReLU features (``glm_path.synthetic_relu_features``),
the path is solved once; at a point between the solutions of lambdas ``i - 1`` and
``i`` (their average, with the support of lambda ``i``), the multinomial loss's exact
Hessian on the face (support plus intercepts, ridge added) is built explicitly, from
the textbook formula ``(1/n) sum_i [x_i, 1][x_i, 1]^T (x) (diag(p_i) - p_i p_i^T)``.
Conjugate gradients then solve one right-hand side with each candidate
preconditioner, and the script prints the products needed for a relative
preconditioned residual of 0.05 (the solver's setting) and 1e-3. The flat
"every class alike" directions of full rows are projected out, as the solver does.

Candidates: none; the solver's Kronecker model ``Gram (x) B~``; Jacobi; the Kronecker
model scaled to the Hessian's diagonal; the per-feature ``K x K`` blocks; the
per-class blocks (exact, and over the samples holding a fraction of each class's
curvature, as :class:`debuggable.glm.solvers.newton_cg.ClassBlockPreconditioner`
does).

The face Hessian is dense, ``(face size)^2`` float64: keep ``(d + 1) K`` below ~6,000.

Example::

    python benchmarks/glm_preconditioners.py --size 4000x48x100 --index 17
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from glm_path import standardise, synthetic_relu_features  # noqa: E402

from debuggable.glm import elastic_net_path  # noqa: E402
from debuggable.glm.solvers.newton_cg import newton_cg_direction  # noqa: E402


def face_hessian(Xs: torch.Tensor, P: torch.Tensor, face: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    """The exact Hessian (plus ridge) restricted to the face, index ``feature * K + class``."""
    n, d = Xs.shape
    K = P.shape[1]
    X1 = torch.cat([Xs, torch.ones(n, 1, dtype=Xs.dtype)], 1)
    M = (X1[:, :, None] * P[:, None, :]).reshape(n, -1)
    H = -(M.T @ M)
    del M
    H = H.reshape(d + 1, K, d + 1, K)
    idx = torch.arange(K)
    H[:, idx, :, idx] += torch.einsum("na,nb,nk->kab", X1, X1, P)
    H = H.reshape((d + 1) * K, -1) / n + torch.diag(ridge.reshape(-1))
    F = face.reshape(-1)
    return H[F][:, F]


def block_diagonal(H: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``H`` with every entry between different groups set to zero."""
    return H * (groups[:, None] == groups[None, :])


def class_blocks_over_mass(Xs, P, face, ridge, mass: float) -> tuple[torch.Tensor, float]:
    """Per-class blocks summed over the fewest samples holding ``mass`` of each class's curvature."""
    n, d = Xs.shape
    K = P.shape[1]
    X1 = torch.cat([Xs, torch.ones(n, 1, dtype=Xs.dtype)], 1)
    F = face.reshape(-1)
    cls = torch.arange(K).repeat(d + 1)[F]
    out = torch.zeros(int(F.sum()), int(F.sum()), dtype=Xs.dtype)
    W = P * (1 - P)
    total = 0
    for k in range(K):
        w, order = W[:, k].sort(descending=True)
        keep = order[: int((w.cumsum(0) / w.sum() < mass).sum()) + 1]
        total += keep.numel()
        cols = torch.nonzero(face[:, k]).flatten()
        Xk = X1[keep][:, cols]
        sel = torch.nonzero(cls == k).flatten()
        out[sel[:, None], sel[None, :]] = (Xk * W[keep, k, None]).T @ Xk / n + torch.diag(ridge[cols, k])
    return out, total / K


def pcg_products(H, Minv, proj, rhs, rtol) -> int:
    """Products the solver's own CG (:func:`newton_cg_direction`) needs to solve ``H x = rhs``
    to a relative preconditioned residual ``rtol``, off the flat directions ``proj`` removes."""
    face = torch.ones(rhs.shape[0], 1, dtype=torch.bool)
    _, _, used = newton_cg_direction(lambda D: (proj @ (H @ D), D), -rhs.unsqueeze(1), face,
                                     lambda V: proj @ (Minv @ V), max_iter=1000, rtol=rtol)
    return used


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="4000x48x100", help="NxDxK")
    ap.add_argument("--index", type=int, default=17, help="the lambda (of 20, down to 1e-3 lambda_max) to test at")
    ap.add_argument("--alpha", type=float, default=0.99)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, d, K = (int(v) for v in args.size.split("x"))
    X, y = synthetic_relu_features(n, d, K, 0, torch.device("cpu"))
    Xs32 = standardise(X)
    Xs = Xs32.double()
    d = Xs.shape[1]
    path = elastic_net_path(Xs32, y.numpy(), n_lambdas=20, alpha=args.alpha, lambda_min_ratio=1e-3, standardize=False)
    i = args.index
    lam = float(path.lambdas[i])
    W = torch.as_tensor(0.5 * (path.coef[i] + path.coef[i - 1])).double().T.contiguous()
    W[torch.as_tensor(path.coef[i]).T == 0] = 0
    b = torch.as_tensor(0.5 * (path.intercept[i] + path.intercept[i - 1])).double()
    P = torch.softmax(Xs @ W + b, 1)
    face = torch.cat([W != 0, torch.ones(1, K, dtype=torch.bool)], 0)
    ridge = torch.zeros(d + 1, K, dtype=torch.float64)
    ridge[:d] = lam * (1 - args.alpha)
    H = face_hessian(Xs, P, face, ridge)
    N = H.shape[0]
    eye = torch.eye(N, dtype=torch.float64)
    F = face.reshape(-1)
    # the flat directions: every class alike on rows whose every class is on the face
    basis = []
    fi = torch.nonzero(F).flatten()
    for j in torch.nonzero(face.all(1)).flatten().tolist():
        v = torch.zeros((d + 1) * K, dtype=torch.float64)
        v[j * K : (j + 1) * K] = 1
        basis.append(v[fi])
    Q = torch.linalg.qr(torch.stack(basis, 1))[0] if basis else torch.zeros(N, 0, dtype=torch.float64)
    proj = eye - Q @ Q.T
    rhs = proj @ torch.randn(N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    X1 = torch.cat([Xs, torch.ones(n, 1, dtype=torch.float64)], 1)
    B = (torch.diag(P.sum(0)) - P.T @ P) / n
    B = B + torch.diagonal(B).mean() / K  # as the solver: curvature along "every class alike"
    kron = (torch.kron(X1.T @ X1 / n, B) + torch.diag(ridge.reshape(-1)))[F][:, F] + 1e-10 * eye
    s = (torch.diagonal(H) / torch.diagonal(kron)).sqrt()
    candidates = {
        "none": eye,
        "kronecker": kron,
        "jacobi": torch.diag(torch.diagonal(H)),
        "kronecker scaled to the diagonal": s[:, None] * kron * s[None, :],
        "per-feature K x K blocks": block_diagonal(H, torch.arange(d + 1).repeat_interleave(K)[F]) + 1e-10 * eye,
        "per-class blocks": block_diagonal(H, torch.arange(K).repeat(d + 1)[F]) + 1e-10 * eye,
    }
    samples = {}
    for mass in (0.99, 0.95, 0.9, 0.8, 0.5):
        M, per_class = class_blocks_over_mass(Xs, P, face, ridge, mass)
        candidates[f"per-class blocks, {mass:.0%} of the curvature"] = M + 1e-10 * eye
        samples[f"per-class blocks, {mass:.0%} of the curvature"] = per_class
    print(f"{args.size}, lambda {i} of 20, face {N} unknowns, {int(face.all(1).sum())} full rows", file=sys.stderr)
    for name, M in candidates.items():
        Minv = torch.linalg.inv(M)
        row = {"size": args.size, "index": i, "preconditioner": name, "products_rtol_0.05": pcg_products(H, Minv, proj, rhs, 0.05),
               "products_rtol_1e-3": pcg_products(H, Minv, proj, rhs, 1e-3)}
        if name in samples:
            row["samples_per_class"] = round(samples[name])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
