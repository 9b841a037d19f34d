"""Each metric on hand-made arrays with known answers, and against SciPy / scikit-learn."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata as scipy_rankdata
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from debuggable.errors import DebuggableError
from debuggable.explain_tests.metrics import (
    bootstrap_ci,
    hog_similarity,
    pearson,
    rankdata,
    region_mass,
    roc_auc,
    spearman,
    spearman_abs,
    ssim,
)


def test_region_mass_by_hand():
    attr = np.zeros((2, 1, 4, 4))
    attr[0, 0, 0, 0] = 3.0
    attr[0, 0, 3, 3] = -1.0  # absolute value counts
    attr[1, 0, 1, 1] = 2.0
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    np.testing.assert_allclose(region_mass(attr, mask), [0.75, 1.0])
    # Channels are summed in absolute value; per-image masks work too.
    two = np.stack([attr[0, 0], -attr[0, 0]])[None]  # (1, 2, 4, 4)
    np.testing.assert_allclose(region_mass(two, mask[None]), [0.75])
    # An all-zero map has no share: NaN.
    assert np.isnan(region_mass(np.zeros((1, 4, 4)), mask)[0])
    with pytest.raises(DebuggableError, match="mask"):
        region_mass(attr, np.ones((3, 3), dtype=bool))


def test_rankdata_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(5, 30)).astype(float)
    np.testing.assert_allclose(rankdata(torch.from_numpy(x)).numpy(), scipy_rankdata(x, axis=1))
    np.testing.assert_allclose(rankdata(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).numpy(), [[3.5, 1, 3.5, 2]])


def test_spearman_against_scipy_and_by_hand():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 1, 6, 6))
    b = a + rng.normal(scale=0.7, size=a.shape)
    want = [spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel())[0] for i in range(4)]
    np.testing.assert_allclose(spearman_abs(a, b), want, atol=1e-12)
    want_signed = [spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(4)]
    np.testing.assert_allclose(spearman(a, b), want_signed, atol=1e-12)
    # Monotone transforms keep rank correlation at exactly 1; reversed order gives -1.
    x = np.arange(1.0, 17.0).reshape(1, 4, 4)
    assert spearman_abs(x, x ** 3)[0] == pytest.approx(1.0)
    assert spearman_abs(x, 1.0 / x)[0] == pytest.approx(-1.0)
    # Sign flips do not matter for the absolute version, and do for the signed one.
    assert spearman_abs(x, -x)[0] == pytest.approx(1.0)
    assert spearman(x, -x)[0] == pytest.approx(-1.0)
    # A constant map has no rank correlation.
    assert np.isnan(spearman_abs(x, np.ones_like(x))[0])


def test_pearson_by_hand():
    a = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(pearson(a, np.array([[2.0, 4.0, 6.0]])), [1.0])
    np.testing.assert_allclose(pearson(a, np.array([[1.0, 0.0, 1.0]])), [0.0], atol=1e-12)


def _global_ssim(x, y, c1=1e-4, c2=9e-4):
    n = x.size
    mx, my = x.mean(), y.mean()
    vx, vy = x.var() * n / (n - 1), y.var() * n / (n - 1)
    cxy = ((x - mx) * (y - my)).sum() / (n - 1)
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


def test_ssim_closed_form_on_one_window():
    # On 7x7 maps the 7x7 window fits once: SSIM is the global formula. Maps with
    # maximum exactly 1 are left unchanged by normalisation at percentile 100.
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(7, 7))
    b = np.clip(a + rng.normal(scale=0.2, size=(7, 7)), 0, None)
    a, b = a / a.max(), b / b.max()
    got = ssim(a[None], b[None], percentile=100.0)[0]
    assert got == pytest.approx(_global_ssim(a, b), rel=1e-6)  # maps pass through float32
    assert ssim(a[None], a[None])[0] == pytest.approx(1.0)


def test_hog_similarity_identical_scaled_and_rotated():
    stripes = np.zeros((16, 16))
    stripes[:, ::4] = 1.0
    stripes[:, 1::4] = 1.0
    assert hog_similarity(stripes[None], stripes[None])[0] == pytest.approx(1.0)
    assert hog_similarity(stripes[None], 0.5 * stripes[None])[0] == pytest.approx(1.0)  # scale-free after normalising
    assert hog_similarity(stripes[None], stripes.T[None])[0] < 0.2  # vertical vs horizontal edges


def test_roc_auc_matches_sklearn_and_hand():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)  # ties count one half
    rng = np.random.default_rng(3)
    s, y = rng.normal(size=50).round(1), rng.integers(0, 2, 50)
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(DebuggableError, match="positives"):
        roc_auc([1, 2], [1, 1])


def test_bootstrap_ci_known_cases():
    # Constant data: every replicate equals the value.
    v, lo, hi = bootstrap_ci(np.mean, [np.full(10, 2.5)], n_boot=50)
    assert (v, lo, hi) == (2.5, 2.5, 2.5)
    # The interval of a mean brackets it and approaches the normal interval.
    rng = np.random.default_rng(4)
    x = rng.normal(loc=1.0, size=400)
    v, lo, hi = bootstrap_ci(np.mean, [x], n_boot=2000, seed=1)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert v == pytest.approx(x.mean())
    assert lo == pytest.approx(v - 1.96 * se, abs=0.25 * se) and hi == pytest.approx(v + 1.96 * se, abs=0.25 * se)
    # Paired differences of identical samples are exactly zero; NaNs are dropped.
    y = np.r_[x[:-1], np.nan]
    assert bootstrap_ci(lambda a, b: float(np.mean(a - b)), [y, y], paired=True, n_boot=20) == (0.0, 0.0, 0.0)
    assert np.isnan(bootstrap_ci(np.mean, [np.array([np.nan])])[0])
    assert np.isnan(bootstrap_ci(np.mean, [x], n_boot=0)[1])
    with pytest.raises(DebuggableError, match="ci"):
        bootstrap_ci(np.mean, [x], ci=95)


def test_vectorised_bootstrap_paths_match_the_loop():
    from debuggable.explain_tests.metrics import safe_auc

    rng = np.random.default_rng(5)
    s, y = rng.normal(size=30), rng.integers(0, 2, 30).astype(bool)
    v, lo, hi = bootstrap_ci(safe_auc, [s, y], paired=True, n_boot=300, seed=2)
    # The same replicates through the generic loop (a wrapper is not special-cased).
    v2, lo2, hi2 = bootstrap_ci(lambda a, b: safe_auc(a, b), [s, y], paired=True, n_boot=300, seed=2)
    assert v == pytest.approx(roc_auc_score(y, s)) and v2 == v
    assert lo < v < hi and abs(lo - lo2) < 0.08 and abs(hi - hi2) < 0.08
    x = rng.normal(size=50)
    m = bootstrap_ci(np.mean, [x], n_boot=300, seed=0)
    m2 = bootstrap_ci(lambda a: float(np.mean(a)), [x], n_boot=300, seed=0)
    assert m[0] == m2[0] and abs(m[1] - m2[1]) < 0.1 and abs(m[2] - m2[2]) < 0.1
