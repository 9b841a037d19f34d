"""Shallow decision trees that describe where a group's failures concentrate.

:class:`FailureTree` fits a scikit-learn decision tree (depth 1 to 3 in the paper) on
a few selected features to predict failure, with class weights balancing successes and
failures, and reports Barlow's metrics for every node: size, failures, error rate (ER),
error coverage (EC) and importance value (IV); for the tree: base error rate (BER) and
average leaf error rate (ALER); the leaf with the highest IV; and each leaf's rule in
terms of the ORIGINAL feature indices (the columns of the full feature matrix, not of
the selected subset).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from debuggable.errors import DebuggableError
from debuggable.failures.metrics import LeafMetrics, leaf_metrics


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class FailureTree:
    """A shallow tree predicting failure, with Barlow's metrics per node.

    Args:
        max_depth: tree depth (1 to 3 keeps rules readable).
        criterion: ``"entropy"`` (the reference implementation's choice) or ``"gini"``.
        min_samples_leaf: the fewest examples a leaf may hold.
        random_state: seed for scikit-learn's tie-breaking among equally good splits.

    Fitted attributes:
        tree_: the fitted :class:`sklearn.tree.DecisionTreeClassifier`.
        feature_indices_: (k,) original column of each column the tree was fitted on.
        leaf_: (n,) node id of the leaf each training example falls into.
        metrics_: :class:`~debuggable.failures.metrics.LeafMetrics` of the leaves.
        node_n_, node_failures_: (nodes,) examples and failures reaching each node.
        ber_, aler_: base error rate and average leaf error rate.
        top_leaf_: node id of the leaf with the highest IV.
    """

    def __init__(self, max_depth: int = 1, *, criterion: str = "entropy", min_samples_leaf: int = 1,
                 random_state: int | None = 0):
        self.max_depth = max_depth
        self.criterion = criterion
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, x, failed, feature_indices: Sequence[int] | None = None) -> "FailureTree":
        """Fit on ``x`` (n, k) and the (n,) failure indicator.

        Args:
            x: (n, k) the selected features of one group.
            failed: (n,) bool, prediction != label.
            feature_indices: (k,) the original index of each column of ``x`` (default
                ``0..k-1``); rules and the JSON export name features by these.
        """
        if not isinstance(self.max_depth, (int, np.integer)) or isinstance(self.max_depth, bool) or self.max_depth < 1:
            raise DebuggableError(f"max_depth: expected a positive integer, got {self.max_depth!r}.")
        if self.criterion not in ("entropy", "gini", "log_loss"):
            raise DebuggableError(f"criterion: expected 'entropy' or 'gini', got {self.criterion!r}.")
        x = np.asarray(x, dtype=np.float32)
        failed = np.asarray(failed).astype(bool)
        if x.ndim != 2 or failed.shape != (x.shape[0],):
            raise DebuggableError(f"x, failed: expected (n, k) and (n,), got {x.shape} and {failed.shape}.")
        if x.shape[0] == 0:
            raise DebuggableError("x: expected at least one example, got none.")
        if not np.isfinite(x).all():
            raise DebuggableError("x: features contain NaN or inf; expected finite values.")
        self.feature_indices_ = (np.arange(x.shape[1]) if feature_indices is None
                                 else np.asarray(feature_indices, dtype=np.int64))
        if self.feature_indices_.shape != (x.shape[1],):
            raise DebuggableError(
                f"feature_indices: expected {x.shape[1]} indices, one per column of x, got {self.feature_indices_.shape}.")
        self.tree_ = DecisionTreeClassifier(
            max_depth=int(self.max_depth), criterion=self.criterion, class_weight="balanced",
            min_samples_leaf=self.min_samples_leaf, random_state=self.random_state,
        ).fit(x, failed.astype(np.int64))
        self.leaf_ = self.tree_.apply(x).astype(np.int64)
        self.metrics_ = leaf_metrics(self.leaf_, failed)
        path = self.tree_.decision_path(x)                    # (n, nodes) sparse indicator
        self.node_n_ = np.asarray(path.sum(axis=0)).ravel().astype(np.int64)
        self.node_failures_ = np.asarray(path.T @ failed.astype(np.int64)).ravel().astype(np.int64)
        self.ber_ = self.metrics_.ber
        self.aler_ = self.metrics_.aler
        self.top_leaf_ = int(self.metrics_.leaves[self.metrics_.top])
        return self

    # -- structure ---------------------------------------------------------------

    def _check(self) -> None:
        if not hasattr(self, "tree_"):
            raise DebuggableError("FailureTree: call fit first.")

    def apply(self, x) -> np.ndarray:
        """(n,) leaf node id of each row of ``x`` (columns as at fit)."""
        self._check()
        return self.tree_.apply(np.asarray(x, dtype=np.float32)).astype(np.int64)

    @property
    def leaves(self) -> np.ndarray:
        """Node ids of the leaves holding training examples, ascending."""
        self._check()
        return self.metrics_.leaves

    def conditions(self, node: int) -> list[tuple[int, str, float]]:
        """The path from the root to ``node`` as ``(original feature, "<=" or ">", threshold)``,
        simplified: several bounds on one feature keep only the tightest of each side."""
        self._check()
        t = self.tree_.tree_
        parent = {}
        for p in range(t.node_count):
            for child, side in ((t.children_left[p], "<="), (t.children_right[p], ">")):
                if child >= 0:
                    parent[int(child)] = (p, side)
        path = []
        cur = int(node)
        while cur in parent:
            p, side = parent[cur]
            path.append((int(self.feature_indices_[t.feature[p]]), side, float(t.threshold[p])))
            cur = p
        path.reverse()
        upper: dict[int, float] = {}
        lower: dict[int, float] = {}
        order: list[int] = []
        for feat, side, thr in path:
            if feat not in order:
                order.append(feat)
            if side == "<=":
                upper[feat] = min(upper.get(feat, np.inf), thr)
            else:
                lower[feat] = max(lower.get(feat, -np.inf), thr)
        out = []
        for feat in order:
            if feat in lower:
                out.append((feat, ">", lower[feat]))
            if feat in upper:
                out.append((feat, "<=", upper[feat]))
        return out

    def rule(self, node: int | None = None, feature_names: Sequence[str] | None = None) -> str:
        """Readable rule of a leaf (default: the top-IV leaf), e.g.
        ``"error rate 10.0% -> 45.0% when feature 1378 <= 0.09 and feature 12 > 0.3"``."""
        self._check()
        node = self.top_leaf_ if node is None else int(node)
        f, n = int(self.node_failures_[node]), int(self.node_n_[node])
        er = f / n if n else 0.0
        conds = self.conditions(node)
        head = f"error rate {self.ber_:.1%} -> {er:.1%}"
        if not conds:
            return f"{head} in the whole group (no split)"

        def name(j: int) -> str:
            if feature_names is not None and 0 <= j < len(feature_names):
                return f"feature {j} ({feature_names[j]})"
            return f"feature {j}"

        merged, i = [], 0
        while i < len(conds):
            feat, side, thr = conds[i]
            if side == ">" and i + 1 < len(conds) and conds[i + 1][0] == feat:
                merged.append(f"{_fmt(thr)} < {name(feat)} <= {_fmt(conds[i + 1][2])}")
                i += 2
                continue
            merged.append(f"{name(feat)} {side} {_fmt(thr)}")
            i += 1
        return f"{head} when " + " and ".join(merged)

    def features_of(self, node: int) -> list[int]:
        """Original indices of the features on the path to ``node``, in path order."""
        return list(dict.fromkeys(c[0] for c in self.conditions(node)))

    def to_dict(self, feature_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The tree as nested JSON-ready dicts; every node carries n, failures, ER, EC, IV,
        and inner nodes their split (original feature index, threshold, ``left`` for
        ``<=``, ``right`` for ``>``); leaves carry their rule."""
        self._check()
        t = self.tree_.tree_
        total_f = self.metrics_.failures_total

        def node(i: int, depth: int) -> dict[str, Any]:
            n, f = int(self.node_n_[i]), int(self.node_failures_[i])
            er = f / n if n else 0.0
            ec = f / total_f if total_f else 0.0
            d: dict[str, Any] = {"id": i, "depth": depth, "n": n, "failures": f, "er": er, "ec": ec, "iv": er * ec}
            if t.children_left[i] >= 0:
                d["feature"] = int(self.feature_indices_[t.feature[i]])
                d["threshold"] = float(t.threshold[i])
                d["left"] = node(int(t.children_left[i]), depth + 1)
                d["right"] = node(int(t.children_right[i]), depth + 1)
            else:
                d["leaf"] = True
                d["rule"] = self.rule(i, feature_names)
            return d

        return node(0, 0)

    def leaf_table(self) -> LeafMetrics:
        """The per-leaf metrics (alias of ``metrics_``)."""
        self._check()
        return self.metrics_
