"""Checking a failure analysis against a planted condition whose ground truth is known.

When a bug is planted (a spurious patch, darkened images ...), the rows carrying it
are known. A good failure mode of the affected group then isolates those rows: its
rule's features separate rows with and without the condition (AUC), and its leaf is
enriched in them. The leaf's ER and EC are recomputed here directly from the rows,
independently of :mod:`debuggable.failures.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from debuggable.failures.analysis import TreeResult


def planted_condition_check(result: TreeResult, condition: np.ndarray, failed: np.ndarray, features,
                            leaf: int | None = None) -> dict[str, Any]:
    """How well a tree's leaf (default: its highest-IV leaf) matches a planted condition.

    Args:
        result: one tree of :class:`~debuggable.failures.FailureAnalysis`.
        condition: (N,) bool, rows carrying the planted condition.
        failed: (N,) bool failure indicator (prediction != label).
        features: (N, D) the features the analysis used.
        leaf: the leaf to check.

    Returns:
        A dict: ``group``, ``depth``, ``leaf``, ``rule``, ``features``; ``feature_auc``, per
        rule feature ``{"feature", "auc", "auc_separation"}``: the AUC of its value for
        the condition inside the group (0.5 is chance, 1 or 0 a perfect separation in
        either direction) and max(AUC, 1 - AUC); ``condition_in_leaf`` (fraction of the leaf's rows with the
        condition) vs ``condition_in_group``; ``condition_recall`` (fraction of the
        group's conditioned rows that land in the leaf); ``failures_with_condition``
        (fraction of the leaf's failures with the condition); and the leaf's ER/EC/BER
        recomputed from the rows (``er_by_hand``, ...) next to the tree's (``er``, ...).
    """
    leaf = result.top_leaf if leaf is None else int(leaf)
    rows = result.indices
    in_leaf = result.tree.leaf_ == leaf
    cond = np.asarray(condition, dtype=bool)[rows]
    fail = np.asarray(failed, dtype=bool)[rows]
    feats = result.tree.features_of(leaf)
    aucs = []
    for j in feats:
        values = np.asarray(features[rows][:, j], dtype=np.float64)
        auc = float(roc_auc_score(cond, values)) if 0 < cond.sum() < cond.size else float("nan")
        aucs.append({"feature": int(j), "auc": auc, "auc_separation": max(auc, 1 - auc)})
    rec = result.leaf_record(leaf)
    n_leaf, f_leaf, f_all = int(in_leaf.sum()), int(fail[in_leaf].sum()), int(fail.sum())
    return {
        "group": result.group["name"], "depth": result.depth, "leaf": leaf, "rule": rec["rule"], "features": feats,
        "feature_auc": aucs,
        "condition_in_leaf": float(cond[in_leaf].mean()) if n_leaf else 0.0,
        "condition_in_group": float(cond.mean()),
        "condition_recall": float(cond[in_leaf].sum() / max(1, cond.sum())),
        "failures_with_condition": float(cond[in_leaf & fail].sum() / max(1, f_leaf)),
        "er": rec["er"], "ec": rec["ec"], "ber": rec["ber"], "iv": rec["iv"], "n": rec["n"], "failures": rec["failures"],
        "er_by_hand": f_leaf / n_leaf if n_leaf else 0.0,
        "ec_by_hand": f_leaf / f_all if f_all else 0.0,
        "ber_by_hand": f_all / fail.size,
    }
