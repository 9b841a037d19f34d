"""Misclassifications explained by one "problematic" feature (paper Sec. 4.3).

For every example the sparse decision layer gets wrong, each feature the layer uses
is removed in turn (set to its training mean, i.e. zero after standardisation) and
the layer re-scores the example. A feature whose removal alone makes the layer
predict the true class is a *problematic* feature: its interpretation explains the
error. All errors x all used features are scored at once (in blocks of errors, to
bound memory) as one batched tensor operation.

The fraction of errors a *random* used feature fixes (averaged over every error and
every used feature) is the chance baseline the paper's blog post compares against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from debuggable.debug._linear import (
    as_device,
    check_features_labels,
    standardise,
    standardised_head,
)
from debuggable.errors import DebuggableError

#: Upper bound on the elements of one (errors x used features x classes) block.
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class ProblematicFeatures:
    """Result of :func:`problematic_features`.

    Attributes:
        rows: (E,) indices (into the analysed examples) of the misclassified ones.
        labels: (E,) their true classes.
        predicted: (E,) the layer's (wrong) predictions.
        feature: (E,) the problematic feature of each error, ``-1`` when no single
            removal fixes it. Among several fixing features the one leaving the
            largest true-class margin is reported.
        fixes: (E,) how many used features fix the error on their own.
        margin_after: (E,) true-class logit minus the best other logit after removing
            ``feature`` (positive where fixed; NaN where nothing fixes).
        top_feature_predicted: (E,) the used feature contributing most (standardised
            weight x standardised activation) to the predicted class's logit.
        top_feature_true: (E,) the same for the true class.
        used_features: (U,) the features the layer uses (any non-zero weight).
        random_fix_rate: fraction of (error, used feature) pairs where removing that
            feature fixes the error: the chance a randomly chosen used feature fixes a
            random error.
        num_examples: how many examples were analysed.
        class_names: K class names.
    """

    rows: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    feature: np.ndarray
    fixes: np.ndarray
    margin_after: np.ndarray
    top_feature_predicted: np.ndarray
    top_feature_true: np.ndarray
    used_features: np.ndarray
    random_fix_rate: float
    num_examples: int
    class_names: list[str] = field(default_factory=list)

    @property
    def num_errors(self) -> int:
        return int(self.rows.size)

    @property
    def explained(self) -> np.ndarray:
        """(E,) bool: the error is fixed by removing one feature."""
        return self.feature >= 0

    @property
    def explained_fraction(self) -> float:
        """Fraction of errors explained by one feature (NaN when there are no errors)."""
        return float(self.explained.mean()) if self.num_errors else float("nan")

    def per_class(self, by: str = "true") -> list[dict[str, Any]]:
        """Per class (of the true label, ``by="true"``, or the prediction, ``"predicted"``):
        ``{"class", "errors", "explained", "fraction"}`` (fraction NaN without errors)."""
        if by not in ("true", "predicted"):
            raise DebuggableError(f"by={by!r} is not a grouping; expected 'true' or 'predicted'.")
        key = self.labels if by == "true" else self.predicted
        out = []
        for c, name in enumerate(self.class_names):
            sel = key == c
            n = int(sel.sum())
            k = int(self.explained[sel].sum())
            out.append({"class": name, "errors": n, "explained": k, "fraction": k / n if n else float("nan")})
        return out

    def feature_counts(self) -> list[tuple[int, int]]:
        """``(feature, errors it explains)`` for every problematic feature, most frequent first."""
        f = self.feature[self.feature >= 0]
        ids, counts = np.unique(f, return_counts=True)
        order = np.lexsort((ids, -counts))
        return [(int(ids[i]), int(counts[i])) for i in order]

    def to_dict(self, max_examples: int | None = None) -> dict[str, Any]:
        """JSON-able summary (per error rows capped at ``max_examples``)."""
        n = self.num_errors if max_examples is None else min(self.num_errors, max_examples)
        return {
            "examples": self.num_examples,
            "errors": self.num_errors,
            "explained": int(self.explained.sum()),
            "explained_fraction": self.explained_fraction,
            "random_fix_rate": self.random_fix_rate,
            "used_features": int(self.used_features.size),
            "per_class": self.per_class("true"),
            "per_predicted_class": self.per_class("predicted"),
            "feature_counts": self.feature_counts(),
            "cases": [
                {
                    "row": int(self.rows[i]),
                    "label": int(self.labels[i]),
                    "predicted": int(self.predicted[i]),
                    "feature": int(self.feature[i]),
                    "fixes": int(self.fixes[i]),
                    "margin_after": None if not np.isfinite(self.margin_after[i]) else float(self.margin_after[i]),
                    "top_feature_predicted": int(self.top_feature_predicted[i]),
                    "top_feature_true": int(self.top_feature_true[i]),
                }
                for i in range(n)
            ],
        }


def _layer_parts(layer: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    for name in ("weight", "bias", "mean", "std"):
        if not hasattr(layer, name):
            raise DebuggableError(
                f"layer: a {type(layer).__name__} has no {name!r}; expected a SparseDecisionLayer (weight, bias, mean, std)."
            )
    w = np.asarray(layer.weight, dtype=np.float64)
    names = list(getattr(layer, "class_names", [str(k) for k in range(w.shape[0])]))
    return w, np.asarray(layer.bias), np.asarray(layer.mean), np.asarray(layer.std), names


@torch.no_grad()
def problematic_features(
    layer: Any,
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    features_to_try: Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> ProblematicFeatures:
    """Find, for every misclassified example, the one feature whose removal fixes it.

    Args:
        layer: a :class:`~debuggable.layer.SparseDecisionLayer` (anything with
            ``weight`` (K, D), ``bias`` (K,), ``mean`` and ``std`` (D,) on raw features).
        features: (N, D) raw features of the examples.
        labels: (N,) true classes.
        features_to_try: which features may be removed; default the ones the layer
            uses (removing an unused feature changes nothing).
        device: where to compute; default the device of ``features`` (CPU for NumPy).

    Returns:
        :class:`ProblematicFeatures`; errors are those of the layer's own predictions.
    """
    w, b, mean, std, names = _layer_parts(layer)
    k, d = w.shape
    check_features_labels(features, labels, d, k)
    dev = as_device(device, features)
    used = np.flatnonzero(np.any(w != 0, axis=0)) if features_to_try is None else np.asarray(features_to_try, dtype=np.int64)
    if used.ndim != 1 or (used.size and (used.min() < 0 or used.max() >= d)):
        raise DebuggableError(f"features_to_try: expected feature indices in [0, {d - 1}], got {used.tolist()[:10]}.")
    ws, bs = standardised_head(w, b, mean, std, dev)
    z = standardise(features, mean, std, dev)
    y = torch.as_tensor(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels),
                        device=dev, dtype=torch.long)
    logits = z @ ws.T + bs
    pred = logits.argmax(1)
    err = torch.nonzero(pred != y).flatten()
    e = int(err.numel())
    u_idx = torch.as_tensor(used, device=dev, dtype=torch.long)
    feature = torch.full((e,), -1, dtype=torch.long, device=dev)
    fixes = torch.zeros(e, dtype=torch.long, device=dev)
    margin_after = torch.full((e,), float("nan"), dtype=torch.float64, device=dev)
    top_pred = torch.full((e,), -1, dtype=torch.long, device=dev)
    top_true = torch.full((e,), -1, dtype=torch.long, device=dev)
    total_fixes = 0
    if e and used.size:
        wu = ws[:, u_idx].T  # (U, K)
        step = max(1, _BLOCK_ELEMENTS // max(1, used.size * k))
        for lo in range(0, e, step):
            rows = err[lo : lo + step]
            zr = z[rows][:, u_idx]  # (B, U)
            # logits after removing feature u: logits - z_u * ws[:, u]  -> (B, U, K)
            after = logits[rows][:, None, :] - zr[:, :, None] * wu[None, :, :]
            yr = y[rows]
            true_logit = after.gather(2, yr[:, None, None].expand(-1, after.shape[1], 1)).squeeze(2)
            others = after.scatter(2, yr[:, None, None].expand(-1, after.shape[1], 1), float("-inf"))
            margin = true_logit - others.max(2).values  # (B, U)
            fixed = after.argmax(2) == yr[:, None]
            total_fixes += int(fixed.sum())
            fixes[lo : lo + rows.numel()] = fixed.sum(1)
            best = torch.where(fixed, margin, torch.full_like(margin, float("-inf")))
            val, arg = best.max(1)
            ok = torch.isfinite(val)
            feature[lo : lo + rows.numel()] = torch.where(ok, u_idx[arg], torch.full_like(arg, -1))
            margin_after[lo : lo + rows.numel()] = torch.where(ok, val, torch.full_like(val, float("nan")))
            contrib = zr[:, :, None] * wu[None, :, :]  # (B, U, K) contribution of u to class k
            pr = pred[rows]
            cp = contrib.gather(2, pr[:, None, None].expand(-1, contrib.shape[1], 1)).squeeze(2)
            ct = contrib.gather(2, yr[:, None, None].expand(-1, contrib.shape[1], 1)).squeeze(2)
            top_pred[lo : lo + rows.numel()] = u_idx[cp.argmax(1)]
            top_true[lo : lo + rows.numel()] = u_idx[ct.argmax(1)]
    rate = total_fixes / (e * used.size) if e and used.size else float("nan")
    err_np = err.cpu().numpy()
    return ProblematicFeatures(
        rows=err_np,
        labels=y[err].cpu().numpy(),
        predicted=pred[err].cpu().numpy(),
        feature=feature.cpu().numpy(),
        fixes=fixes.cpu().numpy(),
        margin_after=margin_after.cpu().numpy(),
        top_feature_predicted=top_pred.cpu().numpy(),
        top_feature_true=top_true.cpu().numpy(),
        used_features=np.asarray(used, dtype=np.int64),
        random_fix_rate=float(rate),
        num_examples=int(z.shape[0]),
        class_names=names,
    )
