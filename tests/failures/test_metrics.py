"""Barlow's metrics against a direct computation from leaf assignments."""

import numpy as np
import pytest

from debuggable.errors import DebuggableError
from debuggable.failures import leaf_metrics


def direct(leaf_ids, failed):
    """The definitions, one leaf at a time, in plain Python."""
    n_total, f_total = len(failed), sum(bool(f) for f in failed)
    out = {}
    for leaf in sorted(set(int(v) for v in leaf_ids)):
        members = [bool(f) for lid, f in zip(leaf_ids, failed) if lid == leaf]
        n, f = len(members), sum(members)
        er = f / n
        ec = f / f_total if f_total else 0.0
        out[leaf] = (n, f, er, ec, er * ec)
    aler = sum(v[3] * v[2] for v in out.values())
    return out, f_total / n_total, aler


def check(leaf_ids, failed):
    m = leaf_metrics(np.asarray(leaf_ids), np.asarray(failed))
    per_leaf, ber, aler = direct(list(leaf_ids), list(failed))
    assert m.leaves.tolist() == list(per_leaf)
    for i, leaf in enumerate(m.leaves):
        n, f, er, ec, iv = per_leaf[int(leaf)]
        assert (m.n[i], m.failures[i]) == (n, f)
        assert m.er[i] == pytest.approx(er) and m.ec[i] == pytest.approx(ec) and m.iv[i] == pytest.approx(iv)
    assert m.ber == pytest.approx(ber) and m.aler == pytest.approx(aler)
    assert m.n.sum() == len(failed) and m.failures.sum() == sum(failed)
    return m


def test_random_partitions_match_the_definitions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 200))
        leaves = rng.integers(0, int(rng.integers(1, 9)), size=n) * 3 + 1  # arbitrary, non-contiguous ids
        failed = rng.random(n) < rng.random()
        m = check(leaves, failed)
        if failed.any():
            assert m.ec.sum() == pytest.approx(1.0)          # every failure lies in exactly one leaf
            assert m.aler >= m.ber - 1e-12                  # Proposition 1: some leaf has ER >= ALER >= BER


def test_no_failures_in_the_group():
    m = check([0, 0, 1, 2, 2], [False] * 5)
    assert m.ber == 0 and m.aler == 0
    assert np.all(m.ec == 0) and np.all(m.iv == 0) and np.all(m.er == 0)
    assert not m.valid(0.0, 0.0).any()                      # no failures: no failure mode


def test_all_failures():
    m = check([0, 0, 1, 2, 2, 2], [True] * 6)
    assert m.ber == 1 and m.aler == pytest.approx(1.0)
    np.testing.assert_allclose(m.er, 1.0)
    np.testing.assert_allclose(m.ec, [2 / 6, 1 / 6, 3 / 6])


def test_one_sample_leaf():
    m = check([5, 5, 5, 5, 9], [False, True, False, False, True])
    i = int(np.flatnonzero(m.leaves == 9)[0])
    assert (m.n[i], m.failures[i], m.er[i], m.ec[i], m.iv[i]) == (1, 1, 1.0, 0.5, 0.5)
    assert m.aler == pytest.approx(0.25 * 0.5 + 1.0 * 0.5)
    # The one-sample leaf ties on IV with nothing; it is the top leaf.
    assert m.leaves[m.top] == 9


def test_top_leaf_ties_break_on_error_rate_then_size():
    # leaf 0: ER 1/2, EC 1/2 -> IV 1/4; leaf 1: ER 1/4, EC 1/1? no: build exact ties.
    leaves = [0, 0, 1, 1, 1, 1, 2, 2]
    failed = [1, 0, 1, 1, 0, 0, 0, 0]
    m = leaf_metrics(np.array(leaves), np.array(failed, dtype=bool))
    # leaf 0: ER .5, EC 1/3, IV 1/6; leaf 1: ER .5, EC 2/3, IV 1/3 -> top is leaf 1
    assert m.leaves[m.top] == 1


def test_valid_leaves_use_both_thresholds():
    # group BER 0.3; leaf 0: ER 0.8 EC 4/6; leaf 1: ER 2/15 EC 2/6
    leaves = np.array([0] * 5 + [1] * 15)
    failed = np.array([1, 1, 1, 1, 0] + [1, 1] + [0] * 13, dtype=bool)
    m = check(leaves, failed)
    assert m.ber == pytest.approx(0.3)
    assert m.valid(0.1, 0.1).tolist() == [True, False]
    assert m.valid(0.5, 0.1).tolist() == [True, False]      # 0.8 >= 0.3 + 0.5 exactly (tolerance)
    assert m.valid(0.51, 0.1).tolist() == [False, False]
    assert m.valid(0.1, 0.7).tolist() == [False, False]      # EC 0.667 < 0.7


def test_bad_input():
    with pytest.raises(DebuggableError, match="same length"):
        leaf_metrics(np.array([0, 1, 1]), np.array([True, False]))
    with pytest.raises(DebuggableError, match="at least one example"):
        leaf_metrics(np.array([], dtype=int), np.array([], dtype=bool))
    with pytest.raises(DebuggableError, match="boolean"):
        leaf_metrics(np.array([0, 1]), np.array([0, 2]))
    with pytest.raises(DebuggableError, match="integer leaf ids"):
        leaf_metrics(np.array([0.5, 1.0]), np.array([0, 1]))
