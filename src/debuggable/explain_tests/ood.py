"""Test-time contamination: do attributions look different on out-of-distribution inputs?

The model explains its predictions on in-distribution test images and on images from
another distribution (e.g. digits shown to an Animal-MNIST model). For each method:

* ``ood_separation_auc`` (primary): a logistic regression on the normalised
  |attribution| maps (2x2 average-pooled for maps of 16 pixels or more a side),
  cross-validated (stratified k-fold), scores every example out of fold; the ROC AUC of those scores for "is OOD". Detected when the lower bootstrap
  bound is above 0.5.
* ``mean_map_similarity``: Spearman correlation between the average normalised map
  of the two groups (how alike the two attribution distributions are on average);
  detected when the upper bound is below ``threshold``.

Two reference rows use no attribution: the same cross-validated detector on the raw
inputs (``inputs (reference)``), and the model's own confidence, ``1 - max softmax``
(``max_softmax (reference)``). An attribution method adds evidence only where it
separates better than these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.explain_tests.metrics import bootstrap_ci, rankdata, safe_auc
from debuggable.explain_tests.normalize import normalize_attributions
from debuggable.explain_tests.results import (
    BugResult,
    check_methods,
    make_method,
    predictions,
    row,
    timed_attributions,
)

BUG = "ood"
INPUT_REFERENCE = "inputs (reference)"
CONFIDENCE_REFERENCE = "max_softmax (reference)"


def resize_images(images: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(N, c, h, w) images resized bilinearly (antialiased) to ``shape`` = (C, H, W);
    one channel is repeated to C. Values stay in the input's range."""
    c, h, w = (int(s) for s in shape)
    x = images.float()
    if tuple(x.shape[-2:]) != (h, w):
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                                            antialias=bool(x.shape[-1] > w))
        x = x.clamp(float(images.min()), float(images.max()))
    if x.shape[1] != c:
        if x.shape[1] != 1:
            raise DebuggableError(f"images: got {x.shape[1]} channels, expected 1 or {c}.")
        x = x.expand(-1, c, -1, -1).contiguous()
    return x


