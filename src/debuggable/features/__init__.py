"""Feature store and extraction.

* :class:`FeatureStore` / :class:`SplitReader` / :class:`SplitWriter`: per-split
  chunked arrays on disk (a Zarr v3 group) that are resumable, safe with many
  writers, and stream row blocks for larger-than-memory solvers;
* :func:`extract_features` / :func:`extract_splits`: run a backbone over datasets
  into a store, resumably and bit-identically;
* :class:`RunningMoments`: streaming, mergeable per-feature mean and variance.

The on-disk layout is documented in ``docs/feature_store.md``.
"""

from debuggable.features.extract import extract_features, extract_splits, split_fingerprint
from debuggable.features.stats import RunningMoments
from debuggable.features.store import (
    ARRAY_NAMES,
    FORMAT_VERSION,
    FeatureStore,
    SplitLayout,
    SplitReader,
    SplitStatus,
    SplitWriter,
    auto_chunk_rows,
)

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
