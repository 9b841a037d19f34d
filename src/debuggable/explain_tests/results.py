"""What a bug test returns, the method x bug table, and shared helpers of the tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.explain_tests.methods import (
    AttributionMethod,
    attribute_batched,
    get_method,
    list_methods,
)
from debuggable.explain_tests.metrics import bootstrap_ci

#: the four bugs of the debugging tests, in table order
BUGS: tuple[str, ...] = ("spurious_patch", "mislabels", "model_randomization", "ood")


@dataclass
class TableRow:
    """One cell of the method x bug table.

    Attributes:
        method: attribution method (or a ``(reference)`` baseline that uses no attribution).
        bug: one of :data:`BUGS`.
        metric: what ``value`` measures (see ``docs/explain_tests.md``).
        value: the metric on all examples.
        ci_low, ci_high: percentile bootstrap interval over examples (NaN without one).
        detected: whether the method revealed the bug by ``rule``.
        rule: the detection rule, in words.
        n: examples the value is computed on.
        primary: the metric the summary table shows for this method and bug.
        model: which model(s) the row was measured on, in words (set by the caller;
            empty when unknown).
    """

    method: str
    bug: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    detected: bool
    rule: str
    n: int
    primary: bool = False
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high"):
            d[k] = None if d[k] is None or not math.isfinite(d[k]) else float(d[k])
        d["detected"] = bool(d["detected"])
        return d


@dataclass
class BugResult:
    """A bug test's output.

    Attributes:
        bug: which bug.
        rows: table rows, one or more per method.
        details: JSON-ready numbers beyond the table (curves, per-model means).
        panels: arrays for example figures (images, masks, normalised maps).
        seconds: attribution time per method.
    """

    bug: str
    rows: list[TableRow] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    panels: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def row(method: str, bug: str, metric: str, est: tuple[float, float, float], n: int, *, rule: str,
        detect: Callable[[float, float, float], bool], primary: bool = False) -> TableRow:
    value, lo, hi = est
    ok = all(math.isfinite(v) for v in (value, lo, hi)) and bool(detect(value, lo, hi))
    return TableRow(method, bug, metric, float(value), float(lo), float(hi), ok, rule, int(n), primary)


def mean_ci(values: np.ndarray, *, n_boot: int, ci: float, seed: int) -> tuple[float, float, float]:
    return bootstrap_ci(np.mean, [np.asarray(values, dtype=np.float64)], n_boot=n_boot, ci=ci, seed=seed)


def check_methods(methods: Sequence[str] | None, method_params: Mapping[str, Mapping[str, Any]] | None
                  ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Validated method names (default: all registered) and their settings."""
    names = list_methods() if methods is None else list(methods)
    if not names:
        raise DebuggableError(f"methods: got an empty list, expected some of {list_methods()}.")
    for n in names:
        if n not in list_methods():
            raise DebuggableError(f"methods: {n!r} is not a registered attribution method; expected some of {list_methods()}.")
    params = {k: dict(v) for k, v in (method_params or {}).items()}
    for k in params:
        if k not in list_methods():
            raise DebuggableError(f"method_params: {k!r} is not a registered attribution method; expected some of {list_methods()}.")
    return names, params


def make_method(name: str, model: nn.Module, params: Mapping[str, Mapping[str, Any]], seed: int) -> AttributionMethod:
    return get_method(name, model, seed=seed, **dict(params.get(name, {})))


def timed_attributions(method: AttributionMethod, images: torch.Tensor, target: Any, *, batch_size: int,
                       progress: bool, desc: str, clock: dict[str, float]) -> torch.Tensor:
    """Attributions on CPU, adding the seconds spent to ``clock[method.name]``."""
    t0 = time.perf_counter()
    out = attribute_batched(method, images, target, batch_size=batch_size, progress=progress, desc=desc).cpu()
    clock[method.name] = clock.get(method.name, 0.0) + time.perf_counter() - t0
    return out


def predictions(model: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,), softmax probabilities (N, K)) of ``model`` on ``images``."""
    device = next(iter(model.parameters())).device
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    probs = []
    try:
        with torch.no_grad():
            for lo in range(0, images.shape[0], batch_size):
                probs.append(torch.softmax(model(images[lo: lo + batch_size].to(device)).float(), 1).cpu())
    finally:
        for m, mode in modes:
            m.training = mode
    p = torch.cat(probs).numpy()
    return p.argmax(1), p


def method_bug_table(results: Sequence[BugResult]) -> list[dict[str, Any]]:
    """All rows of ``results`` as plain dicts (the ``table`` of ``summary.json``)."""
    return [r.to_dict() for res in results for r in res.rows]


def primary_matrix(table: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], dict[tuple[str, str], Mapping]]:
    """(methods, bugs, {(method, bug): primary row}) for a compact method x bug view."""
    methods: list[str] = []
    bugs: list[str] = []
    cells: dict[tuple[str, str], Mapping] = {}
    for r in table:
        if not r.get("primary"):
            continue
        if r["method"] not in methods:
            methods.append(r["method"])
        if r["bug"] not in bugs:
            bugs.append(r["bug"])
        cells[(r["method"], r["bug"])] = r
    return methods, [b for b in BUGS if b in bugs] + [b for b in bugs if b not in BUGS], cells


def _find(table: Sequence[Mapping[str, Any]], method: str, bug: str, metric: str) -> Mapping[str, Any] | None:
    return next((r for r in table if r["method"] == method and r["bug"] == bug and r["metric"] == metric), None)


def qualitative_findings(table: Sequence[Mapping[str, Any]], *, threshold: float = 0.5) -> dict[str, Any]:
    """The paper's qualitative findings, checked on a table.

    Returns:
        ``{"<bug>_detected_by": [methods], ...}`` for every bug in the table, and, when
        the randomisation test ran, ``guided_backprop_insensitive_to_top_layer`` (its
        primary similarity's lower bound >= ``threshold``: clearly unchanged) and
        ``saliency_sensitive_to_top_layer`` / ``integrated_gradients_sensitive_to_top_layer``
        (detected). A key is absent when its method was not run.
    """
    out: dict[str, Any] = {}
    for r in table:
        if r.get("primary") and not r["method"].endswith("(reference)"):
            out.setdefault(f"{r['bug']}_detected_by", [])
            if r["detected"]:
                out[f"{r['bug']}_detected_by"].append(r["method"])
    gbp = _find(table, "guided_backprop", "model_randomization", "spearman_top_layer")
    if gbp is not None:
        out["guided_backprop_insensitive_to_top_layer"] = bool(gbp["ci_low"] is not None and gbp["ci_low"] >= threshold)
    for name in ("saliency", "integrated_gradients"):
        r = _find(table, name, "model_randomization", "spearman_top_layer")
        if r is not None:
            out[f"{name}_sensitive_to_top_layer"] = bool(r["detected"])
    return out
