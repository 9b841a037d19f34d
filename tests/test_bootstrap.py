"""The shared percentile bootstrap: the vectorised hook gives the loop's replicates."""

import numpy as np
import pytest

from debuggable.bootstrap import bootstrap_ci, bootstrap_replicates, percentile_interval
from debuggable.errors import DebuggableError


def test_vectorised_replicates_equal_the_statistic_on_the_same_resamples():
    rng = np.random.default_rng(0)
    s, t = rng.integers(0, 10, 12), np.full(12, 10)
    value, reps = bootstrap_replicates(lambda a, b: a.sum() / b.sum(), [s, t], n_boot=300, seed=4, paired=True,
                                       vectorized=lambda a, b: a.sum(1) / b.sum(1))
    idx = np.random.default_rng(4).integers(0, 12, (300, 12))
    assert value == pytest.approx(s.sum() / t.sum())
    assert reps == pytest.approx(np.array([s[i].sum() / t[i].sum() for i in idx]))
    # 2-d samples arrive as (n_boot, n, k).
    x = rng.normal(size=(20, 3))
    _, reps2 = bootstrap_replicates(lambda a: a[:, 0].mean(), [x], n_boot=50, seed=1,
                                    vectorized=lambda a: a[:, :, 0].mean(1))
    idx = np.random.default_rng(1).integers(0, 20, (50, 20))
    assert reps2 == pytest.approx(np.array([x[i, 0].mean() for i in idx]))


def test_percentile_interval_ignores_undefined_replicates():
    reps = np.r_[np.arange(101.0), np.nan, np.inf]
    assert percentile_interval(reps, 0.9) == (pytest.approx(5.0), pytest.approx(95.0))
    assert all(np.isnan(percentile_interval([np.nan], 0.9)))
    with pytest.raises(DebuggableError, match="ci"):
        percentile_interval(reps, 1.5)
    assert np.isnan(bootstrap_ci(np.mean, [np.array([])])[0])
