"""Stage ``failures``: Barlow failure analysis on the robust model's features.

Reads the robust model's features (``features/<store>/<split>``) and the inspected
model's labels and predictions (``features/<predictions>/<split>``), fits the trees of
every group and depth, and writes into ``failures/``:

* ``trees.json``: every tree with ER/EC/IV per node (original feature indices);
* ``evidence/mode_XX.npz``: images, CAM heatmaps, feature attacks and leaf failures
  of the highest-IV failure modes;
* ``summary.json``: ``failure_modes`` ranked by IV, ``valid_leaf_fraction`` per
  grouping and depth, skipped groups with their reasons, and, when the run planted a
  spurious patch, how well the patch's class's top leaves isolate it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from debuggable._threads import one_cpu_thread
from debuggable.errors import DebuggableError
from debuggable.failures import FailureAnalysis, Group, analyze_failures
from debuggable.failures.evidence import failure_mode_evidence
from debuggable.failures.planted import planted_condition_check
from debuggable.pipeline.extract_stage import open_store
from debuggable.pipeline.roles import model_roles
from debuggable.pipeline.stage import StageContext
from debuggable.run import FailuresConfig, RunDirectory, read_json

EVIDENCE_DIR = "evidence"
#: Feature matrices larger than this are read row by row from the store instead of loaded.
IN_MEMORY_BYTES = 4 * 2**30


class StoreRows:
    """Row access to a split's ``features`` without loading them all: ``x[rows]`` reads
    just those rows from the store (picklable, so joblib workers read their own groups)."""

    def __init__(self, reader):
        self.reader = reader
        self.shape = reader.shape
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, rows):
        if isinstance(rows, tuple):
            rows, cols = rows
            return self.reader.read("features", rows)[:, cols]
        return self.reader.read("features", rows)


def check_failures_config(config) -> None:
    """Raise naming the first failures setting that cannot work (before anything is written)."""
    cfg: FailuresConfig | None = config.failures
    if cfg is None or not cfg.enabled:
        return
    roles = model_roles(config)
    if cfg.store not in roles and cfg.store != "robust":
        raise DebuggableError(f"failures.store {cfg.store!r} names no model of this run; expected one of {list(roles)}.")
    if cfg.store in roles and cfg.predictions not in roles:
        raise DebuggableError(
            f"failures.predictions {cfg.predictions!r} names no model of this run; expected one of {list(roles)}.")
    if cfg.store in roles and cfg.split not in config.extract.splits:
        raise DebuggableError(f"failures.split {cfg.split!r} is not extracted; expected one of {config.extract.splits}.")
    if not cfg.depths or any(d < 1 for d in cfg.depths):
        raise DebuggableError(f"failures.depths {cfg.depths} must be positive tree depths, e.g. [1, 2, 3].")
    if not cfg.groupings and not cfg.groups:
        raise DebuggableError("failures.groupings is empty and failures.groups defines no group; nothing to analyse.")


def _custom_groups(cfg: FailuresConfig, labels: np.ndarray, preds: np.ndarray, names: list[str]) -> list[Group]:
    groups = []
    for g in cfg.groups:
        mask = np.ones(labels.size, dtype=bool)
        for key, values, arr in (("labels", g.labels, labels), ("preds", g.preds, preds)):
            if values is None:
                continue
            bad = [c for c in values if not 0 <= c < len(names)]
            if bad:
                raise DebuggableError(f"failures.groups {g.name!r}: {key} {bad} are not classes; expected 0..{len(names) - 1}.")
            mask &= np.isin(arr, values)
        classes = tuple(sorted(set((g.labels or []) + (g.preds or []))))
        groups.append(Group(g.name, "custom", None, np.flatnonzero(mask), classes))
    return groups


def _distinct_modes(modes: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The highest-IV modes, one per (group, rule): deeper trees often repeat a leaf."""
    seen, out = set(), []
    for m in modes:
        key = (m["group"], m["rule"])
        if key in seen or not m["features"]:
            continue
        seen.add(key)
        out.append(m)
        if len(out) >= limit:
            break
    return out


def _planted_checks(run: RunDirectory, analysis: FailureAnalysis, split: str, failed: np.ndarray, features,
                    n_rows: int) -> list[dict[str, Any]]:
    path = run.path / "data" / "ground_truth.json"
    if not path.is_file():
        return []
    truth = read_json(path).get("spurious_patch")
    if not truth or split not in truth.get("splits", {}):
        return []
    condition = np.zeros(n_rows, dtype=bool)
    condition[np.asarray(truth["splits"][split]["indices"], dtype=np.int64)] = True
    target = truth["params"]["target_class"]
    checks = []
    for t in analysis.trees:
        if t.group["class"] == target and t.group["grouping"] in ("prediction", "label"):
            check = planted_condition_check(t, condition, failed, features)
            check["condition"] = "spurious_patch"
            checks.append(check)
    return checks


