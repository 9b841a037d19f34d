"""Class confusion through shared features.

Two classes the layer confuses often share deep features: a feature with positive
(standardised) weight for both the true class a and the predicted class b is
evidence for both, so an example of a that activates it strongly drifts towards b.
For each confused pair (a, b) (off-diagonal confusion-matrix cell) the shared
features are ranked by ``confusions(a -> b) * ws[a, j] * ws[b, j]`` over the
features with ``ws[a, j] * ws[b, j] > 0``, and by the mean contribution
``ws[b, j] * z_j`` the feature makes to class b on the confused examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from debuggable.debug._linear import (
    as_device,
    check_features_labels,
    standardise,
    standardised_head,
)
from debuggable.errors import DebuggableError


@dataclass
class ConfusedPair:
    """One off-diagonal confusion cell and the features its two classes share.

    Attributes:
        true: true class index a.
        predicted: predicted class index b.
        count: examples of a predicted as b.
        rate: ``count / examples of a``.
        shared: ``(feature, ws[a, j], ws[b, j], score, mean contribution to b on the
            confused examples)`` for every feature both classes weigh with the same
            sign, highest score first; score = count * ws[a, j] * ws[b, j].
    """

    true: int
    predicted: int
    count: int
    rate: float
    shared: list[tuple[int, float, float, float, float]]

    def to_dict(self, class_names: list[str] | None = None, max_shared: int = 5) -> dict[str, Any]:
        names = class_names or []
        return {
            "true": self.true,
            "predicted": self.predicted,
            "true_name": names[self.true] if names else str(self.true),
            "predicted_name": names[self.predicted] if names else str(self.predicted),
            "count": self.count,
            "rate": self.rate,
            "shared": [
                {"feature": j, "weight_true": a, "weight_predicted": b, "score": s, "contribution": c}
                for j, a, b, s, c in self.shared[:max_shared]
            ],
        }


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted class."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@torch.no_grad()
def shared_feature_confusion(
    layer: Any,
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    top_pairs: int = 10,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, list[ConfusedPair]]:
    """The layer's confusion matrix and its most confused pairs with their shared features.

    Args:
        layer: a sparse decision layer (``weight`` (K, D), ``bias``, ``mean``, ``std``).
        features: (N, D) raw features; labels: (N,) true classes.
        top_pairs: how many off-diagonal cells (largest counts first) to analyse.
        device: where to compute; default the device of ``features``.

    Returns:
        ``(matrix, pairs)``: the (K, K) confusion matrix of the layer's predictions and
        up to ``top_pairs`` :class:`ConfusedPair` with a non-zero count.
    """
    if isinstance(top_pairs, bool) or not isinstance(top_pairs, int) or top_pairs < 1:
        raise DebuggableError(f"top_pairs={top_pairs!r} is invalid; expected a positive integer.")
    w = np.asarray(layer.weight, dtype=np.float64)
    k, d = w.shape
    check_features_labels(features, labels, d, k)
    dev = as_device(device, features)
    ws, bs = standardised_head(w, layer.bias, layer.mean, layer.std, dev)
    z = standardise(features, layer.mean, layer.std, dev)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    pred = (z @ ws.T + bs).argmax(1).cpu().numpy()
    matrix = confusion_matrix(y, pred, k)
    off = matrix.astype(np.float64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:top_pairs]
    ws_np = ws.cpu().numpy()
    pairs = []
    for cell in flat:
        a, b = divmod(int(cell), k)
        if off[a, b] == 0:  # no confusion left (diagonal cells are zero in ``off``)
            break
        count = int(matrix[a, b])
        prod = ws_np[a] * ws_np[b]
        js = np.flatnonzero(prod > 0)
        rows = np.flatnonzero((y == a) & (pred == b))
        contrib = (z[torch.as_tensor(rows, device=dev)][:, torch.as_tensor(js, device=dev)].mean(0).cpu().numpy()
                   * ws_np[b, js]) if js.size else np.zeros(0)
        scores = count * prod[js]
        order = np.argsort(-scores, kind="stable")
        shared = [(int(js[i]), float(ws_np[a, js[i]]), float(ws_np[b, js[i]]), float(scores[i]), float(contrib[i]))
                  for i in order]
        pairs.append(ConfusedPair(a, b, count, count / max(1, int(matrix[a].sum())), shared))
    return matrix, pairs
