"""Report section of the ``explain_tests`` stage: the method x bug table and example panels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from debuggable.report.html import SectionBuilder, section
from debuggable.report.plots import _save, plt
from debuggable.run import RunDirectory

BUG_TITLES = {
    "spurious_patch": "spurious patch",
    "mislabels": "mislabelled examples",
    "model_randomization": "re-initialised top layer",
    "ood": "out-of-distribution inputs",
}


def _fmt(r: Mapping[str, Any]) -> str:
    if r["value"] is None:
        return "n/a"
    ci = "" if r["ci_low"] is None else f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
    return f"{r['value']:.2f}{ci} {'yes' if r['detected'] else 'no'}"


def matrix_plot(methods: list[str], bugs: list[str], cells: Mapping, path: Path) -> Path:
    """Method x bug grid: green where the method revealed the bug, grey where not, with values."""
    fig, ax = plt.subplots(figsize=(1.9 * len(bugs) + 2.2, 0.36 * len(methods) + 1.0))
    grid = np.full((len(methods), len(bugs)), np.nan)
    for i, m in enumerate(methods):
        for j, b in enumerate(bugs):
            r = cells.get((m, b))
            if r is not None:
                grid[i, j] = 1.0 if r["detected"] else 0.0
                ax.text(j, i, "n/a" if r["value"] is None else f"{r['value']:.2f}", ha="center", va="center", fontsize=8)
    ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=-0.6, vmax=1.4, aspect="auto")
    ax.set_xticks(range(len(bugs)), [BUG_TITLES.get(b, b) for b in bugs], fontsize=8, rotation=15)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.set_title("revealed (green) or not (red); cell: primary metric", fontsize=9)
    return _save(fig, path)


def _show(ax, img: np.ndarray, *, signed: bool = False, cmap: str = "inferno") -> None:
    ax.axis("off")
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.clip(img.transpose(1, 2, 0), 0, 1)
    if signed:
        ax.imshow(img, cmap="bwr", vmin=-1, vmax=1, interpolation="nearest")
    elif img.ndim == 2:
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")


def panel_grid(images: np.ndarray, rows: list[tuple[str, np.ndarray]], path: Path, *,
               masks: np.ndarray | None = None, col_titles: list[str] | None = None) -> Path:
    """Images in the first row, then one row per ``(label, maps (N, H, W))``; patch outlines in cyan."""
    n = len(images)
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(1.05 * n + 1.3, 1.05 * (len(rows) + 1)), squeeze=False)
    for j in range(n):
        _show(axes[0, j], images[j], cmap="gray")
        if col_titles:
            axes[0, j].set_title(col_titles[j], fontsize=7)
        for i, (_, maps) in enumerate(rows):
            _show(axes[i + 1, j], maps[j])
            if masks is not None:
                axes[i + 1, j].contour(masks[j], levels=[0.5], colors="cyan", linewidths=0.6)
    for i, (label, _) in enumerate([("image", None)] + rows):
        axes[i, 0].text(-0.08, 0.5, label, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
    return _save(fig, path)


def cascade_grid(image: np.ndarray, cascades: Mapping[str, np.ndarray], layers: list[str], path: Path) -> Path:
    """One image; per method its map on the trained model and after each cascading step."""
    methods = list(cascades)
    steps = next(iter(cascades.values())).shape[0]
    fig, axes = plt.subplots(len(methods), steps + 1, figsize=(0.95 * (steps + 1) + 1.3, 0.95 * len(methods)),
                             squeeze=False)
    for i, m in enumerate(methods):
        _show(axes[i, 0], image, cmap="gray")
        axes[i, 0].text(-0.08, 0.5, m, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
        for j in range(steps):
            _show(axes[i, j + 1], cascades[m][j])
            if i == 0:
                axes[i, j + 1].set_title("trained" if j == 0 else f"-> {layers[j - 1]}", fontsize=6)
    return _save(fig, path)


def curves_plot(curves: Mapping[str, Any], layers: list[str], similarity: str, path: Path) -> Path:
    """Similarity to the trained model's attributions per randomisation step, one line per method."""
    modes = list(curves)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 3.4), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    for ax, mode in zip(axes[0], modes):
        for i, (method, per) in enumerate(curves[mode].items()):
            pts = per[similarity]
            y = [p["mean"] if p["mean"] is not None else np.nan for p in pts]
            ax.plot(range(len(y)), y, marker="o", ms=3, label=method, lw=1.2, color=colours[(2 * i) % 20 + (i >= 10)],
                    ls="--" if method in ("guided_backprop", "guided_grad_cam") else "-")
        ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7, ha="right")
        ax.set_ylim(-1, 1.02)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{mode} randomisation (top layer first)", fontsize=9)
        ax.set_ylabel(f"{similarity} similarity to trained", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)


