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

    def prox(self, V: torch.Tensor, step: float | torch.Tensor, lam: float) -> torch.Tensor:
        """``argmin_U 0.5 ||U - V||^2 + step * penalty(U)``; ``step`` may be per row ``(D, 1)``."""
        a = self.alpha
        out = V.sign() * (V.abs() - step * lam * a).clamp_min(0)
        if a < 1:
            out = out / (1 + step * lam * (1 - a))
        return out

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
