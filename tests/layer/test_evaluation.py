from types import SimpleNamespace

import numpy as np

from debuggable.layer import accuracy, masked_accuracy, sparsity_curve, top_k_mask, top_k_table


def data(seed=0, n=300, d=6, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=2.0, scale=3.0, size=(n, d))
    w = rng.normal(size=(k, d)) * (rng.random((k, d)) < 0.7)
    b = rng.normal(size=k)
    y = (x @ w.T + b + rng.normal(scale=2.0, size=(n, k))).argmax(1)
    return x, y, w, b, x.mean(0), x.std(0)


def test_masked_accuracy_equals_replacing_dropped_features_by_their_mean():
    x, y, w, b, mean, std = data()
    drop = np.array([True, False, True, False, False, False])
    keep = np.broadcast_to(~drop, w.shape)
    x_mean = x.copy()
    x_mean[:, drop] = mean[drop]  # the independent oracle: the feature sits at its mean
    assert masked_accuracy(w, b, mean, std, keep, x, y) == accuracy(w, b, x_mean, y)
    assert masked_accuracy(w, b, mean, std, np.ones_like(w, bool), x, y) == accuracy(w, b, x, y)


def test_top_k_mask_picks_largest_standardised_weights():
    _, _, w, _, _, std = data()
    mask = top_k_mask(w, std, 2)
    for c in range(w.shape[0]):
        ws = np.abs(w[c] * std)
        expected = set(np.argsort(-ws)[:2]) & set(np.flatnonzero(ws))
        assert set(np.flatnonzero(mask[c])) == expected


def test_top_k_table_extremes():
    x, y, w, b, mean, std = data()
    rows = top_k_table({"dense": (w, b)}, mean, std, x, y, ks=(1, 6))
    by_k = {r["k"]: r for r in rows}
    # k covers every feature: top-k is the whole layer and "the rest" is the bias at the mean.
    assert by_k[6]["top_k"] == by_k[6]["all"] == accuracy(w, b, x, y)
    constant = (b + w @ mean).argmax()
    assert by_k[6]["rest"] == np.mean(y == constant)
    assert 0.0 <= by_k[1]["top_k"] <= 1.0


def test_sparsity_curve_counts_and_accuracies():
    x, y, w, b, _, _ = data()
    coef = np.stack([np.zeros_like(w), w * (np.abs(w) > 1.0), w])
    path = SimpleNamespace(lambdas=np.array([1.0, 0.1, 0.01]), coef=coef, intercept=np.stack([b, b, b]))
    rows = sparsity_curve(path, x, y)
    assert [r["nnz"] for r in rows] == [0, int(np.count_nonzero(coef[1])), int(np.count_nonzero(w))]
    assert rows[2]["accuracy"] == accuracy(w, b, x, y)
    assert rows[0]["features_per_class"] == 0.0
