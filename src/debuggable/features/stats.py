"""Streaming, mergeable per-feature mean and variance.

:class:`RunningMoments` accumulates the count, mean and sum of squared deviations
(``M2``) of a stream of row blocks in float64. Each block is reduced with the stable
two-pass formula (block mean first, then squared deviations from it) and folded into
the running state with the parallel update of Chan, Golub and LeVeque (1979)::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

All means are kept relative to a fixed shift (the first row ever seen), so the
sums run over small deviations. Unlike the textbook ``E[x^2] - E[x]^2`` this never
subtracts two large, nearly equal numbers: data with a large offset and a tiny
spread (e.g. ``1e6 + 1e-3 * z``) keeps its variance to ~1e-12 relative error
instead of losing every digit.

Results are deterministic: the same blocks merged in the same order give the same
bits, which is what lets feature extraction store one set of moments per chunk and
combine them in chunk order whatever way a run was interrupted.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from debuggable._tensors import is_tensor
from debuggable.errors import DebuggableError

__all__ = ["RunningMoments"]


def _block_moments(block: Any) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Count, shift, mean relative to the shift, and M2 over the first axis of a block.

    Args:
        block: (B, *shape) NumPy array or torch tensor of real numbers.

    Returns:
        ``(B, shift, rel_mean, m2)``: ``shift`` is the block's first row, the mean is
        ``shift + rel_mean``; all float64 arrays of ``shape``.
    """
    if is_tensor(block):
        import torch

        t = block.detach()
        if t.ndim == 0:
            raise DebuggableError("block: expected an array with a leading row axis, got a scalar tensor.")
        if t.device.type == "cpu":
            return _block_moments(t.numpy() if t.dtype != torch.bfloat16 else t.to(torch.float32).numpy())
        if t.device.type == "mps":  # no float64 on MPS
            return _block_moments(t.cpu())
        t = t.to(torch.float64)
        n = int(t.shape[0])
        if n == 0:
            z = np.zeros(tuple(t.shape[1:]))
            return 0, z, z.copy(), z.copy()
        shift = t[0].clone()
        dev = t - shift
        rel = dev.sum(dim=0) / n
        m2 = ((dev - rel) ** 2).sum(dim=0)
        return n, shift.cpu().numpy(), rel.cpu().numpy(), m2.cpu().numpy()
    x = np.asarray(block)
    if x.ndim == 0:
        raise DebuggableError("block: expected an array with a leading row axis, got a scalar.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise DebuggableError(f"block: expected real numbers, got dtype {x.dtype}.")
    n = int(x.shape[0])
    if n == 0:
        z = np.zeros(x.shape[1:])
        return 0, z, z.copy(), z.copy()
    # Shift by the first row so the sums run over small deviations (accurate means
    # even under a large common offset), then the two-pass M2 around the block mean.
    # Reductions over axis 0 of a C-ordered array add whole rows one after another,
    # so the result does not depend on memory alignment or thread count.
    shift = x[0].astype(np.float64)
    dev = x.astype(np.float64, copy=True)
    dev -= shift
    dmean = dev.sum(axis=0) / n
    dev -= dmean
    np.square(dev, out=dev)
    m2 = dev.sum(axis=0)
    return n, shift, dmean, m2


class RunningMoments:
    """Count, mean and variance per feature of a stream of row blocks.

    Args:
        shape: the shape of one row (e.g. ``(D,)``); ``None`` to take it from the
            first block.

    Attributes:
        count: number of rows seen (int).

    The state is ``count``, a ``shift`` (the first row seen), the mean relative to
    the shift and ``m2`` (sum of squared deviations from the mean), all float64.

    Example:
        >>> m = RunningMoments()
        >>> m.update(np.ones((3, 2))).update(np.zeros((1, 2)))
        RunningMoments(count=4, shape=(2,))
        >>> m.mean, m.var()
        (array([0.75, 0.75]), array([0.1875, 0.1875]))
    """

    def __init__(self, shape: tuple[int, ...] | None = None):
        self.count: int = 0
        self._shape = None if shape is None else tuple(int(s) for s in shape)
        self._shift = self._rel = self._m2 = None
        if self._shape is not None:
            self._reset_arrays()

    def _reset_arrays(self) -> None:
        self._shift = np.zeros(self._shape, dtype=np.float64)
        self._rel = np.zeros(self._shape, dtype=np.float64)
        self._m2 = np.zeros(self._shape, dtype=np.float64)

    # -- state -----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The shape of one row, or ``None`` before the first block."""
        return self._shape

    @property
    def mean(self) -> np.ndarray:
        """(*shape) float64 per-feature mean (NaN where no rows were seen)."""
        self._require_shape()
        if self.count == 0:
            return np.full(self._shape, np.nan)
        return self._shift + self._rel

    @property
    def m2(self) -> np.ndarray:
        """(*shape) float64 sum of squared deviations from the mean."""
        self._require_shape()
        return self._m2.copy()

    def var(self, ddof: int = 0) -> np.ndarray:
        """(*shape) float64 variance ``M2 / (count - ddof)``; NaN when ``count <= ddof``.

        Args:
            ddof: delta degrees of freedom, as in :func:`numpy.var` (0: population,
                1: unbiased sample variance).
        """
        self._require_shape()
        if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
            raise DebuggableError(f"ddof: expected a non-negative integer, got {ddof!r}.")
        denom = self.count - int(ddof)
        if denom <= 0:
            return np.full(self._shape, np.nan)
        return self._m2 / denom

    def std(self, ddof: int = 0) -> np.ndarray:
        """(*shape) float64 standard deviation ``sqrt(var(ddof))``."""
        return np.sqrt(self.var(ddof))

    def _require_shape(self) -> None:
        if self._shape is None:
            raise DebuggableError("RunningMoments: no rows have been added yet, so the feature shape is unknown.")

    # -- accumulation ----------------------------------------------------------

    def update(self, block: Any) -> "RunningMoments":
        """Add the rows of ``block`` and return ``self``.

        Args:
            block: (B, *shape) NumPy array or torch tensor (any real dtype, any
                device; reduced on its device in float64, except that CPU tensors go
                through NumPy so results never depend on the torch thread count).
        """
        return self._merge_state(*_block_moments(block))

    def merge(self, other: "RunningMoments") -> "RunningMoments":
        """Fold ``other``'s rows into ``self`` (Chan et al.) and return ``self``.

        Merging is exact up to float64 rounding in any order; merging the same
        pieces in the same order always gives the same bits.
        """
        if not isinstance(other, RunningMoments):
            raise DebuggableError(f"other: expected a RunningMoments, got {type(other).__name__}.")
        if other._shape is None:
            return self
        return self._merge_state(other.count, other._shift, other._rel, other._m2)

    def _merge_state(self, n_b: int, shift_b: np.ndarray, rel_b: np.ndarray, m2_b: np.ndarray) -> "RunningMoments":
        shift_b = np.asarray(shift_b, dtype=np.float64)
        if self._shape is None:
            self._shape = tuple(shift_b.shape)
            self._reset_arrays()
        if tuple(shift_b.shape) != self._shape:
            raise DebuggableError(
                f"block: rows of shape {tuple(shift_b.shape)} cannot be merged into moments of shape {self._shape}."
            )
        if n_b == 0:
            return self
        rel_b = np.asarray(rel_b, dtype=np.float64)
        m2_b = np.asarray(m2_b, dtype=np.float64)
        n_a = self.count
        if n_a == 0:
            self.count = int(n_b)
            self._shift, self._rel, self._m2 = shift_b.copy(), rel_b.copy(), m2_b.copy()
            return self
        n = n_a + n_b
        # b's mean relative to our shift: the shifts are close, so their difference
        # is (nearly) exact and the small relative means keep their precision.
        delta = ((shift_b - self._shift) + rel_b) - self._rel
        self._rel = self._rel + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta * delta * (n_a * n_b / n)
        self.count = int(n)
        return self

    # -- construction and serialisation ---------------------------------------

    @classmethod
    def from_block(cls, block: Any) -> "RunningMoments":
        """Moments of one (B, *shape) block."""
        return cls().update(block)

    @classmethod
    def combine(cls, parts: Iterable["RunningMoments"]) -> "RunningMoments":
        """Merge ``parts`` left to right into a new accumulator."""
        out = cls()
        for p in parts:
            out.merge(p)
        return out

    def copy(self) -> "RunningMoments":
        """An independent copy."""
        out = RunningMoments()
        out.count = self.count
        out._shape = self._shape
        if self._shape is not None:
            out._shift, out._rel, out._m2 = self._shift.copy(), self._rel.copy(), self._m2.copy()
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (floats round-trip exactly through ``json``)."""
        self._require_shape()
        return {
            "count": int(self.count),
            "shape": list(self._shape),
            "shift": self._shift.ravel().tolist(),
            "rel_mean": self._rel.ravel().tolist(),
            "m2": self._m2.ravel().tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunningMoments":
        """Inverse of :meth:`to_dict`."""
        try:
            shape = tuple(int(s) for s in d["shape"])
            out = cls(shape)
            out.count = int(d["count"])
            out._shift = np.asarray(d["shift"], dtype=np.float64).reshape(shape)
            out._rel = np.asarray(d["rel_mean"], dtype=np.float64).reshape(shape)
            out._m2 = np.asarray(d["m2"], dtype=np.float64).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise DebuggableError(
                f"moments: expected a dict with count, shape, shift, rel_mean and m2, got an invalid one ({exc})."
            ) from None
        return out

    def __eq__(self, other: object) -> bool:
        """Bitwise equality of the whole state."""
        if not isinstance(other, RunningMoments):
            return NotImplemented
        if self._shape != other._shape or self.count != other.count:
            return False
        if self._shape is None:
            return True
        return all(np.array_equal(a, b) for a, b in ((self._shift, other._shift), (self._rel, other._rel), (self._m2, other._m2)))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"RunningMoments(count={self.count}, shape={self._shape})"