@section("explain_tests", "Debugging tests for explanation methods", order=100, stage="explain_tests")
def explain_tests_section(run: RunDirectory, out: SectionBuilder) -> None:
    from debuggable.explain_tests import primary_matrix

    s = run.summary("explain_tests")
    table = s["table"]
    details = s["details"]
    settings = s["settings"]
    out.paragraph(
        "Which attribution methods would have revealed a known bug? Each test plants one bug (Adebayo et al., "
        "NeurIPS 2020): a spurious patch and mislabelled training examples (data contamination), re-initialised "
        "layers (model contamination) and out-of-distribution inputs (test-time contamination). Every cell is "
        f"a number with a {settings['ci']:.0%} bootstrap interval over examples ({settings['n_boot']} "
        "replicates) and the rule that decides 'revealed'."
    )
    methods, bugs, cells = primary_matrix(table)
    out.figure(lambda p: matrix_plot(methods, bugs, cells, p), "explain_tests_matrix",
               "Method x bug: primary metric per cell (patch-mass difference, mislabel detector AUC, signed rank "
               "correlation after re-initialising the top layer, OOD detector AUC).")
    metric_of = {b: next((r["metric"] for r in table if r["bug"] == b and r.get("primary")), "") for b in bugs}
    out.table(["method"] + [f"{BUG_TITLES.get(b, b)} ({metric_of[b]})" for b in bugs],
              [[m] + [_fmt(cells[(m, b)]) if (m, b) in cells else "" for b in bugs] for m in methods])
    rules = {r["bug"]: r["rule"] for r in table if r.get("primary") and not r["method"].endswith("(reference)")}
    out.paragraph("Rules: " + "; ".join(f"{BUG_TITLES.get(b, b)}: {rule}" for b, rule in rules.items()) + ".", note=True)
    measured = {b: d.get("model") for b, d in details.items() if d.get("model")}
    if measured:
        out.table(["bug", "measured on"], [[BUG_TITLES.get(b, b), m] for b, m in measured.items()])
    for name, why in (s.get("skipped_methods") or {}).items():
        out.paragraph(f"{name} was left out: {why}.", note=True)
    f = s["findings"]
    checks = []
    if "spurious_patch_detected_by" in f:
        checks.append(f"the spurious patch is revealed by {len(f['spurious_patch_detected_by'])} of {len(s['methods'])} methods")
    if "guided_backprop_insensitive_to_top_layer" in f:
        checks.append("guided backpropagation " + ("stays similar" if f["guided_backprop_insensitive_to_top_layer"]
                                                   else "changes") + " when the top layer is re-initialised")
    for name in ("saliency", "integrated_gradients"):
        if f"{name}_sensitive_to_top_layer" in f:
            checks.append(f"{name.replace('_', ' ')} " + ("changes" if f[f"{name}_sensitive_to_top_layer"] else "stays similar"))
    if "mislabels_detected_by" in f:
        checks.append(f"mislabelled examples are flagged above chance by {len(f['mislabels_detected_by'])} methods")
    if checks:
        out.paragraph("The paper's qualitative findings on these models: " + "; ".join(checks) + ".")
    models = s.get("models", {})
    if models:
        recipe = (s.get("recipe") or {}).get("description", "small CNNs trained here")
        out.table(["extra model", "recipe", "training images", "test accuracy", "training seconds"],
                  [[k, recipe, v["train_images"], v["test_accuracy"], round(v["train_seconds"], 1)]
                   for k, v in models.items()])

    panels_path = run.path / "explain_tests" / "panels.npz"
    z = np.load(panels_path) if panels_path.is_file() else None
    names = s.get("class_names", [])
    shown = list(s["methods"])
    if z is not None and "spurious_patch/images" in z:
        d = details["spurious_patch"]
        out.heading("Spurious patch")
        out.paragraph(
            f"{d['images']} test images of other classes carrying the patch ({d['patch_pixel_share']:.1%} of the "
            f"pixels); model with the bug: {d['buggy_model']}. Maps are |attribution| scaled to the 99th percentile; "
            "the patch is outlined in cyan."
        )
        for model in ("buggy", "clean"):
            rows = [(m, z[f"spurious_patch/{model}/{m}"]) for m in shown if f"spurious_patch/{model}/{m}" in z]
            out.figure(lambda p, rows=rows: panel_grid(z["spurious_patch/images"], rows, p,
                                                       masks=z["spurious_patch/masks"]),
                       f"explain_tests_spurious_{model}",
                       f"Attributions of the {'model trained with the patch' if model == 'buggy' else 'clean model'}.")
    if "model_randomization" in details:
        d = details["model_randomization"]
        out.heading("Model contamination: layer randomisation")
        out.paragraph(
            f"{d['images']} test images; layers re-initialised from the top: {', '.join(d['layers'])}. Similarity of "
            "each method's attributions to the trained model's: signed Spearman (primary), Spearman of |a|, SSIM, HOG. "
            "Methods that modify back-propagation (dashed) are expected to stay similar."
        )
        out.figure(lambda p: curves_plot(d["curves"], d["layers"], "spearman", p), "explain_tests_randomization_curves",
                   "Signed rank correlation with the trained model's attributions at each randomisation step.")
        if z is not None and "model_randomization/images" in z:
            cascades = {m: z[f"model_randomization/cascade/{m}"] for m in shown if f"model_randomization/cascade/{m}" in z}
            if cascades:
                out.figure(lambda p: cascade_grid(z["model_randomization/images"][0], cascades, d["layers"], p),
                           "explain_tests_cascade", "Cascading randomisation of one image, top layer first.")
    if z is not None and "mislabels/images" in z:
        d = details["mislabels"]
        out.heading("Mislabelled training examples")
        out.paragraph(
            f"{d['examples']} training examples, {d['mislabelled']} of them mislabelled. The model trained with "
            f"flipped labels agrees with the flipped label on {d['mislabelled_model_agrees_with_flipped_label']:.0%} of "
            f"them (the clean model on {d['clean_model_agrees_with_flipped_label']:.0%})."
        )
        labels = z["mislabels/labels"]
        titles = [f"labelled {names[int(k)] if names else int(k)}" for k in labels]
        rows = []
        for m in shown:
            if f"mislabels/mislabelled/{m}" in z:
                rows += [(f"{m} (flipped)", z[f"mislabels/mislabelled/{m}"]), (f"{m} (clean)", z[f"mislabels/clean/{m}"])]
        out.figure(lambda p: panel_grid(z["mislabels/images"], rows, p, col_titles=titles), "explain_tests_mislabels",
                   "Mislabelled examples explained for their flipped label by the model trained on it and by the clean model.")
    if z is not None and "ood/images" in z:
        d = details["ood"]
        out.heading("Out-of-distribution inputs")
        out.paragraph(
            f"{d['in_distribution']} test images and {d['out_of_distribution']} {d['ood_dataset']} images resized to "
            f"the model's input. Mean top-class probability: {d['mean_max_softmax_in']:.2f} in distribution, "
            f"{d['mean_max_softmax_out']:.2f} out of distribution."
        )
        k = z["ood/images"].shape[0] // 2
        titles = ["in"] * k + ["OOD"] * k
        rows = [(m, z[f"ood/maps/{m}"]) for m in shown if f"ood/maps/{m}" in z]
        out.figure(lambda p: panel_grid(z["ood/images"], rows, p, col_titles=titles), "explain_tests_ood",
                   "In-distribution (left) and out-of-distribution (right) inputs and their attributions.")
    lines = [f"{'method':24s} {'bug':20s} {'metric':26s} {'value':>7s} {'ci_low':>7s} {'ci_high':>7s} {'n':>4s} detected"]
    for r in table:
        v = ["   n/a" if r[k] is None or (isinstance(r[k], float) and math.isnan(r[k])) else f"{r[k]:7.3f}"
             for k in ("value", "ci_low", "ci_high")]
        lines.append(f"{r['method']:24s} {r['bug']:20s} {r['metric']:26s} {v[0]} {v[1]} {v[2]} {r['n']:4d} "
                     f"{'yes' if r['detected'] else 'no'}")
    out.code("\n".join(lines), summary=f"All {len(table)} rows (also in explain_tests/summary.json and table.csv)")
    secs = s.get("attribution_seconds", {})
    if secs:
        out.paragraph("Attribution time per method (all tests): " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()) + ".",
                      note=True)
