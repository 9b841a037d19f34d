import numpy as np
import pytest

from debuggable.debug import confusion_matrix, shared_feature_confusion
from debuggable.errors import DebuggableError
from debuggable.layer import SparseDecisionLayer


def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    np.testing.assert_array_equal(confusion_matrix(y, p, 5), sk(y, p, labels=range(5)))


def test_shared_features_ranked_by_weight_products():
    rng = np.random.default_rng(1)
    k, d = 3, 6
    w = np.zeros((k, d))
    w[0, [0, 1, 2]] = [2.0, 1.0, -1.0]
    w[1, [0, 1, 2, 3]] = [1.0, 3.0, -0.5, 1.0]   # shares 0 and 1 (+) and 2 (-) with class 0
    w[2, [4, 5]] = [1.0, 1.0]
    std = np.array([1.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    layer = SparseDecisionLayer(w, np.zeros(k), np.zeros(d), std, ["a", "b", "c"])
    x = rng.normal(size=(400, d))
    y = rng.integers(0, k, 400)
    matrix, pairs = shared_feature_confusion(layer, x, y, top_pairs=3)
    pred = layer.predict(x)
    np.testing.assert_array_equal(matrix, confusion_matrix(y, pred, k))
    ab = next(p for p in pairs if (p.true, p.predicted) == (0, 1))
    ws = w * std
    expected = {j: ab.count * ws[0, j] * ws[1, j] for j in (0, 1, 2)}
    assert [s[0] for s in ab.shared] == sorted(expected, key=lambda j: -expected[j])
    for j, wa, wb, score, contrib in ab.shared:
        assert score == pytest.approx(expected[j])
        rows = (y == 0) & (pred == 1)
        assert contrib == pytest.approx(np.mean(x[rows, j] / std[j]) * ws[1, j])
    assert pairs[0].count == max(matrix[a, b] for a in range(k) for b in range(k) if a != b)
    assert ab.to_dict(["a", "b", "c"])["true_name"] == "a"
    with pytest.raises(DebuggableError, match="top_pairs"):
        shared_feature_confusion(layer, x, y, top_pairs=0)


def test_only_off_diagonal_cells_are_pairs():
    w = np.array([[1.0, 0.0], [-1.0, 0.0]])
    layer = SparseDecisionLayer(w, np.zeros(2), np.zeros(2), np.ones(2), ["neg", "pos"])
    x = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    matrix, pairs = shared_feature_confusion(layer, x, np.array([0, 1, 1, 1]), top_pairs=10)
    assert matrix.tolist() == [[1, 0], [1, 2]]
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(1, 0, 1)]
    assert pairs[0].shared == []  # opposite signs: no shared evidence
