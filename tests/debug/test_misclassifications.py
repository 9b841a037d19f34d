import numpy as np
import pytest
import torch

from debuggable.debug import problematic_features
from debuggable.errors import DebuggableError
from debuggable.layer import SparseDecisionLayer


def make_case(seed=0, n=300, k=4, d=12):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d)) * (rng.random((k, d)) < 0.35)
    w[:, 3] = 0.0  # an unused feature
    layer = SparseDecisionLayer(w, rng.normal(size=k), rng.normal(size=d), rng.random(d) + 0.5,
                                [f"c{i}" for i in range(k)])
    x = rng.normal(size=(n, d)) * layer.std + layer.mean
    y = (x @ w.T + layer.bias + rng.normal(scale=2.0, size=(n, k))).argmax(1)  # noisy labels: many errors
    return layer, x, y


def brute_force(layer, x, y):
    """One example and one feature at a time, in NumPy: set the feature to its mean."""
    pred = layer.predict(x)
    used = layer.used_features()
    out = []
    for i in np.flatnonzero(pred != y):
        fixing = []
        for j in used:
            xi = x[i].copy()
            xi[j] = layer.mean[j]
            logits = layer.decision_function(xi[None])[0]
            if logits.argmax() == y[i]:
                others = np.delete(logits, y[i])
                fixing.append((logits[y[i]] - others.max(), j))
        best = max(fixing)[1] if fixing else -1
        out.append((i, len(fixing), best))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_brute_force_loop(seed):
    layer, x, y = make_case(seed)
    res = problematic_features(layer, x, y)
    oracle = brute_force(layer, x, y)
    assert res.num_errors == len(oracle) > 20
    np.testing.assert_array_equal(res.rows, [o[0] for o in oracle])
    np.testing.assert_array_equal(res.fixes, [o[1] for o in oracle])
    np.testing.assert_array_equal(res.feature, [o[2] for o in oracle])
    assert res.explained_fraction == pytest.approx(np.mean([o[2] >= 0 for o in oracle]))
    assert 0 < res.explained_fraction < 1
    assert res.random_fix_rate == pytest.approx(sum(o[1] for o in oracle) / (len(oracle) * layer.used_features().size))
    # per class: counts add up
    per = res.per_class()
    assert sum(p["errors"] for p in per) == res.num_errors
    assert sum(p["explained"] for p in per) == int(res.explained.sum())
    np.testing.assert_array_equal(res.predicted, layer.predict(x)[res.rows])
    # The margin after removal is positive where explained.
    assert np.all(res.margin_after[res.explained] > 0) and np.all(np.isnan(res.margin_after[~res.explained]))


def test_top_features_are_the_largest_contributions():
    layer, x, y = make_case(3)
    res = problematic_features(layer, x, y)
    z = (x - layer.mean) / layer.std
    ws = layer.standardized_weight
    used = layer.used_features()
    for e, i in enumerate(res.rows):
        contrib_p = z[i, used] * ws[res.predicted[e], used]
        contrib_t = z[i, used] * ws[res.labels[e], used]
        assert res.top_feature_predicted[e] == used[contrib_p.argmax()]
        assert res.top_feature_true[e] == used[contrib_t.argmax()]


def test_blocks_and_torch_input_give_the_same_answer(monkeypatch):
    import debuggable.debug.misclassifications as m

    layer, x, y = make_case(4)
    full = problematic_features(layer, x, y)
    monkeypatch.setattr(m, "_BLOCK_ELEMENTS", 7)  # one error per block
    blocked = problematic_features(layer, torch.as_tensor(x), torch.as_tensor(y))
    np.testing.assert_array_equal(full.feature, blocked.feature)
    np.testing.assert_array_equal(full.fixes, blocked.fixes)
    d = full.to_dict(max_examples=3)
    assert d["errors"] == full.num_errors and len(d["cases"]) == 3


def test_hand_computed_two_class_case():
    # logits = [x0 + x1, 0]; class 0 wins when x0 + x1 > 0.
    layer = SparseDecisionLayer(np.array([[1.0, 1.0], [0.0, 0.0]]), np.zeros(2), np.zeros(2), np.ones(2), ["a", "b"])
    x = np.array([[2.0, -1.0],   # pred a, label b: removing x0 -> -1 < 0 fixes; removing x1 -> 2 no
                  [0.5, 0.5],    # pred a, label b: removing either leaves 0.5 > 0: unexplained
                  [-1.0, -1.0]])  # pred b, label b: correct
    res = problematic_features(layer, x, np.array([1, 1, 1]))
    assert res.rows.tolist() == [0, 1]
    assert res.feature.tolist() == [0, -1]
    assert res.margin_after[0] == pytest.approx(1.0)
    assert res.explained_fraction == 0.5


def test_bad_input():
    layer, x, y = make_case()
    with pytest.raises(DebuggableError, match="features: expected shape"):
        problematic_features(layer, x[:, :5], y)
    with pytest.raises(DebuggableError, match="labels"):
        problematic_features(layer, x, y[:-1])
    with pytest.raises(DebuggableError, match="class indices"):
        problematic_features(layer, x, y + 10)
    with pytest.raises(DebuggableError, match="features_to_try"):
        problematic_features(layer, x, y, features_to_try=[99])
    with pytest.raises(DebuggableError, match="0 rows"):
        problematic_features(layer, x[:0], y[:0])
