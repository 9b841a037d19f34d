"""Accelerated proximal gradient (FISTA with adaptive restart) on a Kronecker quadratic.

The proximal Newton solver needs, at every outer step, the minimiser of::

    q(Delta) = <g, Delta> + 0.5 * c * <Delta, G Delta B> + penalty(W0 + Delta_W)

over ``Delta = [Delta_W; Delta_b]`` (``(m + 1, K)``: the working-set rows plus the
unpenalised intercept as the last row), where ``G`` is the ``(m + 1)^2`` Gram matrix
of the working set (with the intercept column) and ``B`` is ``K x K`` (or its diagonal,
``(K,)``, for many classes). One iteration costs ``O(m^2 K + m K^2)`` (``O(m^2 K)``): no pass over the data, which is why the outer solver can
afford to solve this model accurately.

Restarts follow O'Donoghue & Candes (2015): momentum is reset whenever the update
direction disagrees with the momentum direction. The stopping test is the
prox-gradient residual ``L * ||Delta_{k+1} - Y_k||_inf <= tol``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from debuggable.glm.penalties import ElasticNet

if TYPE_CHECKING:
    from debuggable._threads import RowChunks


#: Products ``Y G`` of fewer multiply-adds (``K (m + 1)^2``) stay on the calling thread:
#: below about this size, handing row blocks to the workers costs more than it saves
#: (measured on two cores: 1.5x faster at K = 100, m = 1,000; no gain at K = 25, m = 1,000).
SPLIT_MIN_MULTIPLY_ADDS = 5e7


def kron_operator(G: torch.Tensor, B: torch.Tensor, c: float, rows: RowChunks | None = None):
    """``Y^T -> (c G Y B)^T`` in the transposed ``(K, m + 1)`` layout (``G`` symmetric):
    the Hessian of the model ``q`` above, for :func:`solve_quadratic_model`.

    ``G`` may be float32: products run in its dtype, and the result comes back in the
    input's dtype. ``rows``: a :class:`~debuggable._threads.RowChunks`; while it is
    active, large products ``Y^T G`` are split over blocks of ``G``'s rows on its
    workers (the parallel work a busy machine leaves room for, see there).

    ``(K x m)(m x m)`` products are several times faster than ``(m x m)(m x K)`` ones
    for small K with MKL/oneDNN, hence the layout.
    """
    cdt = G.dtype

    def times_gram(YT: torch.Tensor) -> torch.Tensor:
        K, m1 = YT.shape
        if rows is None or not rows.active or K * m1 * m1 < SPLIT_MIN_MULTIPLY_ADDS:
            return YT @ G
        # (G Y)[s:e] = G[s:e] Y for contiguous row blocks of the symmetric G; returned transposed
        out = YT.new_empty(m1, K)
        Y = YT.T

        def piece(s: int, e: int) -> None:
            torch.mm(G[s:e], Y, out=out[s:e])

        for _ in rows.map(piece, rows.bounds(m1, min_rows=64)):
            pass
        return out.T

    if B.dim() == 1:  # a diagonal B (many classes): O(m^2 K) per product
        cb = (c * B).to(cdt).unsqueeze(1)

        def hess_diag_T(YT: torch.Tensor) -> torch.Tensor:
            if YT.dtype == cdt:
                return times_gram(cb * YT)
            return times_gram(cb * YT.to(cdt)).to(YT.dtype)

        return hess_diag_T
    BcT = (c * B).T.to(cdt).contiguous()

    def hess_T(YT: torch.Tensor) -> torch.Tensor:
        if YT.dtype == cdt:
            return times_gram(BcT @ YT)
        return times_gram(BcT @ YT.to(cdt)).to(YT.dtype)

    return hess_T


def solve_quadratic_model(
    hess_T,
    g: torch.Tensor,
    W0: torch.Tensor,
    lam: float,
    penalty: ElasticNet,
    L: float,
    tol: float,
    max_iter: int = 1000,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """FISTA on ``<g, D> + 0.5 <D, H D> + penalty(W0 + D_W)`` for any Hessian operator.

    ``hess_T`` maps ``D^T`` (``(K, m + 1)``, float64) to ``(H D)^T``; ``L`` bounds ``H``.
    """
    m = W0.shape[0]
    # Iterate on absolute coordinates U = [W0; 0] + D (transposed), so the prox applies
    # to the iterate directly; H U = H D + H [W0; 0] moves the constant into the gradient.
    U0 = g.new_zeros(g.shape[1], g.shape[0])
    U0[:, :m] = W0.T
    gT = (g.T - hess_T(U0)).contiguous()
    step = 1.0 / L
    U = U0.clone() if start is None else U0 + start.T
    Y = U.clone()
    t = 1.0
    it = 0
    for it in range(1, max_iter + 1):
        Un = torch.add(Y, gT + hess_T(Y), alpha=-step)
        Un[:, :m] = penalty.prox_T(Un[:, :m], step, lam)
        diff = Un - Y
        move = Un - U
        # one conversion for both scalars: the prox-gradient residual and the restart test
        res, agree = torch.stack([diff.abs().max() if diff.numel() else diff.new_zeros(()),
                                  torch.dot(diff.view(-1), move.view(-1))]).tolist()
        U = Un
        if res * L <= tol:
            break
        # gradient-based adaptive restart: the prox step disagrees with the momentum
        if agree < 0:
            t = 1.0
            Y = Un
        else:
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            Y = torch.add(Un, move, alpha=(t - 1) / t_new)
            t = t_new
    return (U - U0).T.contiguous(), it
