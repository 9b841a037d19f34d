"""Barlow's failure analysis over every group of a benchmark (Algorithm 1 of the paper).

Per group (a class under the label or prediction grouping, or a user-defined group):
the failure indicator (prediction != label), the top-k features by mutual information
with failure, one :class:`~debuggable.failures.tree.FailureTree` per depth, its leaves'
metrics, the highest-IV leaf and the *valid leaves* (failure modes: ``ER >= BER + delta``
and ``EC >= tau``). Groups are independent, so they are processed in parallel
(joblib, chunks of groups per worker); the feature matrix is read, never recomputed,
and is shared with the workers as a memory map when it is one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from debuggable.errors import DebuggableError
from debuggable.failures.groups import GROUPINGS, Group, class_groups
from debuggable.failures.selection import select_features
from debuggable.failures.tree import FailureTree


@dataclass
class TreeResult:
    """One fitted tree of one group.

    Attributes:
        group: the group's description (name, grouping, class, n, classes).
        depth: the tree's maximum depth.
        features: (k,) original indices of the selected features, by decreasing MI.
        mi: (k,) their mutual information with failure (nats).
        tree: the fitted :class:`FailureTree` (leaf ids ``tree.leaf_`` are aligned with
            ``indices``).
        indices: (n,) the group's rows.
        valid: node ids of the valid leaves (failure modes), by decreasing IV.
    """

    group: dict[str, Any]
    depth: int
    features: np.ndarray
    mi: np.ndarray
    tree: FailureTree
    indices: np.ndarray
    valid: list[int] = field(default_factory=list)

    @property
    def ber(self) -> float:
        return self.tree.ber_

    @property
    def aler(self) -> float:
        return self.tree.aler_

    @property
    def top_leaf(self) -> int:
        return self.tree.top_leaf_

    def leaf_rows(self, leaf: int) -> np.ndarray:
        """Rows (into the analysed arrays) of the examples in ``leaf``."""
        return self.indices[self.tree.leaf_ == leaf]

    def leaf_record(self, leaf: int, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The summary record of one leaf: the keys of ``failure_modes`` in ``summary.json``."""
        m = self.tree.metrics_
        pos = int(np.searchsorted(m.leaves, leaf))
        return {
            "class": self.group["class"],
            "group": self.group["name"],
            "grouping": self.group["grouping"],
            "depth": self.depth,
            "leaf": int(leaf),
            "features": self.tree.features_of(leaf),
            "rule": self.tree.rule(leaf, feature_names),
            "ber": float(m.ber),
            "er": float(m.er[pos]),
            "ec": float(m.ec[pos]),
            "iv": float(m.iv[pos]),
            "aler": float(m.aler),
            "n": int(m.n[pos]),
            "failures": int(m.failures[pos]),
            "group_n": int(m.n_total),
            "group_failures": int(m.failures_total),
            "top_leaf": int(leaf) == self.top_leaf,
        }

    def to_dict(self, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
        return {
            "group": self.group,
            "depth": self.depth,
            "selected_features": self.features.tolist(),
            "mutual_information": [float(v) for v in self.mi],
            "ber": float(self.ber),
            "aler": float(self.aler),
            "top_leaf": self.top_leaf,
            "valid_leaves": list(self.valid),
            "tree": self.tree.to_dict(feature_names),
        }


@dataclass
class FailureAnalysis:
    """Everything :func:`analyze_failures` found.

    Attributes:
        trees: every fitted tree (groups x depths).
        skipped: groups not analysed, each ``{"group": ..., "reason": ...}``.
        params: the settings used.
        seconds: wall time of the analysis.
    """

    trees: list[TreeResult]
    skipped: list[dict[str, Any]]
    params: dict[str, Any]
    seconds: float = 0.0

    def failure_modes(self, feature_names: Sequence[str] | None = None, *, depth: int | None = None,
                      grouping: str | None = None) -> list[dict[str, Any]]:
        """Every valid leaf of every tree (optionally one depth or grouping), ranked by IV."""
        modes = [t.leaf_record(leaf, feature_names) for t in self.trees
                 if (depth is None or t.depth == depth) and (grouping is None or t.group["grouping"] == grouping)
                 for leaf in t.valid]
        modes.sort(key=lambda r: (-r["iv"], -r["er"], str(r["group"]), r["depth"], r["leaf"]))
        return modes

    def top_leaves(self, feature_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The highest-IV leaf of every tree, ranked by IV, with a ``valid`` flag."""
        out = []
        for t in self.trees:
            rec = t.leaf_record(t.top_leaf, feature_names)
            rec["valid"] = t.top_leaf in t.valid
            out.append(rec)
        out.sort(key=lambda r: (-r["iv"], str(r["group"]), r["depth"]))
        return out

    def valid_leaf_fraction(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per grouping and depth: the fraction of analysed groups whose tree has at least
        one valid leaf (``fraction``), the fraction whose highest-IV leaf is valid
        (``top_leaf_fraction``, the paper's Appendix E check), and the counts."""
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for t in self.trees:
            cell = table.setdefault(t.group["grouping"], {}).setdefault(
                str(t.depth), {"groups": 0, "with_valid_leaf": 0, "top_leaf_valid": 0})
            cell["groups"] += 1
            cell["with_valid_leaf"] += bool(t.valid)
            cell["top_leaf_valid"] += t.top_leaf in t.valid
        for per_depth in table.values():
            for cell in per_depth.values():
                cell["fraction"] = cell["with_valid_leaf"] / cell["groups"]
                cell["top_leaf_fraction"] = cell["top_leaf_valid"] / cell["groups"]
        return table

    def mean_aler_gain(self) -> dict[str, dict[str, float]]:
        """Per grouping and depth, the mean of ALER - BER over analysed groups."""
        acc: dict[str, dict[str, list[float]]] = {}
        for t in self.trees:
            acc.setdefault(t.group["grouping"], {}).setdefault(str(t.depth), []).append(t.aler - t.ber)
        return {g: {d: float(np.mean(v)) for d, v in per.items()} for g, per in acc.items()}

    def find(self, group: str, depth: int) -> TreeResult:
        """The tree of the group named ``group`` at ``depth``."""
        for t in self.trees:
            if t.group["name"] == group and t.depth == depth:
                return t
        raise DebuggableError(f"group, depth: no tree for group {group!r} at depth {depth}.")

    def to_dict(self, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready export: settings, every tree with its metrics per node, skipped groups."""
        return {"params": self.params, "seconds": self.seconds,
                "trees": [t.to_dict(feature_names) for t in self.trees], "skipped": self.skipped}

    def save_json(self, path: str | Path, feature_names: Sequence[str] | None = None) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically."""
        from debuggable.run import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(feature_names), indent=1))
        return path


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_int_array(name: str, a, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DebuggableError(f"{name}: expected a 1-D integer array, got shape {arr.shape} and dtype {arr.dtype}.")
    if n is not None and arr.shape[0] != n:
        raise DebuggableError(f"{name}: expected {n} entries, one per row of features, got {arr.shape[0]}.")
    return arr.astype(np.int64, copy=False)


def _check_finite(features: np.ndarray, block: int = 65536) -> None:
    for lo in range(0, features.shape[0], block):
        chunk = np.asarray(features[lo : lo + block])
        if not np.isfinite(chunk).all():
            bad = np.argwhere(~np.isfinite(chunk))[0]
            raise DebuggableError(
                f"features: row {lo + int(bad[0])}, column {int(bad[1])} is {chunk[tuple(bad)]}; expected finite values "
                "(re-extract the features or drop those rows).")


def _check_fraction(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise DebuggableError(f"{name}: expected a number in [0, 1], got {v!r}.")
    return float(v)


def _positive_int(name: str, v, minimum: int = 1) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
        raise DebuggableError(f"{name}: expected an integer of at least {minimum}, got {v!r}.")
    return int(v)


# ---------------------------------------------------------------------------
# the work on one chunk of groups (runs in a joblib worker)
# ---------------------------------------------------------------------------


def _analyze_groups(features, failed: np.ndarray, groups: list[Group], params: dict[str, Any],
                    device, single_thread: bool) -> tuple[list[TreeResult], list[dict[str, Any]]]:
    if single_thread:
        torch.set_num_threads(1)
    trees: list[TreeResult] = []
    skipped: list[dict[str, Any]] = []
    for g in groups:
        n = len(g)
        f = failed[g.indices]
        n_fail = int(f.sum())
        reason = None
        if n < params["min_group_size"]:
            reason = f"{n} examples, fewer than min_group_size={params['min_group_size']}"
        elif n_fail == 0:
            reason = f"no failures among {n} examples"
        elif n_fail == n:
            reason = f"all {n} examples fail, nothing separates failures from successes"
        elif n_fail < params["min_failures"]:
            reason = f"{n_fail} failures, fewer than min_failures={params['min_failures']}"
        if reason is not None:
            skipped.append({"group": g.describe() | {"failures": n_fail}, "reason": reason})
            continue
        x = np.asarray(features[g.indices], dtype=np.float32)       # one gather per group
        cols, mi = select_features(x, f, params["k"], n_bins=params["n_bins"], device=device)
        xs = x[:, cols]
        for depth in params["depths"]:
            tree = FailureTree(depth, criterion=params["criterion"], min_samples_leaf=params["min_samples_leaf"],
                               random_state=params["random_state"]).fit(xs, f, feature_indices=cols)
            m = tree.metrics_
            ok = m.valid(params["delta"], params["tau"])
            valid = [int(m.leaves[i]) for i in np.flatnonzero(ok)[np.argsort(-m.iv[ok], kind="stable")]]
            trees.append(TreeResult(g.describe() | {"failures": n_fail}, depth, cols, mi, tree, g.indices, valid))
    return trees, skipped


def analyze_failures(
    features,
    labels,
    preds,
    *,
    groupings: Sequence[str] = GROUPINGS,
    classes: Iterable[int] | None = None,
    groups: Sequence[Group] | Mapping[str, Any] | None = None,
    depths: Sequence[int] = (1, 2, 3),
    k: int = 10,
    n_bins: int = 16,
    delta: float = 0.1,
    tau: float = 0.1,
    min_group_size: int = 20,
    min_failures: int = 5,
    criterion: str = "entropy",
    min_samples_leaf: int = 5,
    random_state: int = 0,
    class_names: Sequence[str] | None = None,
    n_jobs: int = 1,
    chunks_per_job: int = 4,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> FailureAnalysis:
    """Barlow failure analysis: trees on robust features explaining each group's failures.

    Args:
        features: (N, D) features of a robust model: a NumPy array, an ``np.memmap``,
            or any object with ``shape`` whose ``x[rows]`` returns those rows (e.g. the
            stage's row reader over a feature store); read group by group, never
            copied whole.
        labels: (N,) int ground-truth labels.
        preds: (N,) int predictions of the model under inspection (any model).
        groupings: class groupings to build: ``"label"`` (false negatives) and/or
            ``"prediction"`` (false positives).
        classes: restrict the class groupings to these classes (default: all present).
        groups: extra user-defined groups: :class:`Group` objects, or a mapping
            ``name -> boolean mask or row indices``.
        depths: tree depths to fit per group (each tree uses the same selected features).
        k: features kept per group by mutual information.
        n_bins: bins per feature for the mutual information.
        delta: a leaf is a failure mode when ``ER >= BER + delta`` ...
        tau: ... and ``EC >= tau``.
        min_group_size: groups with fewer examples are skipped (reason recorded).
        min_failures: groups with fewer failures are skipped (reason recorded): a
            handful of failures gives leaves that describe single examples.
        criterion, min_samples_leaf, random_state: passed to the trees (a leaf holds at
            least ``min_samples_leaf`` examples, so no rule describes one image).
        class_names: names of the classes (for group names).
        n_jobs: worker processes (joblib); 1 runs in this process.
        chunks_per_job: groups are split into ``n_jobs * chunks_per_job`` tasks.
        device: where the mutual information is computed (default CPU).
        progress: show a progress bar.

    Returns:
        :class:`FailureAnalysis`.

    Raises:
        DebuggableError: mismatched lengths, non-finite features, bad settings.
    """
    if not hasattr(features, "shape") or len(features.shape) != 2:
        raise DebuggableError(f"features: expected an (N, D) array, got {type(features).__name__} "
                              f"with shape {getattr(features, 'shape', None)}.")
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    n_rows, d = int(features.shape[0]), int(features.shape[1])
    labels = _check_int_array("labels", labels, n_rows)
    preds = _check_int_array("preds", preds, n_rows)
    unknown = [g for g in groupings if g not in GROUPINGS]
    if unknown:
        raise DebuggableError(f"groupings: {unknown} are not groupings; expected some of {list(GROUPINGS)}.")
    depths = [_positive_int("depths", v) for v in depths]
    if not depths:
        raise DebuggableError("depths: expected at least one tree depth, got none.")
    params = {
        "groupings": list(groupings), "depths": depths, "k": _positive_int("k", k),
        "n_bins": _positive_int("n_bins", n_bins, 2), "delta": _check_fraction("delta", delta),
        "tau": _check_fraction("tau", tau), "min_group_size": _positive_int("min_group_size", min_group_size, 2),
        "min_failures": _positive_int("min_failures", min_failures), "criterion": criterion,
        "min_samples_leaf": _positive_int("min_samples_leaf", min_samples_leaf), "random_state": random_state,
        "n_rows": n_rows, "feature_dim": d,
    }
    if criterion not in ("entropy", "gini"):
        raise DebuggableError(f"criterion: expected 'entropy' or 'gini', got {criterion!r}.")
    n_jobs = _positive_int("n_jobs", n_jobs) if n_jobs != -1 else -1
    chunks_per_job = _positive_int("chunks_per_job", chunks_per_job)
    _check_finite(features)

    all_groups: list[Group] = []
    for grouping in groupings:
        all_groups += class_groups(labels, preds, grouping, classes=classes, class_names=class_names)
    if groups is not None:
        from debuggable.failures.groups import custom_group

        items = groups.items() if isinstance(groups, Mapping) else [(None, g) for g in groups]
        for name, g in items:
            all_groups.append(g if isinstance(g, Group) else custom_group(str(name), g, n_rows))
        for g in all_groups:
            if g.indices.size and (g.indices[0] < 0 or g.indices[-1] >= n_rows):
                raise DebuggableError(f"groups: group {g.name!r} has rows outside 0..{n_rows - 1}.")
    failed = labels != preds
    t0 = time.perf_counter()
    # Largest groups first so the parallel workers finish together.
    order = sorted(range(len(all_groups)), key=lambda i: -len(all_groups[i]))
    workers = n_jobs if n_jobs > 0 else max(1, os.cpu_count() or 1)
    n_tasks = max(1, min(len(order), workers * chunks_per_job)) if workers > 1 else max(1, min(len(order), 50))
    tasks = [[all_groups[i] for i in order[t::n_tasks]] for t in range(n_tasks)]
    tasks = [t for t in tasks if t]
    trees: list[TreeResult] = []
    skipped: list[dict[str, Any]] = []
    bar = tqdm(total=len(all_groups), desc="failure trees", unit="group", disable=not progress)
    if workers == 1:
        for chunk in tasks:
            tr, sk = _analyze_groups(features, failed, chunk, params, device, False)
            trees += tr
            skipped += sk
            bar.update(len(chunk))
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", max_nbytes="1M")
        for tr, sk in parallel(delayed(_analyze_groups)(features, failed, c, params, device, True) for c in tasks):
            trees += tr
            skipped += sk
            bar.update(len({t.group["name"] for t in tr}) + len(sk))
    bar.close()
    rank = {g.name: i for i, g in enumerate(all_groups)}
    trees.sort(key=lambda t: (rank[t.group["name"]], t.depth))
    skipped.sort(key=lambda s: rank[s["group"]["name"]])
    return FailureAnalysis(trees, skipped, params, time.perf_counter() - t0)
