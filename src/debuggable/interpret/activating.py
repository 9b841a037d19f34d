"""Most- and least-activating examples of one deep feature, streamed in row blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_feature, check_int


@dataclass(frozen=True)
class ActivatingExamples:
    """The k rows where a feature is largest (or smallest).

    Attributes:
        feature: the feature index j.
        indices: (k,) int64 row indices, most extreme first (ties: lower row first).
        values: (k,) float64 activations of feature j at those rows.
        bottom: ``True`` for the least-activating rows (ascending values).
        n_rows: N, the rows searched.
    """

    feature: int
    indices: np.ndarray
    values: np.ndarray
    bottom: bool = False
    n_rows: int = 0

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "bottom": self.bottom, "n_rows": self.n_rows,
                "indices": self.indices.tolist(), "values": self.values.tolist()}


def _shape_of(features: Any) -> tuple[int, int]:
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2:
        got = tuple(shape) if shape is not None else type(features).__name__
        raise DebuggableError(
            f"features: got {got}, expected an (N, D) array or tensor or a debuggable.features SplitReader."
        )
    return int(shape[0]), int(shape[1])


def _column_blocks(features: Any, feature: int, block_rows: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(row_start, column j of the block as float64) over all rows."""
    if hasattr(features, "iter_blocks"):
        for lo, block in features.iter_blocks("features", block_rows=block_rows):
            yield lo, np.asarray(block[:, feature], dtype=np.float64)
        return
    n = int(features.shape[0])
    step = block_rows or max(1, n)
    for lo in range(0, n, step):
        col = features[lo : lo + step, feature]
        if isinstance(col, torch.Tensor):
            col = col.detach().to("cpu", torch.float64).numpy()
        yield lo, np.asarray(col, dtype=np.float64)


def most_activating(
    features: Any,
    feature: int,
    k: int = 16,
    *,
    bottom: bool = False,
    block_rows: int | None = None,
) -> ActivatingExamples:
    """The ``k`` rows on which feature ``feature`` is largest (``bottom``: smallest).

    Streams the rows in blocks and keeps only the running top ``k``, so a feature
    store larger than memory is fine.

    Args:
        features: (N, D) NumPy array or torch tensor, or a
            :class:`debuggable.features.SplitReader` (read block by block).
        feature: j, in ``0..D-1``.
        k: how many rows; capped at N.
        bottom: return the least-activating rows instead (ascending).
        block_rows: rows per block (default: one store chunk, or everything for an array).

    Returns:
        :class:`ActivatingExamples` with ``indices`` (k,) and ``values`` (k,), ordered
        from the most extreme; ties go to the lower row index (as a stable sort).

    Raises:
        DebuggableError: for a feature index out of range, ``k < 1``, no rows, or
            non-finite activations.
    """
    n, d = _shape_of(features)
    feature = check_feature(feature, d)
    k = check_int("k", k, minimum=1)
    if n == 0:
        raise DebuggableError("features: got 0 rows; expected at least one example to rank.")
    if block_rows is not None:
        block_rows = check_int("block_rows", block_rows, minimum=1)
    k = min(k, n)
    sign = 1.0 if bottom else -1.0  # sort ascending on sign * value
    best_idx = np.zeros(0, dtype=np.int64)
    best_val = np.zeros(0, dtype=np.float64)
    for lo, col in _column_blocks(features, feature, block_rows):
        if not np.all(np.isfinite(col)):
            bad = lo + int(np.flatnonzero(~np.isfinite(col))[0])
            raise DebuggableError(f"features: row {bad} has a non-finite value of feature {feature}; expected finite activations.")
        idx = np.concatenate([best_idx, lo + np.arange(col.shape[0], dtype=np.int64)])
        val = np.concatenate([best_val, col])
        order = np.lexsort((idx, sign * val))[:k]
        best_idx, best_val = idx[order], val[order]
    return ActivatingExamples(feature=feature, indices=best_idx, values=best_val, bottom=bool(bottom), n_rows=n)
