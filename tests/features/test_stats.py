"""RunningMoments against NumPy float64 (two-pass np.mean / np.var) as the oracle."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.features.stats import RunningMoments


def _random_partition(n: int, pieces: int, rng: np.random.Generator) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=pieces - 1, replace=False))
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _exact_var(x: np.ndarray) -> np.ndarray:
    """Population variance per column in exact rational arithmetic, then rounded."""
    out = []
    for col in x.T:
        vals = [Fraction(v) for v in col]
        mu = sum(vals) / len(vals)
        out.append(float(sum((v - mu) ** 2 for v in vals) / len(vals)))
    return np.array(out)


def test_matches_numpy_on_random_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 7))
    m = RunningMoments()
    for s in _random_partition(1000, 13, rng):
        m.update(x[s])
    assert m.count == 1000
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(m.var(), x.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.var(ddof=1), x.var(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(m.std(ddof=1), x.std(axis=0, ddof=1), rtol=1e-12)


def test_adversarial_large_offset_small_variance():
    # 1e6 + 1e-3 * z: the naive E[x^2] - E[x]^2 cancels ~12 digits and is garbage.
    rng = np.random.default_rng(1)
    x = 1e6 + 1e-3 * rng.standard_normal((20000, 3))
    oracle = x.var(axis=0)  # NumPy: two-pass in float64
    naive = (x**2).mean(axis=0) - x.mean(axis=0) ** 2
    assert np.max(np.abs(naive - oracle) / oracle) > 1e-2  # the trap is real

    m = RunningMoments()
    for s in _random_partition(len(x), 50, rng):
        m.update(x[s])
    exact_mean = np.array([math.fsum(col) / len(col) for col in x.T])  # correctly rounded
    np.testing.assert_allclose(m.mean, exact_mean, rtol=1e-15)
    np.testing.assert_allclose(m.var(), oracle, rtol=1e-8)

    # Against exact rational arithmetic (NumPy's own np.var is off by ~1e-10 here),
    # fed row by row: the worst case for the merge formula.
    small = x[:1500, :2]
    r = RunningMoments()
    for row in small:
        r.update(row[None])
    np.testing.assert_allclose(r.var(), _exact_var(small), rtol=1e-13)
    np.testing.assert_allclose(m.var()[:1], _exact_var(x[:, :1]), rtol=1e-13)


def test_float32_input_is_accumulated_in_float64():
    rng = np.random.default_rng(2)
    x32 = (1e4 + 1e-2 * rng.standard_normal((50000, 4))).astype(np.float32)
    x64 = x32.astype(np.float64)
    m = RunningMoments()
    for s in _random_partition(len(x32), 20, rng):
        m.update(x32[s])
    assert m.mean.dtype == np.float64
    np.testing.assert_allclose(m.mean, x64.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(m.var(), x64.var(axis=0), rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_merge_in_any_partition_and_order(seed):
    rng = np.random.default_rng(seed)
    x = 5e5 + rng.standard_normal((3000, 5)) * rng.uniform(1e-3, 10, size=5)
    parts = [RunningMoments.from_block(x[s]) for s in _random_partition(len(x), int(rng.integers(2, 40)), rng)]
    rng.shuffle(parts)
    flat = RunningMoments.combine(parts)
    # pairwise tree merge of the same pieces
    level = [p.copy() for p in parts]
    while len(level) > 1:
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    for m in (flat, level[0]):
        assert m.count == len(x)
        np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(m.var(), x.var(axis=0), rtol=1e-9)


def test_same_pieces_same_order_is_bit_identical():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((999, 6)).astype(np.float32)
    pieces = _random_partition(len(x), 9, rng)
    a = RunningMoments.combine(RunningMoments.from_block(x[s]) for s in pieces)
    b = RunningMoments.combine(RunningMoments.from_block(x[s].copy()) for s in pieces)
    assert a == b
    assert a.mean.tobytes() == b.mean.tobytes() and a.m2.tobytes() == b.m2.tobytes()


def test_torch_inputs_agree_with_numpy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    a = RunningMoments().update(x[:120]).update(x[120:])
    b = RunningMoments().update(torch.from_numpy(x[:120])).update(torch.from_numpy(x[120:]))
    assert a == b
    c = RunningMoments().update(torch.from_numpy(x).to(torch.bfloat16))
    np.testing.assert_allclose(c.mean, x.mean(axis=0), atol=2e-2)


def test_nd_rows_empty_blocks_and_serialisation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 2, 3))
    m = RunningMoments().update(x[:0]).update(x[:25]).update(x[25:])
    np.testing.assert_allclose(m.var(), x.var(axis=0), rtol=1e-12)
    assert m.shape == (2, 3)
    back = RunningMoments.from_dict(m.to_dict())
    assert back == m  # JSON floats round-trip exactly
    assert np.all(np.isnan(RunningMoments((3,)).mean))
    assert np.all(np.isnan(RunningMoments().update(x[:1]).var(ddof=1)))


def test_errors_are_clear():
    with pytest.raises(DebuggableError, match="no rows"):
        RunningMoments().mean
    with pytest.raises(DebuggableError, match="shape"):
        RunningMoments().update(np.zeros((2, 3))).update(np.zeros((2, 4)))
    with pytest.raises(DebuggableError, match="ddof"):
        RunningMoments().update(np.zeros((2, 3))).var(ddof=-1)
    with pytest.raises(DebuggableError, match="scalar"):
        RunningMoments().update(np.float64(1.0))
    with pytest.raises(DebuggableError, match="RunningMoments"):
        RunningMoments().merge(np.zeros(3))
