"""Model contamination: do attributions change when the model's layers are re-initialised?

Cascading randomisation re-initialises the layers from the top (the output layer)
down, one more at each step; independent randomisation re-initialises each layer on
its own. At every step each method's attributions on the same images, for the class
the trained model predicts, are compared with the trained model's by Spearman rank
correlation (signed and of absolute values), SSIM and HOG similarity. A method that
passes the test changes when the model does: its similarity after re-initialising the
top layer is low (upper bootstrap bound below ``threshold``). Methods that modify the
backward pass (guided backpropagation) are known to stay similar.

The primary metric is the signed Spearman correlation: on images with a constant
background (Animal-MNIST is 60% black pixels) input-multiplied methods (input x
gradient, integrated gradients from a black baseline) are exactly zero on the background
under ANY model, so the absolute-value correlation is inflated by ties at zero whatever
the weights; the signed one is not. All four are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.explain_tests.metrics import SIMILARITIES
from debuggable.explain_tests.normalize import normalize_attributions
from debuggable.explain_tests.randomization import (
    cascading_steps,
    independent_steps,
    randomizable_layers,
    randomized,
)
from debuggable.explain_tests.results import (
    BugResult,
    check_methods,
    make_method,
    mean_ci,
    predictions,
    row,
    timed_attributions,
)

BUG = "model_randomization"
MODES = ("cascading", "independent")
PRIMARY_SIMILARITY = "spearman"


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def model_randomization_test(
    model: nn.Module,
    images: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    layers: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    similarities: Sequence[str] = ("spearman", "spearman_abs", "ssim", "hog"),
    threshold: float = 0.5,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> BugResult:
    """Similarity of attributions before and after re-initialising layers.

    Args:
        model: the trained model; modified during the test and restored exactly.
        images: (N, C, H, W) images, N >= 2.
        methods: registered method names (default: all).
        method_params: per-method settings.
        layers: layer names from the output down (default:
            :func:`~debuggable.explain_tests.randomization.randomizable_layers`).
        modes: ``"cascading"`` and/or ``"independent"``.
        similarities: names in :data:`~debuggable.explain_tests.metrics.SIMILARITIES`.
        threshold: a similarity whose upper bound is below this counts as "changed".
        n_boot, ci, seed: bootstrap over images; ``seed`` also seeds the re-initialisation.
        batch_size: images per attribution call.
        progress: show progress bars.

    Returns:
        :class:`BugResult` with, per method, rows ``<similarity>_top_layer`` (after
        re-initialising the top layer; the signed Spearman row is primary) and
        ``<similarity>_all_layers`` (the end of the cascade, when run); ``details``
        holds the curves ``{mode: {method: {similarity: [{"layers", "mean", "ci_low",
        "ci_high"}, ...]}}}``; ``panels`` the first image and each method's map at
        every cascading step.

    Raises:
        DebuggableError: for unknown layers, modes or similarities, or when the model
            could not be restored (never expected).
    """
    names, params = check_methods(methods, method_params)
    layers = list(layers) if layers is not None else randomizable_layers(model)
    if not layers:
        raise DebuggableError(f"layers: {type(model).__name__} has no layers to randomise; expected Conv or Linear layers.")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise DebuggableError(f"modes: got {list(modes)}, expected a non-empty subset of {list(MODES)}.")
    bad = [s for s in similarities if s not in SIMILARITIES]
    if bad or not similarities:
        raise DebuggableError(f"similarities: got {list(similarities)}, expected a non-empty subset of {list(SIMILARITIES)}.")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
        raise DebuggableError(f"images: got {getattr(images, 'shape', type(images).__name__)}, expected (N, C, H, W) with N >= 2.")
    before = _state(model)
    target, _ = predictions(model, images)
    result = BugResult(BUG)
    steps = {"cascading": cascading_steps(layers), "independent": independent_steps(layers)}
    curves: dict[str, Any] = {mode: {} for mode in modes}
    result.panels = {"images": images[:1].cpu().numpy()}
    for name in names:
        original = timed_attributions(make_method(name, model, params, seed), images, target, batch_size=batch_size,
                                      progress=progress, desc=f"{name} (trained)", clock=result.seconds)
        panel = [normalize_attributions(original[:1]).numpy()[0]]
        per_mode: dict[str, list[dict[str, np.ndarray]]] = {}
        for mode in modes:
            sims_per_step = []
            for i, step in enumerate(steps[mode]):
                with randomized(model, step, seed=seed):
                    attr = timed_attributions(make_method(name, model, params, seed), images, target,
                                              batch_size=batch_size, progress=progress,
                                              desc=f"{name} ({mode} {i + 1}/{len(layers)})", clock=result.seconds)
                sims_per_step.append({s: SIMILARITIES[s](original, attr) for s in similarities})
                if mode == "cascading":
                    panel.append(normalize_attributions(attr[:1]).numpy()[0])
            per_mode[mode] = sims_per_step
            curves[mode][name] = {
                s: [dict(zip(("mean", "ci_low", "ci_high"), mean_ci(step_sims[s], n_boot=n_boot, ci=ci, seed=seed)),
                         layers=list(steps[mode][i])) for i, step_sims in enumerate(sims_per_step)]
                for s in similarities
            }
        if "cascading" in modes:
            result.panels[f"cascade/{name}"] = np.stack(panel)
        top = (per_mode.get("cascading") or per_mode["independent"])[0]
        for s in similarities:
            result.rows.append(row(name, BUG, f"{s}_top_layer", mean_ci(top[s], n_boot=n_boot, ci=ci, seed=seed),
                                   int(np.isfinite(top[s]).sum()), primary=s == PRIMARY_SIMILARITY,
                                   rule=f"upper bound of the similarity after re-initialising {layers[0]!r} < {threshold}",
                                   detect=lambda v, lo, hi: hi < threshold))
        if "cascading" in modes and len(layers) > 1:
            last = per_mode["cascading"][-1]
            for s in similarities:
                result.rows.append(row(name, BUG, f"{s}_all_layers", mean_ci(last[s], n_boot=n_boot, ci=ci, seed=seed),
                                       int(np.isfinite(last[s]).sum()),
                                       rule=f"upper bound of the similarity after re-initialising all {len(layers)} layers < {threshold}",
                                       detect=lambda v, lo, hi: hi < threshold))
    after = model.state_dict()
    if any(not torch.equal(before[k], after[k]) for k in before):
        raise DebuggableError("model: its weights were not restored after the randomisation test; this is a bug in debuggable.")
    result.details = {"layers": layers, "modes": list(modes), "similarities": list(similarities),
                      "threshold": threshold, "images": int(images.shape[0]), "curves": curves}
    return result
