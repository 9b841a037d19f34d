"""Helpers shared by the loaders: argument checks, stratified splits, atomic writes."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from debuggable.data.base import DatasetSplits, Dataset
from debuggable.errors import DebuggableError


def check_fraction(name: str, value: Any, *, allow_zero: bool = False, allow_one: bool = False) -> float:
    """``value`` as a float in (0, 1) (ends included when allowed), or a DebuggableError."""
    lo = "[0" if allow_zero else "(0"
    hi = "1]" if allow_one else "1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DebuggableError(f"{name} must be a number in {lo}, {hi}, got {value!r}.")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0) and (v <= 1 if allow_one else v < 1)
    if not ok:
        raise DebuggableError(f"{name} must be a number in {lo}, {hi}, got {value!r}.")
    return v


def check_split_fractions(val_fraction: Any, test_fraction: Any) -> tuple[float, float]:
    """Both fractions in (0, 1) with a sum below 1, or a DebuggableError."""
    v = check_fraction("val_fraction", val_fraction)
    t = check_fraction("test_fraction", test_fraction)
    if v + t >= 1.0:
        raise DebuggableError(
            f"val_fraction + test_fraction must be below 1 to leave training data, got {v} + {t} = {v + t:g}."
        )
    return v, t


def check_seed(seed: Any) -> int:
    """``seed`` as a non-negative int, or a DebuggableError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise DebuggableError(f"seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (or None when allowed), or a DebuggableError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        extra = " or None" if allow_none else ""
        raise DebuggableError(f"{name} must be a positive integer{extra}, got {value!r}.")
    return int(value)


def _allocate(counts: np.ndarray, fraction: float, capacity: np.ndarray) -> np.ndarray:
    """Per-class quotas summing to round(fraction * counts.sum()), proportional to
    ``counts`` (largest-remainder rounding, ties to the lower class index) and never
    above ``capacity``."""
    target = int(round(fraction * int(counts.sum())))
    exact = fraction * counts.astype(np.float64)
    quota = np.minimum(np.floor(exact).astype(np.int64), capacity)
    remainder = exact - quota
    order = sorted(range(len(counts)), key=lambda k: (-remainder[k], k))
    missing = target - int(quota.sum())
    while missing > 0:
        progressed = False
        for k in order:
            if missing == 0:
                break
            if quota[k] < capacity[k]:
                quota[k] += 1
                missing -= 1
                progressed = True
        if not progressed:
            break
    return quota


def stratified_partition(
    labels: np.ndarray,
    fractions: Mapping[str, float],
    *,
    seed: int,
    num_classes: int | None = None,
    rest: str = "train",
) -> dict[str, np.ndarray]:
    """Partition row indices by class-stratified shares.

    Each named part gets ``round(fraction * N)`` rows overall, made of every class's
    share (largest-remainder rounding, so each class is within one example of its
    exact share); part ``rest`` gets the remaining rows. Rows are drawn with
    ``numpy.random.default_rng(seed)``.

    Args:
        labels: (N,) integer class labels.
        fractions: part name -> share of all rows, each in (0, 1), summing below 1.
        seed: non-negative integer; the same seed gives the same partition.
        num_classes: K (defaults to ``labels.max() + 1``).
        rest: the name of the part that takes the remainder.

    Returns:
        part name -> int64 row indices in a seeded random order; ``rest`` first, then
        the parts of ``fractions`` in their order. The parts are disjoint and cover
        0..N-1.

    Raises:
        DebuggableError: on a bad fraction or seed, or when a part would be empty.
    """
    fr = {name: check_fraction(f"{name}_fraction", f) for name, f in fractions.items()}
    total = sum(fr.values())
    if total >= 1.0:
        listed = " + ".join(f"{name}_fraction {f}" for name, f in fr.items())
        raise DebuggableError(f"{listed} = {total:g} must be below 1 to leave {rest} data.")
    rng = np.random.default_rng(check_seed(seed))
    labels = np.asarray(labels, dtype=np.int64)
    k = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 0))
    counts = np.bincount(labels, minlength=k)
    capacity = counts.copy()
    quotas = {}
    for name, f in fr.items():
        quotas[name] = _allocate(counts, f, capacity)
        capacity = capacity - quotas[name]
    parts: dict[str, list[np.ndarray]] = {rest: [], **{name: [] for name in fr}}
    for c in range(k):
        rows = rng.permutation(np.flatnonzero(labels == c))
        at = 0
        for name in fr:
            parts[name].append(rows[at: at + quotas[name][c]])
            at += quotas[name][c]
        parts[rest].append(rows[at:])
    out = {}
    for name, chunks in parts.items():
        idx = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        if idx.size == 0:
            share = fr.get(name, 1.0 - total)
            raise DebuggableError(
                f"split {name!r} would be empty: {share:g} of {labels.size} examples rounds to 0; "
                f"expected more examples or a larger fraction."
            )
        out[name] = rng.permutation(idx).astype(np.int64)
    return out


