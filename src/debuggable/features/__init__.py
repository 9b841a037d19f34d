"""Feature store and extraction.

* :class:`FeatureStore` / :class:`SplitReader` / :class:`SplitWriter`: per-split
  chunked arrays on disk (a Zarr v3 group) that are resumable, safe with many
  writers, and stream row blocks for larger-than-memory solvers;
* :func:`extract_features` / :func:`extract_splits`: run a backbone over datasets
  into a store, resumably and bit-identically;
* :class:`RunningMoments`: streaming, mergeable per-feature mean and variance.

The on-disk layout is documented in ``docs/feature_store.md``.

Importing the package does not import torch: the extraction functions load with their
module (:mod:`debuggable.features.extract`) at first use.
"""

from typing import Any

from debuggable.features.stats import RunningMoments
from debuggable.features.store import (
    ARRAY_NAMES,
    FORMAT_VERSION,
    FeatureStore,
    SplitLayout,
    SplitReader,
    SplitStatus,
    SplitWriter,
    StoreIntegrityError,
    auto_chunk_rows,
)

_EXTRACT = ("extract_features", "extract_splits", "split_fingerprint")


def __getattr__(name: str) -> Any:
    if name in _EXTRACT:
        from debuggable.features import extract

        return getattr(extract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "StoreIntegrityError",
    "ARRAY_NAMES",
    "FORMAT_VERSION",
    "FeatureStore",
    "RunningMoments",
    "SplitLayout",
    "SplitReader",
    "SplitStatus",
    "SplitWriter",
    "auto_chunk_rows",
    "extract_features",
    "extract_splits",
    "split_fingerprint",
]
