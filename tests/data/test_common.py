"""Stratified splitting and argument checks shared by the loaders."""

from __future__ import annotations

import numpy as np
import pytest

from debuggable.data import stratified_partition, stratified_split
from debuggable.errors import DebuggableError


def _labels():
    # unequal classes: 50, 31, 7 and 2 examples
    return np.repeat(np.arange(4), [50, 31, 7, 2])


def test_split_is_a_partition_with_exact_sizes():
    y = _labels()
    tr, va, te = stratified_split(y, val_fraction=0.1, test_fraction=0.25, seed=3)
    allidx = np.concatenate([tr, va, te])
    assert sorted(allidx.tolist()) == list(range(y.size))  # disjoint and complete
    assert te.size == round(0.25 * y.size) and va.size == round(0.1 * y.size)
    assert all(a.dtype == np.int64 for a in (tr, va, te))


def test_split_is_stratified_within_one_example_per_class():
    y = _labels()
    tr, va, te = stratified_split(y, val_fraction=0.1, test_fraction=0.25, seed=0)
    counts = np.bincount(y)
    for idx, f in ((va, 0.1), (te, 0.25)):
        got = np.bincount(y[idx], minlength=4)
        assert np.all(np.abs(got - f * counts) < 1.0 + 1e-9)


def test_split_is_deterministic_under_the_seed():
    y = _labels()
    a = stratified_split(y, val_fraction=0.2, test_fraction=0.2, seed=5)
    b = stratified_split(y, val_fraction=0.2, test_fraction=0.2, seed=5)
    c = stratified_split(y, val_fraction=0.2, test_fraction=0.2, seed=6)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_partition_with_one_named_part():
    y = _labels()
    parts = stratified_partition(y, {"test": 0.3}, seed=0)
    assert set(parts) == {"train", "test"}
    assert parts["test"].size == round(0.3 * y.size)
    assert np.intersect1d(parts["train"], parts["test"]).size == 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
        ({"val_fraction": 0.0, "test_fraction": 0.2}, "val_fraction"),
        ({"val_fraction": -0.1, "test_fraction": 0.2}, "val_fraction"),
        ({"val_fraction": 0.1, "test_fraction": True}, "test_fraction"),
        ({"val_fraction": 0.1, "test_fraction": float("nan")}, "test_fraction"),
    ],
)
def test_bad_fractions_are_rejected(kwargs, words):
    with pytest.raises(DebuggableError, match=words):
        stratified_split(_labels(), seed=0, **kwargs)


def test_bad_seed_is_rejected():
    with pytest.raises(DebuggableError, match="seed"):
        stratified_split(_labels(), val_fraction=0.1, test_fraction=0.1, seed=-1)


def test_too_few_examples_for_a_split():
    with pytest.raises(DebuggableError, match="'val' would be empty"):
        stratified_split(np.array([0, 1, 0, 1]), val_fraction=0.05, test_fraction=0.5, seed=0)
