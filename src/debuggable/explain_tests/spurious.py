"""Data contamination, spurious correlation: does the attribution point at the planted patch?

For each method, the share of absolute attribution inside the known patch region
(:func:`~debuggable.explain_tests.metrics.region_mass`) on test images that carry the
patch, under the model trained with the spurious patch and under a model trained on
the same data without it. A method reveals the bug when the buggy model's share is
larger, paired over the same images (the lower bootstrap bound of the difference is
above 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.explain_tests.metrics import bootstrap_ci, region_mass
from debuggable.explain_tests.normalize import normalize_attributions
from debuggable.explain_tests.results import (
    BugResult,
    check_methods,
    make_method,
    mean_ci,
    predictions,
    row,
    timed_attributions,
)

BUG = "spurious_patch"


def spurious_patch_test(
    buggy_model: nn.Module,
    clean_model: nn.Module,
    images: torch.Tensor,
    masks: Any,
    methods: Sequence[str] | None = None,
    *,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    target: Literal["predicted"] | int = "predicted",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    panel_examples: int = 4,
    progress: bool = False,
) -> BugResult:
    """Attribution mass inside the planted patch, buggy vs clean model.

    Args:
        buggy_model: trained on data where the patch predicts a class.
        clean_model: the same architecture trained without the patch.
        images: (N, C, H, W) test images that carry the patch.
        masks: (N, H, W) bool, True on the patch's pixels.
        methods: registered method names (default: all).
        method_params: per-method settings, ``{name: {setting: value}}``.
        target: ``"predicted"`` (each model explains its own prediction) or a class
            index explained by both (e.g. the patch's class).
        n_boot, ci, seed: the bootstrap over images.
        batch_size: images per attribution call.
        panel_examples: images kept for the example figure.
        progress: show progress bars.

    Returns:
        :class:`BugResult` with rows ``patch_mass_difference`` (primary; detected when
        the lower bound is > 0) and ``patch_mass_buggy_model`` (detected when the lower
        bound exceeds the patch's share of the image); ``details`` has both models'
        means and the patch's pixel share; ``panels`` the first images, masks and
        normalised |attribution| maps under each model.
    """
    names, params = check_methods(methods, method_params)
    masks = np.asarray(masks, dtype=bool)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise DebuggableError(f"images: got {getattr(images, 'shape', type(images).__name__)}, expected (N, C, H, W) tensor.")
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise DebuggableError(f"masks: got shape {masks.shape}, expected {(images.shape[0], *images.shape[2:])} (one per image).")
    if images.shape[0] < 2:
        raise DebuggableError(f"images: got {images.shape[0]} patched images, expected at least 2.")
    if target != "predicted" and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
        raise DebuggableError(f"target: got {target!r}, expected 'predicted' or a class index.")
    area = float(masks.reshape(masks.shape[0], -1).mean())
    result = BugResult(BUG)
    pred_b, _ = predictions(buggy_model, images)
    pred_c, _ = predictions(clean_model, images)
    tb = pred_b if target == "predicted" else int(target)
    tc = pred_c if target == "predicted" else int(target)
    k = min(panel_examples, images.shape[0])
    result.panels = {"images": images[:k].cpu().numpy(), "masks": masks[:k]}
    per_method: dict[str, Any] = {}
    for name in names:
        a_b = timed_attributions(make_method(name, buggy_model, params, seed), images, tb, batch_size=batch_size,
                                 progress=progress, desc=f"{name} (buggy)", clock=result.seconds)
        a_c = timed_attributions(make_method(name, clean_model, params, seed), images, tc, batch_size=batch_size,
                                 progress=progress, desc=f"{name} (clean)", clock=result.seconds)
        m_b, m_c = region_mass(a_b, masks), region_mass(a_c, masks)
        diff = bootstrap_ci(lambda x, y: float(np.mean(x - y)), [m_b, m_c], n_boot=n_boot, ci=ci, seed=seed, paired=True)
        n = int(np.sum(np.isfinite(m_b) & np.isfinite(m_c)))
        result.rows.append(row(name, BUG, "patch_mass_difference", diff, n, primary=True,
                               rule="lower bound of (buggy - clean) mass in the patch > 0",
                               detect=lambda v, lo, hi: lo > 0))
        buggy = mean_ci(m_b, n_boot=n_boot, ci=ci, seed=seed)
        result.rows.append(row(name, BUG, "patch_mass_buggy_model", buggy, int(np.isfinite(m_b).sum()),
                               rule=f"lower bound > the patch's share of the image ({area:.3f})",
                               detect=lambda v, lo, hi: lo > area))
        clean = mean_ci(m_c, n_boot=n_boot, ci=ci, seed=seed)
        per_method[name] = {"buggy": list(buggy), "clean": list(clean)}
        result.panels[f"buggy/{name}"] = normalize_attributions(a_b[:k]).numpy()
        result.panels[f"clean/{name}"] = normalize_attributions(a_c[:k]).numpy()
    result.details = {
        "images": int(images.shape[0]),
        "patch_pixel_share": area,
        "target": target if target == "predicted" else int(target),
        "buggy_predictions": np.bincount(pred_b, minlength=1).tolist(),
        "clean_predictions": np.bincount(pred_c, minlength=1).tolist(),
        "mean_patch_mass": per_method,
    }
    return result