def out_of_fold_scores(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """P(label 1) for every row from a standardised, L2-regularised (C = 0.1) logistic
    regression fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = int(min(folds, np.bincount(labels.astype(int)).min()))
    if k < 2:
        raise DebuggableError(f"images: got {np.bincount(labels.astype(int)).tolist()} examples per group, expected at least 2 each.")
    scores = np.zeros(labels.shape[0])
    for fit, held in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(features, labels):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)).fit(features[fit], labels[fit])
        scores[held] = clf.predict_proba(features[held])[:, 1]
    return scores


def _pooled(maps: torch.Tensor) -> np.ndarray:
    """(N, H, W) maps as detector features: 2x2 average-pooled when H and W >= 16
    (fewer, smoother features for a few dozen examples), flattened."""
    m = maps.float().cpu()[:, None]
    if min(m.shape[-2:]) >= 16:
        m = torch.nn.functional.avg_pool2d(m, 2, ceil_mode=True)
    return m.flatten(1).numpy().astype(np.float64)


def _mean_map_spearman(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = torch.from_numpy(a.mean(0))[None], torch.from_numpy(b.mean(0))[None]
    ra, rb = rankdata(ma)[0].numpy(), rankdata(mb)[0].numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def ood_test(
    model: nn.Module,
    id_images: torch.Tensor,
    ood_images: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    threshold: float = 0.5,
    folds: int = 5,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    panel_examples: int = 3,
    progress: bool = False,
) -> BugResult:
    """Attributions on in-distribution vs out-of-distribution inputs.

    Args:
        model: the model under test.
        id_images: (N1, C, H, W) in-distribution images.
        ood_images: (N2, C, H, W) OOD images of the same shape (see :func:`resize_images`).
        methods, method_params: as in the other tests.
        threshold: for ``mean_map_similarity``.
        folds: cross-validation folds of the detector.
        n_boot, ci, seed: the bootstrap over examples.
        batch_size: images per attribution call.
        panel_examples: images of each group kept for the figure.
        progress: show progress bars.

    Returns:
        :class:`BugResult` (see the module docstring for the rows).
    """
    names, params = check_methods(methods, method_params)
    for nm, x in (("id_images", id_images), ("ood_images", ood_images)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] < 2:
            raise DebuggableError(f"{nm}: got {getattr(x, 'shape', type(x).__name__)}, expected (N, C, H, W) with N >= 2.")
    if id_images.shape[1:] != ood_images.shape[1:]:
        raise DebuggableError(
            f"ood_images: got images of shape {tuple(ood_images.shape[1:])}, expected {tuple(id_images.shape[1:])} like "
            f"id_images; resize them with resize_images."
        )
    images = torch.cat([id_images, ood_images])
    is_ood = np.r_[np.zeros(id_images.shape[0], dtype=bool), np.ones(ood_images.shape[0], dtype=bool)]
    n1 = id_images.shape[0]
    pred, probs = predictions(model, images)
    result = BugResult(BUG)
    k = min(panel_examples, n1, ood_images.shape[0])
    result.panels = {"images": np.concatenate([images[:k].cpu().numpy(), images[n1: n1 + k].cpu().numpy()])}

    def detector_rows(method: str, features: np.ndarray) -> None:
        scores = out_of_fold_scores(features, is_ood.astype(int), folds=folds, seed=seed)
        auc = bootstrap_ci(safe_auc, [scores, is_ood], n_boot=n_boot, ci=ci, seed=seed, paired=True)
        result.rows.append(row(method, BUG, "ood_separation_auc", auc, images.shape[0], primary=True,
                               rule=f"lower bound of the {folds}-fold cross-validated ROC AUC (in vs out of distribution) > 0.5",
                               detect=lambda v, lo, hi: lo > 0.5))

    detector_rows(INPUT_REFERENCE, _pooled(images.float().sum(1)))
    conf = bootstrap_ci(safe_auc, [1.0 - probs.max(1), is_ood], n_boot=n_boot, ci=ci, seed=seed, paired=True)
    result.rows.append(row(CONFIDENCE_REFERENCE, BUG, "ood_separation_auc", conf, images.shape[0], primary=True,
                           rule="lower bound of the ROC AUC of 1 - max softmax > 0.5 (no cross-validation needed)",
                           detect=lambda v, lo, hi: lo > 0.5))
    for name in names:
        attr = timed_attributions(make_method(name, model, params, seed), images, pred, batch_size=batch_size,
                                  progress=progress, desc=f"{name} (id + ood)", clock=result.seconds)
        full = normalize_attributions(attr)
        maps = full.flatten(1).numpy().astype(np.float64)
        detector_rows(name, _pooled(full))
        sim = bootstrap_ci(_mean_map_spearman, [maps[~is_ood], maps[is_ood]], n_boot=n_boot, ci=ci, seed=seed)
        result.rows.append(row(name, BUG, "mean_map_similarity", sim, images.shape[0],
                               rule=f"upper bound of the Spearman correlation of the mean maps < {threshold}",
                               detect=lambda v, lo, hi: hi < threshold))
        m = maps.reshape(-1, *images.shape[-2:])
        result.panels[f"maps/{name}"] = np.concatenate([m[:k], m[n1: n1 + k]]).astype(np.float32)
    result.details = {
        "in_distribution": int(n1),
        "out_of_distribution": int(ood_images.shape[0]),
        "mean_max_softmax_in": float(probs[~is_ood].max(1).mean()),
        "mean_max_softmax_out": float(probs[is_ood].max(1).mean()),
        "ood_predicted_classes": np.bincount(pred[is_ood], minlength=probs.shape[1]).tolist(),
    }
    return result