def run_failures_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg: FailuresConfig = run.config.failures
    check_failures_config(run.config)
    feats_split = open_store(run, cfg.store).split(cfg.split)
    pred_split = open_store(run, cfg.predictions).split(cfg.split)
    if "preds" not in pred_split.arrays:
        raise DebuggableError(
            f"failures.predictions {cfg.predictions!r} stores no predictions (the model has no head); "
            "expected a classifier's store.")
    labels, preds = pred_split.labels, pred_split.read("preds")
    if feats_split.n_rows != pred_split.n_rows or not np.array_equal(feats_split.labels, labels):
        raise DebuggableError(
            f"failures: the {cfg.store!r} and {cfg.predictions!r} stores of split {cfg.split!r} hold different examples "
            f"({feats_split.n_rows} vs {pred_split.n_rows} rows); expected both extracted from the same data.")
    n_bytes = feats_split.n_rows * feats_split.feature_dim * 4
    features = feats_split.to_numpy("features") if n_bytes <= IN_MEMORY_BYTES else StoreRows(feats_split)
    names = pred_split.class_names or feats_split.class_names
    t0 = time.perf_counter()
    analysis = analyze_failures(
        features, labels, preds, groupings=cfg.groupings, groups=_custom_groups(cfg, labels, preds, names) or None,
        depths=cfg.depths, k=cfg.k, n_bins=cfg.n_bins, delta=cfg.delta, tau=cfg.tau,
        min_group_size=cfg.min_group_size, min_failures=cfg.min_failures, criterion=cfg.criterion,
        min_samples_leaf=cfg.min_samples_leaf, random_state=run.config.seed, class_names=names,
        n_jobs=cfg.n_jobs, progress=ctx.progress,
    )
    seconds_trees = time.perf_counter() - t0
    out_dir = run.path / "failures"
    analysis.save_json(out_dir / "trees.json")
    outputs = ["failures/trees.json"]
    modes = analysis.failure_modes()
    for m in modes:
        m["class_name"] = names[m["class"]] if m["class"] is not None and m["class"] < len(names) else None
    vlf = analysis.valid_leaf_fraction()
    failed = labels != preds

    # Visual evidence for the highest-IV distinct failure modes.
    evidence = []
    t1 = time.perf_counter()
    chosen = _distinct_modes(modes, cfg.evidence_modes)
    if chosen:
        with one_cpu_thread(ctx.device):  # evidence batches are a handful of images
            evidence = _write_evidence(run, ctx, cfg, analysis, chosen, features, labels, preds, feats_split, outputs)
    seconds_evidence = time.perf_counter() - t1

    planted = _planted_checks(run, analysis, cfg.split, failed, features, labels.size)
    summary: dict[str, Any] = {
        "store": cfg.store,
        "predictions": cfg.predictions,
        "split": cfg.split,
        "rows": int(labels.size),
        "feature_dim": int(features.shape[1]),
        "failures": int(failed.sum()),
        "params": analysis.params,
        "groups_analysed": len({t.group["name"] for t in analysis.trees}),
        "trees": len(analysis.trees),
        "skipped": analysis.skipped,
        "failure_modes": modes,
        "valid_leaf_fraction": {g: {d: c["fraction"] for d, c in per.items()} for g, per in vlf.items()},
        "top_leaf_valid_fraction": {g: {d: c["top_leaf_fraction"] for d, c in per.items()} for g, per in vlf.items()},
        "valid_leaf_counts": vlf,
        "aler_minus_ber": analysis.mean_aler_gain(),
        "top_leaves": analysis.top_leaves(),
        "evidence": evidence,
        "planted_checks": planted,
        "seconds_trees": round(seconds_trees, 3),
        "seconds_evidence": round(seconds_evidence, 3),
        "class_names": names,
    }
    ctx.log(
        f"[failures] {summary['groups_analysed']} groups x {len(cfg.depths)} depths in {seconds_trees:.1f} s: "
        f"{len(modes)} failure modes (ER >= BER + {cfg.delta}, EC >= {cfg.tau}); "
        f"{len(analysis.skipped)} groups skipped"
    )
    for c in planted:
        if c["group"].startswith("prediction=") and c["depth"] == min(cfg.depths):
            ctx.log(f"[failures] planted patch, {c['group']} depth {c['depth']}: {c['rule']}; "
                    f"{c['condition_in_leaf']:.0%} of the leaf carries the patch vs {c['condition_in_group']:.0%} of the group")
    return summary, outputs


def _write_evidence(run, ctx, cfg, analysis, chosen, features, labels, preds, feats_split, outputs) -> list[dict]:
    from debuggable.data.base import ImageArrayDataset
    from debuggable.pipeline.data_stage import build_data
    from debuggable.pipeline.extract_stage import make_backbone

    dataset = build_data(run.config, ctx)[cfg.split]
    if not isinstance(dataset, ImageArrayDataset):
        ctx.log("[failures] no visual evidence: the data are not images")
        return []
    if len(dataset) != labels.size:
        raise DebuggableError(f"failures: split {cfg.split!r} has {len(dataset)} examples but the store {labels.size}; "
                              "re-extract the features.")
    try:
        backbone = make_backbone(run, cfg.store).to(ctx.device).eval()
    except Exception as exc:  # a store extracted elsewhere: evidence without attacks
        ctx.log(f"[failures] no feature attacks: the {cfg.store!r} backbone cannot be loaded ({exc})")
        backbone = None
    spatial = (lambda rows: feats_split.read("spatial", rows)) if "spatial" in feats_split.arrays else None
    records = []
    for i, mode in enumerate(chosen):
        tree = analysis.find(mode["group"], mode["depth"])
        ev = failure_mode_evidence(
            mode, tree.indices, tree.leaf_rows(mode["leaf"]), features=features, labels=labels, preds=preds,
            images=lambda rows: dataset.batch(rows)[0].numpy(), spatial=spatial, backbone=backbone,
            k=cfg.evidence_k, n_failures=cfg.evidence_k, attack_eps=cfg.attack_eps, attack_steps=cfg.attack_steps,
            attack_step_size=cfg.attack_step_size, seed=run.config.seed + i, device=ctx.device,
        )
        rel = f"failures/{EVIDENCE_DIR}/mode_{i:02d}.npz"
        ev.save(run.path / rel)
        outputs.append(rel)
        records.append({"file": rel, "group": mode["group"], "depth": mode["depth"], "leaf": mode["leaf"],
                        "features": mode["features"], "rule": mode["rule"], "iv": mode["iv"]})
    return records
