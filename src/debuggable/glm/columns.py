"""Constant feature columns: found, left out of the fit, given zero weight.

Deep features often have dead units (a ReLU that never fires on the data, a channel
that is the same for every example). A constant column carries no signal and cannot be
standardised, so :func:`~debuggable.glm.elastic_net_path` (with its default
``constant_features="drop"``) fits on the other columns and puts the path back into
all of them: the constant columns get zero weight, their mean as ``feature_mean`` and
1 as ``feature_std``, and ``path.info["constant_features_skipped"]`` lists them.
This is glmnet's and scikit-learn's treatment of zero-variance columns.

The helpers are public so that code holding its own statistics (a feature store's
mean and std) can use the same rule: :func:`constant_features` decides, and
:class:`ColumnSubset` views a block reader without some columns.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

#: a column counts as constant when its standard deviation is at most this fraction
#: of its absolute mean (float64 rounding of a constant column's moments), or zero
RELATIVE_SPREAD = 1e-10


def constant_features(mean: Any, std: Any) -> np.ndarray:
    """Indices of the columns whose spread is zero up to float64 rounding.

    Args:
        mean: (D,) per-column means (NumPy or torch).
        std: (D,) per-column standard deviations.

    Returns:
        Sorted int64 indices of the constant (or non-finite-spread) columns.
    """
    if isinstance(mean, torch.Tensor):
        mean = mean.detach().cpu().numpy()
    if isinstance(std, torch.Tensor):
        std = std.detach().cpu().numpy()
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    bad = ~np.isfinite(std) | (std == 0) | (std <= RELATIVE_SPREAD * np.abs(mean))
    return np.flatnonzero(bad).astype(np.int64)


class ColumnSubset:
    """A block reader (``shape`` + ``iter_blocks``) seen through columns ``keep`` only.

    Args:
        reader: any object with ``shape`` ``(n, D)`` and ``iter_blocks(array,
            block_rows, **kwargs)`` yielding ``(row_start, block)``.
        keep: the column indices to keep, in order.
    """

    def __init__(self, reader: Any, keep: Any):
        self.reader = reader
        self.keep = np.asarray(keep, dtype=np.int64)
        self.n_rows = int(reader.shape[0])
        self.shape = (self.n_rows, int(self.keep.size))

    def iter_blocks(self, array: str = "features", block_rows: int | None = None, **kwargs: Any) -> Iterator[tuple[int, Any]]:
        index = None
        for start, block in self.reader.iter_blocks(array, block_rows=block_rows, **kwargs):
            if isinstance(block, torch.Tensor):
                if index is None or index.device != block.device:
                    index = torch.as_tensor(self.keep, device=block.device)
                yield start, block.index_select(1, index)
            else:
                yield start, np.asarray(block)[:, self.keep]


def take_columns(X: Any, keep: np.ndarray) -> Any:
    """Columns ``keep`` of a matrix (NumPy, torch) or of a block reader (a :class:`ColumnSubset`)."""
    if isinstance(X, torch.Tensor):
        return X.index_select(1, torch.as_tensor(keep, device=X.device))
    if isinstance(X, np.ndarray):
        return X[:, keep]
    return ColumnSubset(X, keep)


def expand_columns(path: Any, keep: np.ndarray, dim: int, mean: np.ndarray) -> Any:
    """Put a path fitted on columns ``keep`` back into all ``dim`` columns, in place.

    The left-out columns get zero weight, ``mean`` (their constant value) as
    ``feature_mean`` and 1 as ``feature_std``; the logits are unchanged, since the
    intercept already absorbs the constant columns. Records the left-out indices in
    ``path.info["constant_features_skipped"]``.

    Args:
        path: a :class:`~debuggable.glm.GLMPath` with ``coef`` (L, K, len(keep)).
        keep: the fitted columns' indices among ``dim``.
        dim: the number of columns of the full problem.
        mean: (dim,) the full problem's column means.

    Returns:
        ``path``, now with ``coef`` (L, K, dim).
    """
    keep = np.asarray(keep, dtype=np.int64)
    coef = np.zeros(path.coef.shape[:2] + (dim,), dtype=path.coef.dtype)
    coef[:, :, keep] = path.coef
    feature_mean = np.asarray(mean, dtype=path.feature_mean.dtype).copy()
    feature_mean[keep] = path.feature_mean
    feature_std = np.ones(dim, dtype=path.feature_std.dtype)
    feature_std[keep] = path.feature_std
    path.coef, path.feature_mean, path.feature_std = coef, feature_mean, feature_std
    path.info["constant_features_skipped"] = sorted(set(range(dim)) - set(keep.tolist()))
    path.info["n_features"] = int(dim)
    return path
