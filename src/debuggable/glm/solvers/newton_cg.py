"""A Newton step on the current support, solved by conjugate gradients with exact
Hessian-vector products and the Gram-Kronecker model as preconditioner.

The proximal Newton solver's model ``c * Gram_A (x) B`` is exact for least squares but
not for the softmax on nearly separable data: there the Hessian
``(1/n) sum_i x_i x_i^T (x) S_i`` weighs each sample by its own curvature ``S_i``, which
is near zero for confidently fitted samples, and no single scalar ``c`` makes the model
match it (the model steps then need hundreds of iterations per lambda at K = 100). On
a fixed support with fixed signs the penalised problem is smooth, so its Newton
system can be solved with conjugate gradients: every iteration costs one exact
Hessian-vector product (two passes over the data), and preconditioning by the
(cheaply invertible) Kronecker model leaves a well-conditioned system. The solver
(:meth:`ProxNewtonSolver._newton_cg_step`) takes such a step only when its model steps
crawl with a stable sign pattern; entries the step would push through zero stop at
zero (a projected search), and the model steps that follow let entries enter.

Shapes: directions are ``(m + 1, K)`` (the working set's rows, then the intercept).
"""

from __future__ import annotations

import torch


class KroneckerPreconditioner:
    """``V -> (c Gram_A (x) B + rho I)^{-1} V`` for ``V`` of shape ``(m + 1, K)``.

    With ``Gram_A = U diag(g) U^T`` and ``B = Q diag(s) Q^T`` the inverse is
    ``U [(U^T V Q) / (c g s^T + rho)] Q^T``: ``O(m^2 K + m K^2)`` per application.
    """

    def __init__(self, gram_eig: tuple[torch.Tensor, torch.Tensor], B: torch.Tensor, c: float, rho: float,
                 shift_invariant: bool = False):
        g, self.U = gram_eig
        B = B.to(torch.float64)
        if shift_invariant and B.shape[0] > 1:
            # The softmax's B is singular along "every class alike". On a face with partial
            # rows that direction is curved, and an inverse of ~1/rho there would swamp the
            # system; give it the classes' mean curvature instead.
            K = B.shape[0]
            B = B + float(torch.diagonal(B).mean()) * torch.ones_like(B) / K
        s, self.Q = torch.linalg.eigh(B)
        g = g.clamp_min(0)
        s = s.clamp_min(0)
        scale = c * float(g.max()) * float(s.max())
        # rho keeps the softmax's flat directions (and rounding) from being amplified without bound
        self.denom = c * g[:, None] * s[None, :] + max(rho, 1e-10 * scale)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        return self.U @ ((self.U.T @ V @ self.Q) / self.denom) @ self.Q.T


def newton_cg_direction(hvp, grad: torch.Tensor, face: torch.Tensor, precond, *, max_iter: int, rtol: float):
    """Approximately solve ``H_F D = -grad_F`` on the face ``F`` (a boolean mask).

    Args:
        hvp: ``D -> (H D, X D)``, the Hessian-vector product of the smooth objective on
            the face and the predictions ``X D`` it computed on the way.
        grad: ``(m + 1, K)`` gradient of the smooth objective (zero off the face).
        face: ``(m + 1, K)`` bool.
        precond: ``V -> M^{-1} V`` for a symmetric positive definite ``M``.
        max_iter: at most this many Hessian-vector products.
        rtol: stop when the preconditioned residual norm falls below ``rtol`` times its
            initial value.

    Returns:
        ``(D, ZD, iterations)``: the direction, its predictions ``X D`` (accumulated
        from the products, no extra pass) and the number of products used.
    """
    f = face.to(grad.dtype)
    r = -grad * f
    z = precond(r) * f
    rz = float((r * z).sum())
    if rz <= 0:
        return torch.zeros_like(grad), None, 0
    stop = rtol * rtol * rz
    p = z
    D = torch.zeros_like(grad)
    ZD = None
    it = 0
    for it in range(1, max_iter + 1):
        Hp, Zp = hvp(p)
        pHp = float((p * Hp).sum())
        if pHp <= 0:
            it -= 1
            break
        a = rz / pHp
        D = D + a * p
        ZD = a * Zp if ZD is None else ZD + a * Zp
        r = r - a * Hp
        z = precond(r) * f
        rz_new = float((r * z).sum())
        if rz_new <= stop:
            break
        p = z + (rz_new / rz) * p
        rz = rz_new
    return D, ZD, it
