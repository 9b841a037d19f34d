"""Percentile bootstrap over examples: one implementation for every package.

:func:`bootstrap_ci` gives a statistic and its percentile interval;
:func:`bootstrap_replicates` gives the replicates themselves (for a standard error or
a custom interval); :func:`percentile_interval` turns replicates into an interval.
NumPy only, so light modules (the study scoring) can use it without importing torch.

A statistic can come with a vectorised form that scores every replicate at once:
``vectorized(*resampled)`` receives each sample indexed by an ``(n_boot, n)`` index
matrix (so a 1-d sample arrives as ``(n_boot, n)``, a 2-d one as ``(n_boot, n, k)``)
and returns the ``(n_boot,)`` replicates. ``np.mean`` of one 1-d sample is vectorised
automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError


def check_confidence(name: str, value: Any) -> float:
    """``value`` as a float in (0, 1), or a :class:`DebuggableError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < float(value) < 1:
        raise DebuggableError(f"{name}: got {value!r}, expected a coverage in (0, 1) such as 0.95.")
    return float(value)


def check_n_boot(name: str, value: Any, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``, or a :class:`DebuggableError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise DebuggableError(f"{name}: got {value!r}, expected {what}.")
    return int(value)


def _prepare(samples: Sequence[Any], paired: bool) -> list[np.ndarray]:
    arrays = [np.asarray(s) for s in samples]
    if not arrays:
        raise DebuggableError("samples: got none, expected at least one array.")
    if paired:
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise DebuggableError(f"samples: paired samples need equal lengths, got {[a.shape[0] for a in arrays]}.")
        keep = np.ones(n, dtype=bool)
        for a in arrays:
            if a.ndim == 1 and np.issubdtype(a.dtype, np.floating):
                keep &= np.isfinite(a)
        return [a[keep] for a in arrays]
    return [a[np.isfinite(a)] if a.ndim == 1 and np.issubdtype(a.dtype, np.floating) else a for a in arrays]


def bootstrap_replicates(
    statistic: Callable[..., float],
    samples: Sequence[Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    paired: bool = False,
    vectorized: Callable[..., np.ndarray] | None = None,
) -> tuple[float, np.ndarray]:
    """A statistic on the data and on ``n_boot`` resamples of its examples.

    Args:
        statistic: ``statistic(*samples) -> float``.
        samples: one or more arrays whose first axis indexes examples. Non-finite
            entries of 1-d float samples are dropped first (for ``paired``, the
            examples where any sample is non-finite).
        n_boot: bootstrap replicates, >= 0.
        seed: seeds the resampling (NumPy ``default_rng``).
        paired: resample the same example indices in every sample (equal lengths);
            otherwise each sample is resampled on its own.
        vectorized: optional ``vectorized(*resampled) -> (n_boot,)``, the statistic
            of every replicate at once (see the module docstring); it must agree
            with ``statistic`` replicate by replicate.

    Returns:
        ``(value, replicates)``: the statistic on the data and a ``(n_boot,)`` float64
        array (may hold NaN where the statistic is undefined on a resample). ``value``
        is NaN and ``replicates`` empty when a sample is empty.
    """
    n_boot = check_n_boot("n_boot", n_boot)
    arrays = _prepare(samples, paired)
    if any(a.shape[0] == 0 for a in arrays):
        return float("nan"), np.empty(0)
    value = float(statistic(*arrays))
    if n_boot == 0:
        return value, np.empty(0)
    rng = np.random.default_rng(seed)
    if vectorized is None and statistic is np.mean and len(arrays) == 1 and arrays[0].ndim == 1:
        vectorized = _row_means
    if vectorized is not None:
        if paired or len(arrays) == 1:
            idx = rng.integers(0, arrays[0].shape[0], (n_boot, arrays[0].shape[0]))
            reps = vectorized(*(a[idx] for a in arrays))
        else:
            reps = vectorized(*(a[rng.integers(0, a.shape[0], (n_boot, a.shape[0]))] for a in arrays))
        return value, np.asarray(reps, dtype=np.float64).reshape(n_boot)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        if paired:
            idx = rng.integers(0, arrays[0].shape[0], arrays[0].shape[0])
            reps[i] = statistic(*(a[idx] for a in arrays))
        else:
            reps[i] = statistic(*(a[rng.integers(0, a.shape[0], a.shape[0])] for a in arrays))
    return value, reps


def _row_means(a: np.ndarray) -> np.ndarray:
    return a.mean(1)


def percentile_interval(replicates: Any, ci: float = 0.95) -> tuple[float, float]:
    """The central ``ci`` percentile interval of bootstrap replicates, non-finite ones ignored.

    Returns:
        ``(low, high)``: the ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles (NumPy's
        linear interpolation); NaN, NaN when no replicate is finite.
    """
    ci = check_confidence("ci", ci)
    reps = np.asarray(replicates, dtype=np.float64).ravel()
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    return float(np.quantile(reps, alpha)), float(np.quantile(reps, 1.0 - alpha))


def bootstrap_ci(
    statistic: Callable[..., float],
    samples: Sequence[Any],
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    paired: bool = False,
    vectorized: Callable[..., np.ndarray] | None = None,
) -> tuple[float, float, float]:
    """A statistic and its percentile bootstrap interval, resampling examples.

    Args:
        statistic, samples, n_boot, seed, paired, vectorized: as in
            :func:`bootstrap_replicates` (``n_boot=0`` gives no interval: NaN bounds).
        ci: interval coverage in (0, 1).

    Returns:
        ``(value, low, high)``: the statistic on the data and the interval's ends;
        all NaN when a sample is empty.
    """
    check_n_boot("n_boot", n_boot)
    ci = check_confidence("ci", ci)
    value, reps = bootstrap_replicates(statistic, samples, n_boot=n_boot, seed=seed, paired=paired,
                                       vectorized=vectorized)
    if reps.size == 0:
        return value, float("nan"), float("nan")
    low, high = percentile_interval(reps, ci)
    return value, low, high