def stratified_split(
    labels: np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row indices into train, val and test, stratified by class.

    Each class contributes its share to val and test (largest-remainder rounding, so
    the split sizes are ``round(fraction * N)`` and every class is within one example
    of its exact share); rows are drawn with ``numpy.random.default_rng(seed)``.

    Args:
        labels: (N,) integer class labels.
        val_fraction: fraction of all rows for ``val``, in (0, 1).
        test_fraction: fraction of all rows for ``test``, in (0, 1); the two fractions
            must sum to less than 1.
        seed: non-negative integer; the same seed gives the same split.
        num_classes: K (defaults to ``labels.max() + 1``).

    Returns:
        ``(train_idx, val_idx, test_idx)``: disjoint int64 arrays covering 0..N-1, each
        in a seeded random order.
    """
    parts = stratified_partition(
        labels, {"test": test_fraction, "val": val_fraction}, seed=seed, num_classes=num_classes
    )
    return parts["train"], parts["val"], parts["test"]


def split_dataset(
    full: Dataset,
    *,
    name: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: Mapping[str, Any] | None = None,
) -> DatasetSplits:
    """A :class:`DatasetSplits` made by :func:`stratified_split` of ``full`` (which must
    have a ``subset`` method); each split's ``source`` records the rule."""
    tr, va, te = stratified_split(
        full.labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, num_classes=full.num_classes
    )
    base = dict(source or {})
    rule = f"stratified by class, seed {seed}, val_fraction {val_fraction}, test_fraction {test_fraction}"
    splits = {}
    for split, idx in (("train", tr), ("val", va), ("test", te)):
        ds = full.subset(idx, name=f"{name}/{split}")  # type: ignore[attr-defined]
        ds.source = {**base, "split": split, "split_rule": rule}
        splits[split] = ds
    return DatasetSplits(name=name, splits=splits, class_names=list(full.class_names))


def limit_per_class_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted row indices keeping at most ``limit`` rows of each class (seeded choice)."""
    rng = np.random.default_rng([check_seed(seed), 7919])
    keep = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if rows.size > limit:
            rows = rng.choice(rows, size=limit, replace=False)
        keep.append(rows)
    return np.sort(np.concatenate(keep)).astype(np.int64)


def cache_root() -> Path:
    """The download cache: ``$DEBUGGABLE_CACHE`` or ``~/.cache/debuggable``."""
    env = os.environ.get("DEBUGGABLE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "debuggable"


def to_jsonable(obj: Any) -> Any:
    """``obj`` with NumPy scalars/arrays, tuples and paths turned into JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_kwargs(what: str, func: Callable, params: Mapping[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise a DebuggableError naming a key of ``params`` that ``func`` does not accept,
    or a parameter without default that ``params`` lacks (``skip`` names ignored ones)."""
    import inspect

    sig = inspect.signature(func)
    accepted = [p for p in sig.parameters if p not in skip and sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise DebuggableError(
            f"{what} got unknown parameter {unknown[0]!r}; valid parameters are {', '.join(accepted)}."
        )
    for p in accepted:
        if sig.parameters[p].default is inspect.Parameter.empty and p not in params:
            raise DebuggableError(f"{what} needs parameter {p!r}; valid parameters are {', '.join(accepted)}.")
