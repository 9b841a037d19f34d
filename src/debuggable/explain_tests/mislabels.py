"""Data contamination, mislabelled training examples: do attributions give them away?

A model trained with a fraction of flipped labels and a model trained on the correct
labels explain the same training examples, each for the label the example carries in
the flipped training set. On correctly labelled examples the two models should agree;
on mislabelled ones the flipped label is what the first model was taught and the
second was not. For each method:

* ``similarity_gap``: mean Spearman similarity (of |attribution|) between the two
  models on correctly labelled examples minus that on mislabelled examples; detected
  when the lower bootstrap bound is above 0.
* ``detector_auc`` (primary): how well ``1 - similarity`` ranks mislabelled above
  correctly labelled examples (ROC AUC); detected when the lower bound beats chance
  (0.5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.explain_tests.metrics import bootstrap_ci, safe_auc, spearman_abs
from debuggable.explain_tests.normalize import normalize_attributions
from debuggable.explain_tests.results import (
    BugResult,
    check_methods,
    make_method,
    predictions,
    row,
    timed_attributions,
)

BUG = "mislabels"


def mislabel_test(
    mislabelled_model: nn.Module,
    clean_model: nn.Module,
    images: torch.Tensor,
    labels: Any,
    is_mislabelled: Any,
    methods: Sequence[str] | None = None,
    *,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    panel_examples: int = 4,
    progress: bool = False,
) -> BugResult:
    """Attributions of mislabelled vs correctly labelled training examples.

    Args:
        mislabelled_model: trained on the data with flipped labels.
        clean_model: the same architecture trained on the correct labels.
        images: (N, C, H, W) training images.
        labels: (N,) the labels they carry in the flipped training set (explained by
            both models).
        is_mislabelled: (N,) bool, True where the label was flipped; both groups must
            be present.
        methods, method_params: as in the other tests.
        n_boot, ci, seed: the bootstrap over examples.
        batch_size: images per attribution call.
        panel_examples: mislabelled examples kept for the figure.
        progress: show progress bars.

    Returns:
        :class:`BugResult` with rows ``detector_auc`` (primary) and ``similarity_gap``;
        ``details`` has both models' accuracy on the given labels per group.
    """
    names, params = check_methods(methods, method_params)
    labels = np.asarray(labels, dtype=np.int64)
    flipped = np.asarray(is_mislabelled, dtype=bool)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise DebuggableError(f"images: got {getattr(images, 'shape', type(images).__name__)}, expected (N, C, H, W) tensor.")
    n = images.shape[0]
    if labels.shape != (n,) or flipped.shape != (n,):
        raise DebuggableError(f"labels/is_mislabelled: got shapes {labels.shape} and {flipped.shape}, expected ({n},) each.")
    if flipped.all() or not flipped.any():
        raise DebuggableError(f"is_mislabelled: got {int(flipped.sum())} of {n} flipped, expected both groups present.")
    result = BugResult(BUG)
    pm, _ = predictions(mislabelled_model, images)
    pc, _ = predictions(clean_model, images)
    rows_panel = np.flatnonzero(flipped)[:panel_examples]
    result.panels = {"images": images[rows_panel].cpu().numpy(), "labels": labels[rows_panel]}
    for name in names:
        a_m = timed_attributions(make_method(name, mislabelled_model, params, seed), images, labels,
                                 batch_size=batch_size, progress=progress, desc=f"{name} (mislabelled)",
                                 clock=result.seconds)
        a_c = timed_attributions(make_method(name, clean_model, params, seed), images, labels,
                                 batch_size=batch_size, progress=progress, desc=f"{name} (clean)", clock=result.seconds)
        sim = spearman_abs(a_m, a_c)
        ok = np.isfinite(sim)
        score, group = 1.0 - sim[ok], flipped[ok]
        auc = bootstrap_ci(safe_auc, [score, group], n_boot=n_boot, ci=ci, seed=seed, paired=True)
        result.rows.append(row(name, BUG, "detector_auc", auc, int(ok.sum()), primary=True,
                               rule="lower bound of the ROC AUC of (1 - similarity to the clean model) > 0.5",
                               detect=lambda v, lo, hi: lo > 0.5))
        gap = bootstrap_ci(lambda c, m: float(np.mean(c) - np.mean(m)), [sim[~flipped], sim[flipped]],
                           n_boot=n_boot, ci=ci, seed=seed)
        result.rows.append(row(name, BUG, "similarity_gap", gap, int(ok.sum()),
                               rule="lower bound of mean similarity (correct - mislabelled) > 0",
                               detect=lambda v, lo, hi: lo > 0))
        result.panels[f"mislabelled/{name}"] = normalize_attributions(a_m[rows_panel]).numpy()
        result.panels[f"clean/{name}"] = normalize_attributions(a_c[rows_panel]).numpy()
    result.details = {
        "examples": int(n),
        "mislabelled": int(flipped.sum()),
        "mislabelled_model_agrees_with_flipped_label": float(np.mean(pm[flipped] == labels[flipped])),
        "clean_model_agrees_with_flipped_label": float(np.mean(pc[flipped] == labels[flipped])),
        "mislabelled_model_accuracy_on_correct_labels": float(np.mean(pm[~flipped] == labels[~flipped])),
    }
    return result
