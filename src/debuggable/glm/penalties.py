"""Penalties on the coefficient matrix ``W`` (``D`` features x ``K`` outputs).

* :class:`ElasticNet`: ``lam * alpha * |W|_1 + 0.5 * lam * (1 - alpha) * |W|_F^2``;
* :class:`GroupElasticNet`: ``lam * alpha * sum_j ||W_j||_2 + 0.5 * lam * (1 - alpha) * |W|_F^2``
  where ``W_j`` is feature ``j``'s row across all outputs, so a feature enters or
  leaves the model for every class at once.

Both match ``glm-saga``'s proximal operators (``soft_threshold_with_shrinkage`` and
``group_threshold_with_shrinkage``). The intercept is never penalised; callers keep
it out of ``W``. Every method takes float64 tensors and ``lam`` as a float.
"""

from __future__ import annotations

import math

import torch


class ElasticNet:
    """Entry-wise elastic net."""

    group = False

    def __init__(self, alpha: float):
        self.alpha = float(alpha)

    # -- values ---------------------------------------------------------------------
    def value(self, W: torch.Tensor, lam: float) -> float:
        a = self.alpha
        return float(lam * a * W.abs().sum() + 0.5 * lam * (1 - a) * (W * W).sum())

    def prox(self, V: torch.Tensor, step: float, lam: float) -> torch.Tensor:
        """``argmin_U 0.5 ||U - V||^2 + step * penalty(U)`` for ``V`` of shape ``(D, K)``."""
        a = self.alpha
        out = torch.nn.functional.softshrink(V, step * lam * a)
        if a < 1:
            out.mul_(1.0 / (1 + step * lam * (1 - a)))
        return out

    def prox_T(self, VT: torch.Tensor, step: float, lam: float) -> torch.Tensor:
        """:meth:`prox` in the transposed ``(K, D)`` layout (entry-wise, so the same)."""
        return self.prox(VT, step, lam)

    def row_shift(self, W: torch.Tensor, lam: float) -> torch.Tensor:
        """``c`` (``(D,)``) with ``c_j = argmin_c penalty(W_j - c)``, subtracting ``c_j`` from
        every entry of row ``j``.

        For a shift-invariant datafit (softmax) ``W_j - c_j`` fits exactly as well as
        ``W_j``, so this is an exact minimisation along the directions the datafit
        cannot see, which first-order steps cover only at the slow rate the tiny
        ``lam * (1 - alpha)`` curvature allows. The row penalty is convex and piecewise
        quadratic in ``c`` with breakpoints at the sorted entries; its minimiser within
        each of the ``K + 1`` pieces has a closed form, and prefix sums give every
        piece's value in ``O(K)``, so the whole call costs ``O(D K log K)``.
        """
        Dn, K = W.shape
        if Dn == 0 or K == 1:
            return torch.zeros(Dn, dtype=W.dtype, device=W.device)
        a = self.alpha
        ws, _ = torch.sort(W, dim=1)
        pre = torch.cat([torch.zeros(Dn, 1, dtype=W.dtype, device=W.device), ws.cumsum(1)], 1)  # sum of the i smallest
        tot = pre[:, -1:]
        i = torch.arange(K + 1, dtype=W.dtype, device=W.device)
        inf = torch.full((Dn, 1), math.inf, dtype=W.dtype, device=W.device)
        lo = torch.cat([-inf, ws], 1)
        hi = torch.cat([ws, inf], 1)
        # piece i has i entries below c: stationary point of a*(2i - K) + (1 - a)*(K c - sum w) = 0
        c = (tot - (a / (1 - a)) * (2 * i - K)) / K if a < 1 else ws[:, K // 2 : K // 2 + 1].expand(Dn, K + 1)
        c = torch.minimum(torch.maximum(c, lo), hi)
        l1 = (c * i - pre) + ((tot - pre) - c * (K - i))
        value = a * l1 + 0.5 * (1 - a) * (K * c * c - 2 * c * tot)
        return c.gather(1, value.argmin(1, keepdim=True)).squeeze(1)

    # -- optimality -------------------------------------------------------------------
    def row_score(self, G: torch.Tensor) -> torch.Tensor:
        """Dual-norm score per feature row: ``max_k |G_jk|``."""
        return G.abs().amax(1)

    def dual_norm(self, G: torch.Tensor) -> float:
        return float(G.abs().max()) if G.numel() else 0.0

    def lambda_max(self, G0: torch.Tensor) -> float:
        """Smallest ``lam`` whose solution is all-zero, from the gradient at zero."""
        return self.dual_norm(G0) / self.alpha

    def violation(self, W: torch.Tensor, G: torch.Tensor, lam: float) -> torch.Tensor:
        """Largest subgradient violation per feature row (absolute).

        ``G`` is the gradient of the datafit. For ``w != 0`` the violation is
        ``|g + lam (1 - alpha) w + lam alpha sign(w)|``; for ``w == 0`` it is
        ``max(0, |g| - lam alpha)``.
        """
        a = self.alpha
        Gs = G + lam * (1 - a) * W
        nz = W != 0
        v = torch.where(nz, (Gs + lam * a * W.sign()).abs(), (G.abs() - lam * a).clamp_min(0))
        return v.amax(1) if v.numel() else v.sum(1)

    def conjugate(self, V: torch.Tensor, lam: float) -> float:
        """``h*(V)`` for ``alpha < 1`` (finite); for ``alpha == 1`` callers rescale."""
        a = self.alpha
        if a >= 1:
            return 0.0 if self.dual_norm(V) <= lam * (1 + 1e-12) else float("inf")
        excess = (V.abs() - lam * a).clamp_min(0)
        return float((excess * excess).sum() / (2 * lam * (1 - a)))


class GroupElasticNet(ElasticNet):
    """Row-wise (feature-wise) group elastic net."""

    group = True

    def value(self, W: torch.Tensor, lam: float) -> float:
        a = self.alpha
        return float(lam * a * W.norm(dim=1).sum() + 0.5 * lam * (1 - a) * (W * W).sum())

    def prox(self, V: torch.Tensor, step: float | torch.Tensor, lam: float) -> torch.Tensor:
        a = self.alpha
        nrm = V.norm(dim=1, keepdim=True)
        scale = (1 - step * lam * a / nrm.clamp_min(1e-300)).clamp_min(0)
        out = V * scale
        if a < 1:
            out = out / (1 + step * lam * (1 - a))
        return out

    def prox_T(self, VT: torch.Tensor, step: float, lam: float) -> torch.Tensor:
        return self.prox(VT.T, step, lam).T

    def row_shift(self, W: torch.Tensor, lam: float) -> torch.Tensor:
        # both terms are norms of W_j - c, smallest at the row mean
        return W.mean(1) if W.shape[1] > 1 else torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)

    def row_score(self, G: torch.Tensor) -> torch.Tensor:
        return G.norm(dim=1)

    def dual_norm(self, G: torch.Tensor) -> float:
        return float(G.norm(dim=1).max()) if G.numel() else 0.0

    def violation(self, W: torch.Tensor, G: torch.Tensor, lam: float) -> torch.Tensor:
        a = self.alpha
        nrm = W.norm(dim=1, keepdim=True)
        nz = nrm.squeeze(1) > 0
        active = (G + lam * (1 - a) * W + lam * a * W / nrm.clamp_min(1e-300)).norm(dim=1)
        inactive = (G.norm(dim=1) - lam * a).clamp_min(0)
        return torch.where(nz, active, inactive)

    def conjugate(self, V: torch.Tensor, lam: float) -> float:
        a = self.alpha
        if a >= 1:
            return 0.0 if self.dual_norm(V) <= lam * (1 + 1e-12) else float("inf")
        excess = (V.norm(dim=1) - lam * a).clamp_min(0)
        return float((excess * excess).sum() / (2 * lam * (1 - a)))


def make_penalty(alpha: float, group: bool) -> ElasticNet:
    return GroupElasticNet(alpha) if group else ElasticNet(alpha)
