"""FailureTree: metrics per node against scikit-learn's own tree and direct counts; rules
that name ORIGINAL feature indices and reproduce each leaf's membership exactly."""

import re

import numpy as np
import pytest

from debuggable.errors import DebuggableError
from debuggable.failures import FailureTree

from tests.failures.test_metrics import direct


def rule_mask(rule: str, x_full: np.ndarray) -> np.ndarray:
    """Evaluate a rule's text on the FULL feature matrix (so indices must be original)."""
    mask = np.ones(x_full.shape[0], dtype=bool)
    if " when " not in rule:
        return mask
    for cond in rule.split(" when ", 1)[1].split(" and "):
        m = re.fullmatch(r"(\S+) < feature (\d+) <= (\S+)", cond)
        if m:
            lo, j, hi = float(m[1]), int(m[2]), float(m[3])
            mask &= (x_full[:, j] > lo) & (x_full[:, j] <= hi)
            continue
        m = re.fullmatch(r"feature (\d+) (<=|>) (\S+)", cond)
        assert m, cond
        j, op, t = int(m[1]), m[2], float(m[3])
        mask &= (x_full[:, j] <= t) if op == "<=" else (x_full[:, j] > t)
    return mask


def planted(n=400, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d)).astype(np.float32)
    failed = ((x[:, 7] > 0.6) & (rng.random(n) < 0.8)) | (rng.random(n) < 0.05)
    return x, failed


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_metrics_match_sklearn_counts_and_direct_computation(depth):
    x, failed = planted()
    cols = np.array([7, 2, 9, 0])
    t = FailureTree(depth, min_samples_leaf=1).fit(x[:, cols], failed, feature_indices=cols)
    sk = t.tree_.tree_
    np.testing.assert_array_equal(t.node_n_, sk.n_node_samples)        # scikit-learn's own counts
    leaf_ids = t.tree_.apply(x[:, cols])
    per_leaf, ber, aler = direct(leaf_ids.tolist(), failed.tolist())
    m = t.metrics_
    assert m.leaves.tolist() == list(per_leaf)
    for i, leaf in enumerate(m.leaves):
        n, f, er, ec, iv = per_leaf[int(leaf)]
        assert (m.n[i], m.failures[i]) == (n, f) and m.iv[i] == pytest.approx(iv)
        assert t.node_failures_[leaf] == f
    assert t.ber_ == pytest.approx(ber) and t.aler_ == pytest.approx(aler)
    assert t.top_leaf_ == int(m.leaves[np.argmax(m.iv)])
    assert t.tree_.get_params()["class_weight"] == "balanced" and t.tree_.get_depth() <= depth


def test_rules_use_original_indices_and_reproduce_leaf_membership():
    x, failed = planted(n=600, d=40, seed=1)
    cols = np.array([31, 7, 3, 19])              # the selected subset, in MI order
    t = FailureTree(3, min_samples_leaf=1).fit(x[:, cols], failed, feature_indices=cols)
    for leaf in t.leaves:
        rule = t.rule(leaf)
        assert rule.startswith(f"error rate {t.ber_:.1%} -> ")
        members = t.leaf_ == leaf
        np.testing.assert_array_equal(rule_mask(rule, x), members)     # evaluated on the full matrix
        for j in t.features_of(leaf):
            assert j in cols.tolist()
    # the planted feature (original index 7) defines the top leaf, not its subset position 1
    assert 7 in t.features_of(t.top_leaf_)
    assert "feature 7 >" in t.rule()


def test_two_bounds_on_one_feature_are_merged_into_an_interval():
    rng = np.random.default_rng(2)
    x = rng.random((800, 1)).astype(np.float32)
    failed = (x[:, 0] > 0.4) & (x[:, 0] <= 0.7)
    t = FailureTree(2, min_samples_leaf=1).fit(x, failed, feature_indices=[5])
    rule = t.rule()
    assert re.search(r"\S+ < feature 5 <= \S+$", rule), rule
    assert t.metrics_.er[t.metrics_.top] == 1.0 and t.metrics_.ec[t.metrics_.top] == 1.0
    full = np.zeros((800, 6), np.float32)
    full[:, 5] = x[:, 0]
    np.testing.assert_array_equal(rule_mask(rule, full), t.leaf_ == t.top_leaf_)


def test_json_tree_is_consistent():
    x, failed = planted(seed=3)
    t = FailureTree(3).fit(x[:, [7, 1]], failed, feature_indices=[7, 1])
    root = t.to_dict()
    assert root["n"] == len(failed) and root["failures"] == failed.sum() and root["ec"] == pytest.approx(1.0)

    def walk(node):
        if node.get("leaf"):
            assert node["iv"] == pytest.approx(node["er"] * node["ec"])
            return [node]
        assert node["feature"] in (7, 1)
        left, right = node["left"], node["right"]
        assert left["n"] + right["n"] == node["n"] and left["failures"] + right["failures"] == node["failures"]
        assert left["depth"] == node["depth"] + 1
        return walk(left) + walk(right)

    leaves = walk(root)
    assert sum(leaf["ec"] for leaf in leaves) == pytest.approx(1.0)
    assert sum(leaf["ec"] * leaf["er"] for leaf in leaves) == pytest.approx(t.aler_)


def test_no_useful_split_gives_a_single_leaf():
    x = np.ones((30, 2), np.float32)
    failed = np.arange(30) < 10
    t = FailureTree(2).fit(x, failed, feature_indices=[4, 8])
    assert t.leaves.tolist() == [0]
    assert t.rule() == "error rate 33.3% -> 33.3% in the whole group (no split)"
    assert t.aler_ == pytest.approx(t.ber_)


def test_bad_input():
    x, failed = planted(n=50)
    with pytest.raises(DebuggableError, match="max_depth"):
        FailureTree(0).fit(x, failed)
    with pytest.raises(DebuggableError, match=r"\(n, k\) and \(n,\)"):
        FailureTree(1).fit(x, failed[:-1])
    with pytest.raises(DebuggableError, match="feature_indices"):
        FailureTree(1).fit(x[:, :3], failed, feature_indices=[1, 2])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DebuggableError, match="NaN"):
        FailureTree(1).fit(bad, failed)
    with pytest.raises(DebuggableError, match="call fit first"):
        FailureTree(1).rule()
