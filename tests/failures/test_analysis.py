"""analyze_failures end to end on synthetic features with planted failure conditions."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from debuggable.errors import DebuggableError
from debuggable.failures import analyze_failures, confusion_group
from debuggable.failures.planted import planted_condition_check

MODE_KEYS = {"class", "grouping", "depth", "features", "rule", "ber", "er", "ec", "iv", "aler", "n", "failures"}


def darkened_benchmark(seed=0, n_per_class=150, classes=4, d=24):
    """A test-only planted covariate: 30% of class 2's images are darkened; the robust
    model's feature 13 measures brightness (low when dark); the inspected model fails on
    70% of the dark images and 5% of the rest. Other classes fail at random (10%)."""
    rng = np.random.default_rng(seed)
    n = n_per_class * classes
    labels = np.repeat(np.arange(classes), n_per_class)
    x = np.abs(rng.standard_normal((n, d))).astype(np.float32)
    dark = (labels == 2) & (rng.random(n) < 0.3)
    x[:, 13] = np.where(dark, rng.uniform(0.0, 0.6, n), rng.uniform(0.4, 2.0, n)).astype(np.float32)
    p_fail = np.where(labels == 2, np.where(dark, 0.7, 0.05), 0.1)
    fails = rng.random(n) < p_fail
    preds = np.where(fails, (labels + 1 + rng.integers(0, classes - 1, n)) % classes, labels)
    return x, labels, preds, dark


def test_planted_darkening_is_found_with_its_feature_and_hand_checked_metrics():
    x, labels, preds, dark = darkened_benchmark()
    res = analyze_failures(x, labels, preds, depths=(1, 2), k=5, progress=False)
    tree = res.find("label=2", 1)
    assert tree.features[0] == 13                                   # highest MI with failure
    assert tree.tree.features_of(tree.top_leaf) == [13]
    assert "feature 13 <=" in tree.tree.rule(tree.top_leaf)        # failures where brightness is low
    failed = labels != preds
    check = planted_condition_check(tree, dark, failed, x)
    assert check["feature_auc"][0]["feature"] == 13 and check["feature_auc"][0]["auc"] < 0.1                    # low brightness <-> darkened
    assert check["condition_in_leaf"] > 0.75 and check["condition_in_group"] < 0.4   # 30% dark in the group
    # ER / EC / BER from the rows of the leaf, by hand.
    rows = tree.indices[tree.tree.leaf_ == tree.top_leaf]
    group = np.flatnonzero(labels == 2)
    er = failed[rows].mean()
    ec = failed[rows].sum() / failed[group].sum()
    assert check["er"] == pytest.approx(er) and check["er_by_hand"] == pytest.approx(er)
    assert check["ec"] == pytest.approx(ec) and check["ber"] == pytest.approx(failed[group].mean())
    # AUC by an independent route
    assert check["feature_auc"][0]["auc"] == pytest.approx(roc_auc_score(dark[group], x[group, 13]))
    # it is a failure mode, and the highest ranked one
    top = res.failure_modes()[0]
    assert top["group"] == "label=2" and 13 in top["features"]


def test_failure_modes_and_valid_fraction_match_a_direct_computation():
    x, labels, preds, _ = darkened_benchmark(seed=1)
    delta, tau = 0.1, 0.2
    res = analyze_failures(x, labels, preds, depths=(1, 3), k=4, delta=delta, tau=tau, progress=False)
    modes = res.failure_modes()
    assert all(MODE_KEYS <= set(m) for m in modes)
    assert [m["iv"] for m in modes] == sorted((m["iv"] for m in modes), reverse=True)
    expected = 0
    table = {}
    for t in res.trees:
        m = t.tree.metrics_
        ok = [(er >= m.ber + delta - 1e-12) and (ec >= tau - 1e-12) and f > 0
              for er, ec, f in zip(m.er, m.ec, m.failures)]
        expected += sum(ok)
        assert sorted(t.valid) == sorted(int(leaf) for leaf, o in zip(m.leaves, ok) if o)
        cell = table.setdefault((t.group["grouping"], str(t.depth)), [0, 0])
        cell[0] += 1
        cell[1] += any(ok)
        for rec in (t.leaf_record(leaf) for leaf in t.valid):
            assert set(rec["features"]) <= set(t.features.tolist())
    assert len(modes) == expected
    vlf = res.valid_leaf_fraction()
    for (g, d), (groups, with_valid) in table.items():
        assert vlf[g][d]["groups"] == groups and vlf[g][d]["fraction"] == pytest.approx(with_valid / groups)


def test_groups_that_cannot_be_analysed_are_skipped_with_a_reason():
    rng = np.random.default_rng(5)
    n = 200
    labels = np.repeat([0, 1, 2, 3], [90, 90, 15, 5])
    preds = labels.copy()
    preds[:30] = 1                                   # class 0 has failures
    preds[90:180] = 0                                # class 1 always fails -> every example fails
    x = rng.random((n, 6)).astype(np.float32)
    res = analyze_failures(x, labels, preds, groupings=("label",), min_group_size=20, progress=False)
    reasons = {s["group"]["name"]: s["reason"] for s in res.skipped}
    assert "fewer than min_group_size=20" in reasons["label=2"] and "15 examples" in reasons["label=2"]
    assert "fewer than min_group_size=20" in reasons["label=3"]
    assert "all 90 examples fail" in reasons["label=1"]
    assert {t.group["name"] for t in res.trees} == {"label=0"}
    preds2 = labels.copy()
    preds2[0] = 1
    res2 = analyze_failures(x, labels, preds2, groupings=("label",), min_group_size=2, progress=False)
    r2 = {s["group"]["name"]: s["reason"] for s in res2.skipped}
    assert r2["label=1"].startswith("no failures") and "fewer than min_failures" in r2["label=0"]
    assert json.loads(json.dumps(res2.to_dict()))["skipped"]


def test_custom_and_confusion_groups():
    x, labels, preds, _ = darkened_benchmark(seed=2)
    pair = confusion_group(labels, preds, [2, 3])
    assert np.all(np.isin(labels[pair.indices], [2, 3])) and np.all(np.isin(preds[pair.indices], [2, 3]))
    mask = labels == 2
    res = analyze_failures(x, labels, preds, groupings=(), groups={"dark-prone": mask}, depths=(1,),
                           progress=False)
    res2 = analyze_failures(x, labels, preds, groupings=(), groups=[pair], depths=(1,), progress=False)
    assert [t.group["name"] for t in res.trees] == ["dark-prone"] and res.trees[0].group["grouping"] == "custom"
    assert res2.trees[0].group["classes"] == [2, 3]
    # the custom group equal to class 2's label group gives the same tree
    ref = analyze_failures(x, labels, preds, groupings=("label",), classes=[2], depths=(1,), progress=False)
    assert res.trees[0].tree.rule() == ref.trees[0].tree.rule()


@pytest.mark.slow
def test_parallel_equals_serial():
    x, labels, preds, _ = darkened_benchmark(seed=3)
    a = analyze_failures(x, labels, preds, depths=(2,), progress=False)
    b = analyze_failures(x, labels, preds, depths=(2,), progress=False, n_jobs=2)
    assert json.dumps(a.to_dict()["trees"]) == json.dumps(b.to_dict()["trees"])


def test_bad_input():
    x, labels, preds, _ = darkened_benchmark()
    with pytest.raises(DebuggableError, match="labels: expected 600 entries"):
        analyze_failures(x, labels[:-1], preds, progress=False)
    with pytest.raises(DebuggableError, match="preds: expected 600 entries"):
        analyze_failures(x, labels, preds[:10], progress=False)
    with pytest.raises(DebuggableError, match=r"features: expected an \(N, D\) array"):
        analyze_failures(x[:, 0], labels, preds, progress=False)
    bad = x.copy()
    bad[123, 4] = np.nan
    with pytest.raises(DebuggableError, match="row 123, column 4 is nan"):
        analyze_failures(bad, labels, preds, progress=False)
    with pytest.raises(DebuggableError, match="groupings"):
        analyze_failures(x, labels, preds, groupings=("labels",), progress=False)
    with pytest.raises(DebuggableError, match="delta"):
        analyze_failures(x, labels, preds, delta=1.5, progress=False)
    with pytest.raises(DebuggableError, match="1-D integer"):
        analyze_failures(x, labels.astype(float), preds, progress=False)
    with pytest.raises(DebuggableError, match="boolean mask must have shape"):
        analyze_failures(x, labels, preds, groups={"g": np.ones(5, bool)}, progress=False)
