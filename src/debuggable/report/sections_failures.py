"""Report section of the ``failures`` stage: failure modes ranked by importance value,
with the visual evidence behind each (registered on import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from debuggable.report.html import SectionBuilder, section  # noqa: E402
from debuggable.run import RunDirectory  # noqa: E402

#: Failure modes listed in the table (the full list is in failures/summary.json).
TABLE_ROWS = 25


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def top_leaf_scatter(top_leaves: list[dict[str, Any]], delta: float, tau: float, path: Path) -> Path:
    """ER - BER against EC of every tree's highest-IV leaf; failure modes lie top right."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    markers = {"label": "o", "prediction": "s", "custom": "^"}
    depths = sorted({r["depth"] for r in top_leaves})
    cmap = plt.get_cmap("viridis", max(2, len(depths)))
    for gi, grouping in enumerate(sorted({r["grouping"] for r in top_leaves})):
        for di, d in enumerate(depths):
            rs = [r for r in top_leaves if r["grouping"] == grouping and r["depth"] == d]
            if rs:
                ax.scatter([r["ec"] for r in rs], [r["er"] - r["ber"] for r in rs], s=22, alpha=0.75,
                           marker=markers.get(grouping, "o"), color=cmap(di), label=f"{grouping}, depth {d}")
    ax.axhline(delta, color="crimson", lw=0.8, ls="--")
    ax.axvline(tau, color="crimson", lw=0.8, ls="--")
    ax.set_xlabel("error coverage EC")
    ax.set_ylabel("ER - BER")
    ax.set_xlim(-0.02, 1.02)
    ax.set_title("Highest-IV leaf of every tree (dashed: validity thresholds)", fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def iv_bars(modes: list[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars: IV of the highest-ranked failure modes, with their ER and EC."""
    modes = modes[::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.28 * len(modes) + 0.9))
    y = np.arange(len(modes))
    ax.barh(y, [m["iv"] for m in modes], color="tab:red", alpha=0.8)
    ax.set_yticks(y, [f"{m['group']} (d{m['depth']})" for m in modes], fontsize=7)
    for yi, m in zip(y, modes):
        ax.text(m["iv"] + 0.01, yi, f"ER {m['er']:.0%}, EC {m['ec']:.0%}", va="center", fontsize=6)
    ax.set_xlabel("importance value IV = ER x EC")
    ax.set_xlim(0, 1.25)
    return _save(fig, path)


def _show(ax, img: np.ndarray, cam: np.ndarray | None = None) -> None:
    img = np.asarray(img)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    if cam is not None:
        ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def evidence_grid(ev, class_names: list[str], path: Path) -> Path:
    """Rows per rule feature: most-activating images, their CAM heatmaps, feature
    attacks; last row: random failures of the leaf (label -> prediction)."""
    n_feat, k = ev.top_rows.shape
    rows = []
    for fi in range(n_feat):
        rows.append(("top", fi))
        if ev.has_cam:
            rows.append(("cam", fi))
        if ev.has_attack:
            rows.append(("attack", fi))
    rows.append(("fail", None))
    ncols = max(k, len(ev.failure_rows), 1)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.05 * ncols + 1.4, 1.15 * len(rows)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    name = (lambda c: class_names[c] if 0 <= c < len(class_names) else str(c))
    for r, (kind, fi) in enumerate(rows):
        label = {"top": f"feature {ev.features[fi] if fi is not None else ''}\nmost activating",
                 "cam": "CAM heatmap", "attack": "feature attack",
                 "fail": "failures\nin the leaf"}[kind]
        axes[r, 0].text(-0.15, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
        if kind == "fail":
            for c in range(len(ev.failure_rows)):
                ax = axes[r, c]
                ax.axis("on")
                _show(ax, ev.failure_images[c])
                ax.set_title(f"{name(int(ev.failure_labels[c]))}->{name(int(ev.failure_preds[c]))}", fontsize=6)
            if not len(ev.failure_rows):
                axes[r, 0].text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=7)
            continue
        for c in range(k):
            ax = axes[r, c]
            ax.axis("on")
            if kind == "top":
                _show(ax, ev.top_images[fi, c])
                ax.set_title(f"{ev.top_values[fi, c]:.2f}", fontsize=6)
            elif kind == "cam":
                _show(ax, ev.top_images[fi, c], ev.cams[fi, c])
            else:
                _show(ax, ev.attacks[fi, c])
    fig.subplots_adjust(wspace=0.08, hspace=0.35)
    return _save(fig, path)


@section("failures", "Failure modes (Barlow, on robust features)", order=90, stage="failures")
def failures_section(run: RunDirectory, out: SectionBuilder) -> None:
    from debuggable.failures.evidence import FailureModeEvidence

    s = run.summary("failures")
    p = s["params"]
    names = s.get("class_names", [])
    modes = s["failure_modes"]
    out.paragraph(
        f"Failures (prediction != label) of the {s['predictions']!r} model on the {s['split']} split "
        f"({s['failures']} of {s['rows']} examples), explained with the {s['feature_dim']} features of the "
        f"{s['store']!r} model. Per group ({', '.join(p['groupings'])} grouping per class"
        f"{' and user-defined groups' if any(t.get('grouping') == 'custom' for t in s['top_leaves']) else ''}) "
        f"the {p['k']} features with the highest mutual information with failure feed decision trees of depth "
        f"{', '.join(map(str, p['depths']))} (class weights balancing failures and successes). Each leaf has an "
        f"error rate ER, an error coverage EC (its share of the group's failures) and an importance value "
        f"IV = ER x EC; a leaf is a failure mode when ER >= BER + {p['delta']} and EC >= {p['tau']}. "
        f"{s['groups_analysed']} groups analysed, {len(s['skipped'])} skipped, {len(modes)} failure modes."
    )
    out.heading("Fraction of groups with at least one valid leaf (the paper's Appendix Table 1)")
    rows = []
    for grouping, per in s["valid_leaf_counts"].items():
        for depth, c in per.items():
            rows.append([grouping, int(depth), c["groups"], c["fraction"], c["top_leaf_fraction"],
                         s["aler_minus_ber"][grouping][depth]])
    out.table(["grouping", "depth", "groups", "with a valid leaf", "highest-IV leaf valid", "mean ALER - BER"], rows)
    with out.figures_row():
        out.figure(lambda path: top_leaf_scatter(s["top_leaves"], p["delta"], p["tau"], path), "failures_scatter",
                   "Each tree's highest-IV leaf: how much its error rate exceeds the group's base error rate, and "
                   "how many of the group's failures it holds.")
        if modes:
            shown = _distinct(modes, 15)
            out.figure(lambda path: iv_bars(shown, path), "failures_iv",
                       "The highest-ranked failure modes (one per group and rule).")
    planted = s.get("planted_checks") or []
    if planted:
        out.heading("Check against the planted bug")
        out.paragraph(
            "The run planted a spurious patch, so the rows carrying it are known. For the patch's class, the "
            "highest-IV leaf of each tree: its rule, how strongly each rule feature separates patched from "
            "unpatched examples of the group (AUC; 0.5 is chance), the share of the leaf's examples carrying the "
            "patch against the group's, and ER/EC recomputed by hand from the leaf's rows.", note=True)
        out.table(
            ["group", "depth", "rule", "feature AUC", "patched in leaf", "patched in group", "patched failures",
             "ER (by hand)", "EC (by hand)"],
            [[c["group"], c["depth"], c["rule"],
              ", ".join(f"#{a['feature']}: {a['auc']:.2f}" for a in c["feature_auc"]),
              c["condition_in_leaf"], c["condition_in_group"], c["failures_with_condition"],
              f"{c['er']:.3f} ({c['er_by_hand']:.3f})", f"{c['ec']:.3f} ({c['ec_by_hand']:.3f})"] for c in planted])
    out.heading("Failure modes ranked by importance value")
    shown = _distinct(modes, TABLE_ROWS)
    out.table(["#", "group", "depth", "rule", "n", "failures", "BER", "ER", "EC", "IV", "ALER"],
              [[i + 1, m["group"], m["depth"], m["rule"], m["n"], m["failures"], m["ber"], m["er"], m["ec"],
                m["iv"], m["aler"]] for i, m in enumerate(shown)])
    if len(modes) > len(shown):
        out.paragraph(f"Showing {len(shown)} of {len(modes)} failure modes (repeats of a leaf in deeper trees "
                      "folded); all are in failures/summary.json, every tree in failures/trees.json.", note=True)
    for i, rec in enumerate(s.get("evidence", [])):
        path = run.path / rec["file"]
        if not path.is_file():
            continue
        ev = FailureModeEvidence.load(path)
        out.heading(f"Failure mode {i + 1}: {rec['group']}, depth {rec['depth']} (IV {rec['iv']:.2f})")
        out.paragraph(rec["rule"])
        what = ["most-activating images of the group"]
        if ev.has_cam:
            what.append("their CAM heatmaps")
        if ev.has_attack:
            what.append("feature attacks (the images changed to increase the feature)")
        out.figure(lambda p_, e=ev: evidence_grid(e, names, p_), f"failures_mode_{i:02d}",
                   "Per rule feature: " + ", ".join(what) + "; last row: random failures of the leaf "
                   "(label -> prediction).")
    if s["skipped"]:
        out.heading("Groups not analysed")
        out.table(["group", "examples", "failures", "reason"],
                  [[k["group"]["name"], k["group"]["n"], k["group"].get("failures", ""), k["reason"]]
                   for k in s["skipped"]])


def _distinct(modes: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    seen, out = set(), []
    for m in modes:
        key = (m["group"], m["rule"])
        if key not in seen:
            seen.add(key)
            out.append(m)
        if len(out) >= limit:
            break
    return out
