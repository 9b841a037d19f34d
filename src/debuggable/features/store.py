"""The on-disk feature store: chunked arrays per split, resumable, many writers.

A :class:`FeatureStore` is one directory holding a Zarr v3 hierarchy (see
``docs/feature_store.md`` for why Zarr and the exact layout)::

    <path>/zarr.json                      root group; attributes name the format version
    <path>/<split>/zarr.json              split group; attributes: fingerprint, backbone,
                                          dataset, class names, feature dim, chunk rows ...
    <path>/<split>/features/              (N, D) float32
    <path>/<split>/labels/                (N,) int64
    <path>/<split>/logits/                (N, K) float32   (only when the model has a head)
    <path>/<split>/preds/                 (N,) int64       (argmax of logits)
    <path>/<split>/spatial/               (N, C, h, w) float32 or float16 (optional)
    <path>/<split>/_chunks/00000007.json  done-marker of chunk 7 (+ its feature moments)
    <path>/<split>/_complete.json         completion marker (+ the merged moments)

Every array is chunked along rows only, with the same ``chunk_rows`` for all arrays
of a split, so chunk ``i`` (rows ``i*chunk_rows`` up to ``(i+1)*chunk_rows``) is one
file per array and writers working on different chunks never touch the same file.

Completion protocol (what makes a store never look complete when it is not):

1. a writer writes chunk ``i`` of every array (each file replaced atomically by
   Zarr), then ``fsync``\\ s the files;
2. only then it writes the done-marker ``_chunks/<i>.json`` (temp file, ``fsync``,
   ``os.replace``); a chunk without a marker is treated as absent and rewritten;
3. when every marker is present, :meth:`SplitWriter.finalize` merges the per-chunk
   moments in chunk order and writes ``_complete.json`` the same way, last.

A split directory itself appears atomically: it is built under a temporary name and
renamed into place, so concurrent writers agree on one set of array metadata.

Readers refuse incomplete splits unless asked (``allow_incomplete=True``). Arrays
stored uncompressed (the default) are read straight from the chunk files with
``readinto`` (no decode step) and can be memory-mapped chunk by chunk; compressed
arrays are read through zarr-python.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

from debuggable._tensors import is_tensor
from debuggable.errors import DebuggableError
from debuggable.run.atomic import atomic_write_text
from debuggable.features.stats import RunningMoments

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT_VERSION",
    "ARRAY_NAMES",
    "ChunkProblem",
    "FeatureStore",
    "SplitCheck",
    "SplitLayout",
    "SplitReader",
    "SplitStatus",
    "SplitWriter",
    "StoreIntegrityError",
    "auto_chunk_rows",
]

#: Version of the on-disk layout; a store with another version is refused.
FORMAT_VERSION = 1
#: The arrays a split may hold, in writing order.
ARRAY_NAMES = ("features", "labels", "logits", "preds", "spatial")

_STORE_KEY = "debuggable_feature_store"
_SPLIT_KEY = "debuggable_split"
_CHUNKS_DIR = "_chunks"
_COMPLETE = "_complete.json"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_COMPRESSIONS = (None, "blosc")
_SPATIAL_DTYPES = ("float32", "float16")
_TARGET_CHUNK_BYTES = 16 * 2**20
# Names of the temporaries writers create in a store directory (another writer may be
# creating the store right now, so these do not make a directory "foreign").
_OWN_TEMPORARIES = (".debuggable-write-probe-", ".zarr.json.tmp-", ".creating-", ".deleting-")


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: The checksum recorded per chunk file in its done-marker (CRC-32C, hardware-accelerated
#: by ``google-crc32c``, the implementation zarr-python itself uses for its crc32c codec).
CHECKSUM = "crc32c"


def _crc(data: Any, crc: int = 0) -> int:
    """CRC-32C of a C-contiguous array or bytes-like object, continuing from ``crc``."""
    if isinstance(data, bytes):
        return google_crc32c.extend(crc, data)
    view = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    view = view.view()
    view.flags.writeable = False  # the C extension takes read-only buffers only
    return google_crc32c.extend(crc, view)


def _file_crc(path: Path, block: int = 1 << 24) -> tuple[int, int]:
    """(size in bytes, CRC-32C) of the file at ``path``."""
    crc, size = 0, 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(max(1, min(block, os.fstat(f.fileno()).st_size)))
        view = memoryview(buf)
        while True:
            n = f.readinto(view)
            if not n:
                break
            crc = _crc(view[:n], crc)
            size += n
    return size, crc


class StoreIntegrityError(DebuggableError):
    """A file of a feature store does not hold what its done-marker recorded.

    Attributes:
        file: the damaged (or missing) file.
        split: the split it belongs to.
        chunk: the chunk index, or ``None`` for split-level files.
        problem: what is wrong, e.g. ``"truncated (1024 of 4096 bytes)"``.
        repair: the command (or call) that mends it.
    """

    def __init__(self, file: Path, split: str, chunk: int | None, problem: str, repair: str | None = None):
        self.file, self.split, self.chunk, self.problem = Path(file), split, chunk, problem
        self.repair = repair or "extract_features(..., repair=True)"
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        what = f"chunk {self.chunk} of split {self.split!r}" if self.chunk is not None else f"split {self.split!r}"
        return f"store: {what}: {self.file} is {self.problem}; repair it with `{self.repair}`."

    def with_repair(self, repair: str) -> "StoreIntegrityError":
        """The same error, naming ``repair`` as the command that mends it."""
        return StoreIntegrityError(self.file, self.split, self.chunk, self.problem, repair)

    def __reduce__(self):  # picklable across processes
        return (StoreIntegrityError, (self.file, self.split, self.chunk, self.problem, self.repair))


@dataclass(frozen=True)
class ChunkProblem:
    """One damaged file found by :meth:`FeatureStore.verify`.

    Attributes:
        split: the split.
        chunk: chunk index (``None`` for split-level files such as ``_complete.json``).
        file: the file.
        problem: what is wrong (``"missing"``, ``"truncated (...)"``, ``"corrupt (checksum ...)"``, ...).
    """

    split: str
    chunk: int | None
    file: Path
    problem: str


@dataclass(frozen=True)
class SplitCheck:
    """What :meth:`FeatureStore.verify` found in one split.

    Attributes:
        split: the split.
        state: ``"complete"`` or ``"partial"``.
        n_chunks: chunks in the split.
        checked: chunks whose done-marker was checked.
        unchecksummed: done chunks written before checksums were recorded (only their
            presence and size can be checked).
        full: whether file contents were checksummed (else only sizes).
        problems: the damaged files.
    """

    split: str
    state: str
    n_chunks: int
    checked: int
    unchecksummed: int
    full: bool
    problems: tuple[ChunkProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged_chunks(self) -> list[int]:
        return sorted({p.chunk for p in self.problems if p.chunk is not None})


def check_split_name(split: Any) -> str:
    """Return ``split`` if it is a valid split name, else raise :class:`DebuggableError`.

    Valid names start with a letter or digit and contain only letters, digits,
    ``_``, ``.`` and ``-`` (at most 128 characters), so they are safe directory names.
    """
    if not isinstance(split, str) or not _SPLIT_NAME.match(split) or split == "zarr.json":
        raise DebuggableError(
            f"split: {split!r} is not a valid split name; expected letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    return split


def auto_chunk_rows(n_rows: int, row_bytes: int, batch_size: int, target_bytes: int = _TARGET_CHUNK_BYTES) -> int:
    """A default number of rows per chunk.

    Aims at ``target_bytes`` (16 MiB) per chunk summed over all arrays, rounded down to
    a multiple of ``batch_size`` so extraction batches tile chunks exactly, but never
    below one batch and never above ``n_rows``.

    Args:
        n_rows: N, rows in the split.
        row_bytes: bytes one row takes over all arrays.
        batch_size: the extraction batch size.
        target_bytes: the aimed-at chunk size in bytes.

    Returns:
        The number of rows per chunk, in ``1..max(n_rows, 1)``.
    """
    rows = max(1, int(target_bytes) // max(1, int(row_bytes)))
    rows = max(batch_size, rows // batch_size * batch_size)
    return int(max(1, min(rows, n_rows)))


# ---------------------------------------------------------------------------
# layout and status
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitLayout:
    """The shapes and encoding of one split's arrays.

    Attributes:
        n_rows: N, rows in the split.
        chunk_rows: rows per chunk (the unit of writing, resuming and done-markers).
        feature_dim: D, the width of ``features``.
        num_classes: K, the width of ``logits``; ``None`` when the model has no head
            (then ``logits`` and ``preds`` are not stored).
        spatial_shape: (C, h, w) of ``spatial``, or ``None`` when not stored.
        spatial_dtype: ``"float32"`` or ``"float16"``.
        compression: ``None`` (raw little-endian chunks: fastest, memory-mappable) or
            ``"blosc"`` (Blosc/zstd level 3 with byte shuffle).
    """

    n_rows: int
    chunk_rows: int
    feature_dim: int
    num_classes: int | None = None
    spatial_shape: tuple[int, int, int] | None = None
    spatial_dtype: str = "float32"
    compression: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_rows", "chunk_rows", "feature_dim"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise DebuggableError(f"{name}: expected a positive integer, got {v!r}.")
        if self.num_classes is not None and (not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1):
            raise DebuggableError(f"num_classes: expected a positive integer or None, got {self.num_classes!r}.")
        if self.spatial_shape is not None:
            if len(self.spatial_shape) != 3 or any(int(s) < 1 for s in self.spatial_shape):
                raise DebuggableError(f"spatial_shape: expected (C, h, w) of positive integers, got {self.spatial_shape!r}.")
            object.__setattr__(self, "spatial_shape", tuple(int(s) for s in self.spatial_shape))
        if self.spatial_dtype not in _SPATIAL_DTYPES:
            raise DebuggableError(f"spatial_dtype: expected 'float32' or 'float16', got {self.spatial_dtype!r}.")
        if self.compression not in _COMPRESSIONS:
            raise DebuggableError(f"compression: expected None or 'blosc', got {self.compression!r}.")

    @property
    def n_chunks(self) -> int:
        """Number of row chunks, ``ceil(n_rows / chunk_rows)``."""
        return math.ceil(self.n_rows / self.chunk_rows)

    @property
    def arrays(self) -> tuple[str, ...]:
        """Names of the arrays this split stores."""
        names = ["features", "labels"]
        if self.num_classes is not None:
            names += ["logits", "preds"]
        if self.spatial_shape is not None:
            names.append("spatial")
        return tuple(names)

    def row_shape(self, array: str) -> tuple[int, ...]:
        """Shape of one row of ``array``."""
        return {
            "features": (int(self.feature_dim),),
            "labels": (),
            "logits": (int(self.num_classes or 0),),
            "preds": (),
            "spatial": tuple(self.spatial_shape or ()),
        }[array]

    def dtype(self, array: str) -> np.dtype:
        """NumPy dtype of ``array``."""
        return np.dtype(
            {"features": "float32", "labels": "int64", "logits": "float32", "preds": "int64", "spatial": self.spatial_dtype}[
                array
            ]
        )

    def row_bytes(self) -> int:
        """Bytes one row takes over all arrays."""
        return sum(int(np.prod(self.row_shape(a), dtype=np.int64)) * self.dtype(a).itemsize for a in self.arrays)

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of chunk ``i``."""
        if not 0 <= i < self.n_chunks:
            raise DebuggableError(f"chunk: expected an index in 0..{self.n_chunks - 1}, got {i}.")
        lo = i * self.chunk_rows
        return lo, min(lo + self.chunk_rows, self.n_rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": int(self.n_rows),
            "chunk_rows": int(self.chunk_rows),
            "feature_dim": int(self.feature_dim),
            "num_classes": None if self.num_classes is None else int(self.num_classes),
            "spatial_shape": None if self.spatial_shape is None else list(self.spatial_shape),
            "spatial_dtype": self.spatial_dtype,
            "compression": self.compression,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SplitLayout":
        return cls(
            n_rows=int(d["n_rows"]),
            chunk_rows=int(d["chunk_rows"]),
            feature_dim=int(d["feature_dim"]),
            num_classes=None if d.get("num_classes") is None else int(d["num_classes"]),
            spatial_shape=None if d.get("spatial_shape") is None else tuple(d["spatial_shape"]),
            spatial_dtype=d.get("spatial_dtype", "float32"),
            compression=d.get("compression"),
        )

    def differences(self, other: "SplitLayout") -> list[str]:
        """Human-readable ``name stored -> requested`` for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k} {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


@dataclass(frozen=True)
class SplitStatus:
    """Where a split stands.

    Attributes:
        name: the split.
        state: ``"missing"`` (no such split), ``"partial"`` or ``"complete"``.
        n_chunks: chunks in the split (0 when missing).
        done_chunks: chunks with a done-marker.
        n_rows: rows in the split (0 when missing).
        done_rows: rows covered by done chunks.
    """

    name: str
    state: str
    n_chunks: int = 0
    done_chunks: int = 0
    n_rows: int = 0
    done_rows: int = 0

    @property
    def complete(self) -> bool:
        return self.state == "complete"


# ---------------------------------------------------------------------------
# one array of one split: direct chunk-file access when uncompressed
# ---------------------------------------------------------------------------


class _ArrayHandle:
    """Reads and writes one row-chunked Zarr array of a split."""

    def __init__(self, path: Path, mode: str = "r"):
        self.path = path
        try:
            self.zarr = zarr.open_array(store=LocalStore(path, read_only=(mode == "r")), mode=mode)
        except (OSError, ValueError, KeyError) as exc:
            raise DebuggableError(f"store: array {path} is missing or unreadable ({exc}).") from None
        meta = self.zarr.metadata
        self.shape = tuple(int(s) for s in self.zarr.shape)
        self.row_shape = self.shape[1:]
        self.dtype = np.dtype(self.zarr.dtype).newbyteorder("<")
        self.chunk_rows = int(self.zarr.chunks[0])
        self.row_items = int(np.prod(self.row_shape, dtype=np.int64))
        self.row_bytes = self.row_items * self.dtype.itemsize
        codecs = tuple(getattr(meta, "codecs", ()))
        self.raw = (
            getattr(meta, "zarr_format", None) == 3
            and len(codecs) == 1
            and isinstance(codecs[0], BytesCodec)
            and (codecs[0].endian is None or getattr(codecs[0].endian, "value", codecs[0].endian) == "little")
            and tuple(self.zarr.chunks[1:]) == self.row_shape
            and not tuple(getattr(meta, "storage_transformers", ()) or ())
        )
        self._meta = meta
        self._writable = None
        #: chunk indices that may be read (``None``: all; set for incomplete splits)
        self.done: set[int] | None = None
        #: ``expected(c)``: the chunk file's recorded ``{"bytes", "crc32c"}`` (``None``
        #: for chunks written before checksums); ``None``: reads are not verified.
        self.expected: Any = None
        #: the split's name, for error messages
        self.split = path.parent.name
        self._verified: set[int] = set()

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.shape[0] / self.chunk_rows) if self.shape[0] else 0

    def chunk_path(self, i: int) -> Path:
        key = self._meta.encode_chunk_key((i,) + (0,) * len(self.row_shape))
        return self.path.joinpath(*key.split("/"))

    # -- writing ---------------------------------------------------------------

    def write_chunk(self, i: int, data: np.ndarray, fsync: bool) -> dict[str, int]:
        """Write chunk ``i`` whole (``data`` has the chunk's valid rows).

        Returns the file's ``{"bytes": size, "crc32c": checksum}`` as read back from
        the file just written (so the record covers what is on disk).
        """
        if self._writable is None:
            self._writable = self.zarr.with_config({"write_empty_chunks": True})
        cp = self.chunk_path(i)
        # A chunk is always written whole, so an old (possibly torn) file is dropped
        # first and never read back; zarr's own '<chunk>.<uuid>.partial' temp files
        # from killed writers are swept by SplitWriter.finalize.
        cp.unlink(missing_ok=True)
        lo = i * self.chunk_rows
        try:
            self._writable[lo : lo + data.shape[0]] = data
            if fsync:
                _fsync_file(cp)
        except OSError as exc:
            if not getattr(exc, "filename", None) or str(exc.filename).endswith(".partial"):
                exc.filename = str(cp)  # a failed write() names no file (or zarr's temporary)
            raise
        size, crc = _file_crc(cp)
        return {"bytes": size, CHECKSUM: crc}

    # -- integrity -------------------------------------------------------------

    def full_chunk_bytes(self) -> int | None:
        """Size of a raw chunk file (the last one is padded to full size); ``None`` if compressed."""
        return self.chunk_rows * self.row_bytes if self.raw else None

    def check_file(self, c: int, data: Any = None, size: int | None = None) -> None:
        """Raise :class:`StoreIntegrityError` unless chunk ``c``'s file matches its record.

        ``data`` (a buffer of the whole file) avoids reading it again; ``size`` is the
        file size when known.
        """
        path = self.chunk_path(c)
        rec = self.expected(c) if self.expected is not None else None
        want = rec["bytes"] if rec else self.full_chunk_bytes()
        if data is None:
            try:
                if rec is None:
                    size = path.stat().st_size
                else:
                    size, crc = _file_crc(path)
            except FileNotFoundError:
                raise StoreIntegrityError(path, self.split, c, "missing although its chunk is marked done") from None
        else:
            size = memoryview(data).nbytes if size is None else size
            crc = _crc(data) if rec is not None else None
        if want is not None and size != want:
            what = "truncated" if size < want else "longer than recorded"
            raise StoreIntegrityError(path, self.split, c, f"{what} ({size} of {want} bytes)")
        if rec is not None and crc != rec[CHECKSUM]:
            raise StoreIntegrityError(
                path, self.split, c, f"corrupt (CRC-32C {crc:08x}, recorded {rec[CHECKSUM]:08x})"
            )

    def _ensure_verified(self, c: int) -> None:
        if self.expected is None or c in self._verified:
            return
        self.check_file(c)
        self._verified.add(c)

    # -- reading ---------------------------------------------------------------

    def _readable(self, c: int) -> bool:
        return self.done is None or c in self.done

    def read_range(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[lo, hi)`` as a new C-ordered array (or into ``out``, C-contiguous).

        Chunks outside :attr:`done` (when set) read as 0, whatever their files hold.
        """
        if out is None:
            out = np.empty((hi - lo,) + self.row_shape, dtype=self.dtype)
        if hi <= lo:
            return out
        flat = out.reshape(hi - lo, -1).view(np.uint8).reshape(-1) if self.raw else None
        for c in range(lo // self.chunk_rows, (hi - 1) // self.chunk_rows + 1):
            c_lo = c * self.chunk_rows
            a, b = max(lo, c_lo), min(hi, c_lo + self.chunk_rows)
            if not self._readable(c):
                out[a - lo : b - lo] = 0
                continue
            if not self.raw:
                self._ensure_verified(c)
                out[a - lo : b - lo] = self.zarr[a:b]
                continue
            dst_arr = flat[(a - lo) * self.row_bytes : (b - lo) * self.row_bytes]
            dst = memoryview(dst_arr)
            path = self.chunk_path(c)
            check = self.expected is not None and c not in self._verified
            valid = min(self.chunk_rows, self.shape[0] - c_lo)
            whole = a == c_lo and b == c_lo + valid  # the block holds every valid row of the chunk
            if check and not whole:
                self._ensure_verified(c)  # reads the chunk once; later reads of it are not re-checked
                check = False
            try:
                f = open(path, "rb", buffering=0)
            except FileNotFoundError:
                raise StoreIntegrityError(path, self.split, c, "missing although its chunk is marked done") from None
            with f:
                f.seek((a - c_lo) * self.row_bytes)
                got = 0
                while got < len(dst):
                    n = f.readinto(dst[got:])
                    if not n:
                        break
                    got += n
                if check:
                    # The checksum covers the whole file: these rows plus the last chunk's padding
                    # (read one byte more than recorded, to see a file that grew).
                    rec = self.expected(c)
                    want = rec["bytes"] if rec is not None else (self.full_chunk_bytes() or 0)
                    rest = f.read(max(0, want - got) + 1) if got == len(dst) else b""
                    crc = _crc(rest, _crc(dst_arr[:got]))
                    if rec is not None:
                        size = got + len(rest)
                        if size == rec["bytes"] and crc != rec[CHECKSUM]:
                            raise StoreIntegrityError(
                                path, self.split, c, f"corrupt (CRC-32C {crc:08x}, recorded {rec[CHECKSUM]:08x})"
                            )
                        if size != rec["bytes"]:
                            what = "truncated" if size < rec["bytes"] else "longer than recorded"
                            raise StoreIntegrityError(path, self.split, c, f"{what} ({size} of {rec['bytes']} bytes)")
                    self._verified.add(c)
                if got < len(dst):
                    want = self.full_chunk_bytes()
                    raise StoreIntegrityError(
                        path, self.split, c, f"truncated ({(a - c_lo) * self.row_bytes + got} of {want} bytes)"
                    )
        return out

    def read_index(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed, already in range)."""
        out = np.empty((idx.shape[0],) + self.row_shape, dtype=self.dtype)
        if idx.shape[0] == 0:
            return out
        chunk_of = idx // self.chunk_rows
        order = np.argsort(chunk_of, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk_of[order])) + 1
        for group in np.split(order, bounds):
            c = int(chunk_of[group[0]])
            c_lo = c * self.chunk_rows
            valid = min(self.chunk_rows, self.shape[0] - c_lo)
            local = idx[group] - c_lo
            if not self._readable(c):
                out[group] = 0
            elif self.raw:
                out[group] = self.memmap_chunk(c, valid)[local]
            else:
                self._ensure_verified(c)
                out[group] = self.zarr[c_lo : c_lo + valid][local]
        return out

    def memmap_chunk(self, c: int, valid: int | None = None) -> np.memmap | None:
        """Read-only memmap of chunk ``c``'s valid rows; ``None`` if it is not done."""
        if not self.raw:
            raise DebuggableError(
                f"array: {self.path.name} is stored compressed, so it cannot be memory-mapped; "
                "read it with read() or iter_blocks() instead."
            )
        if not self._readable(c):
            return None
        c_lo = c * self.chunk_rows
        if valid is None:
            valid = min(self.chunk_rows, self.shape[0] - c_lo)
        path = self.chunk_path(c)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoreIntegrityError(path, self.split, c, "missing although its chunk is marked done") from None
        if size != self.full_chunk_bytes():
            self.check_file(c)  # names the problem (truncated, longer than recorded)
        mm = np.memmap(path, dtype=self.dtype, mode="r", shape=(self.chunk_rows,) + self.row_shape)
        if self.expected is not None and c not in self._verified:
            self.check_file(c, data=mm, size=size)
            self._verified.add(c)
        return mm[:valid]


# ---------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------


class FeatureStore:
    """A directory of per-split feature arrays (a Zarr v3 group).

    Args:
        path: the store directory.
        mode: ``"r"`` to open an existing store, ``"a"`` to open or create one
            (checks that the directory is writable first).

    Raises:
        DebuggableError: the path is not a feature store (``"r"``), is a non-empty
            directory that is not a feature store, was written by another format
            version, or is not writable (``"a"``).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        if mode not in ("r", "a"):
            raise DebuggableError(f"mode: expected 'r' or 'a', got {mode!r}.")
        self.path = Path(path).expanduser()
        self.mode = mode
        state = self.inspect_path(self.path)
        if mode == "r":
            if state != "store":
                raise DebuggableError(f"path: {str(self.path)!r} is not a feature store (no debuggable zarr.json found).")
            self._check_root()
        else:
            self.check_writable(self.path)
            if state == "store":
                self._check_root()
            else:
                self._create_root()
            self._cleanup_temporaries()

    # -- root ------------------------------------------------------------------

    @staticmethod
    def inspect_path(path: str | os.PathLike) -> str:
        """What lies at ``path``: ``"missing"``, ``"empty"`` (an empty directory) or ``"store"``.

        Raises:
            DebuggableError: ``path`` is a file, or a non-empty directory that is not a
                feature store.
        """
        p = Path(path).expanduser()
        if not p.exists():
            return "missing"
        if not p.is_dir():
            raise DebuggableError(f"path: {str(p)!r} is a file; expected a feature-store directory.")
        meta = p / "zarr.json"
        if meta.is_file():
            try:
                attrs = json.loads(meta.read_text(encoding="utf-8")).get("attributes", {})
            except (OSError, ValueError):
                attrs = {}
            if _STORE_KEY in attrs:
                return "store"
            raise DebuggableError(
                f"path: {str(p)!r} holds a Zarr hierarchy that is not a debuggable feature store; "
                "expected a new or empty directory."
            )
        if any(not child.name.startswith(_OWN_TEMPORARIES) for child in p.iterdir()):
            raise DebuggableError(
                f"path: {str(p)!r} is a non-empty directory that is not a feature store; "
                "expected a new or empty directory."
            )
        return "empty"

    @staticmethod
    def check_writable(path: str | os.PathLike) -> None:
        """Raise :class:`DebuggableError` unless a store can be written at ``path``.

        Probes by creating and deleting a temporary file in ``path`` (or in its nearest
        existing ancestor when ``path`` does not exist yet), so it leaves nothing behind.
        """
        p = Path(path).expanduser().absolute()
        probe_dir = p
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise DebuggableError(
                f"path: cannot create {str(p)!r} because {str(probe_dir)!r} is a file; expected a writable directory."
            )
        probe = probe_dir / f".debuggable-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DebuggableError(
                f"path: {str(p)!r} is not writable ({exc.strerror or exc}); expected a directory you can write to."
            ) from None

    def _create_root(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.path / "zarr.json",
                json.dumps(
                    {
                        "zarr_format": 3,
                        "node_type": "group",
                        "attributes": {_STORE_KEY: {"format_version": FORMAT_VERSION}},
                    },
                    indent=2,
                ),
            )
        except OSError as exc:
            raise DebuggableError(f"path: could not create a feature store at {str(self.path)!r} ({exc}).") from None

    def _check_root(self) -> None:
        attrs = json.loads((self.path / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
        version = attrs.get(_STORE_KEY, {}).get("format_version")
        if version != FORMAT_VERSION:
            raise DebuggableError(
                f"path: the feature store at {str(self.path)!r} has format version {version!r}, but this "
                f"debuggable reads version {FORMAT_VERSION}; re-extract into a new directory."
            )

    def _cleanup_temporaries(self) -> None:
        """Remove split directories that a killed process was creating or deleting."""
        host = socket.gethostname()
        for p in self.path.iterdir():
            if not p.is_dir():
                continue
            if p.name.startswith(".deleting-"):
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(".creating-"):
                parts = p.name.rsplit("-", 3)  # .creating-<split>-<host>-<pid>-<uuid>
                try:
                    p_host, p_pid = parts[-3], int(parts[-2])
                except (IndexError, ValueError):
                    continue
                if p_host == host.replace("-", "_") and not _pid_alive(p_pid):
                    shutil.rmtree(p, ignore_errors=True)

    # -- splits ----------------------------------------------------------------

    def splits(self) -> list[str]:
        """Names of the splits in the store (complete or not), sorted."""
        out = []
        for p in self.path.iterdir():
            if p.is_dir() and not p.name.startswith(".") and (p / "zarr.json").is_file():
                try:
                    attrs = json.loads((p / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
                except (OSError, ValueError, AttributeError):
                    # a damaged split is still a split (verify and repair must see it)
                    if (p / _CHUNKS_DIR).is_dir():
                        out.append(p.name)
                    continue
                if _SPLIT_KEY in attrs:
                    out.append(p.name)
        return sorted(out)

    def __contains__(self, split: str) -> bool:
        try:
            check_split_name(split)
        except DebuggableError:
            return False
        return self._split_meta_path(split).is_file()

    def _split_dir(self, split: str) -> Path:
        return self.path / check_split_name(split)

    def _split_meta_path(self, split: str) -> Path:
        return self.path / split / "zarr.json"

    def metadata(self, split: str) -> dict[str, Any]:
        """The split's attributes: ``format_version``, ``layout``, ``class_names``,
        ``fingerprint``, plus whatever the writer recorded (``backbone``, ``dataset``,
        ``extraction``).

        Raises:
            DebuggableError: no such split, or it was written by another format version.
        """
        path = self._split_meta_path(check_split_name(split))
        if not path.is_file():
            raise DebuggableError(f"split: {split!r} is not in the feature store {str(self.path)!r}; it has {self.splits()}.")
        try:
            attrs = json.loads(path.read_text(encoding="utf-8")).get("attributes", {})
        except (ValueError, AttributeError) as exc:
            raise StoreIntegrityError(path, split, None, f"unreadable ({exc})") from None
        meta = attrs.get(_SPLIT_KEY)
        if not isinstance(meta, dict):
            raise DebuggableError(f"split: {split!r} in {str(self.path)!r} is not a debuggable feature split.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DebuggableError(
                f"split: {split!r} in {str(self.path)!r} has format version {meta.get('format_version')!r}, but "
                f"this debuggable reads version {FORMAT_VERSION}; re-extract it with overwrite=True or into a new directory."
            )
        return meta

    def layout(self, split: str) -> SplitLayout:
        """The split's :class:`SplitLayout`."""
        return SplitLayout.from_dict(self.metadata(split)["layout"])

    def done_chunks(self, split: str) -> list[int]:
        """Sorted indices of the split's chunks that carry a done-marker."""
        d = self._split_dir(split) / _CHUNKS_DIR
        if not d.is_dir():
            return []
        out = []
        for p in d.iterdir():
            name = p.name
            if name.endswith(".json") and not name.startswith(".") and name[:-5].isdigit():
                out.append(int(name[:-5]))
        return sorted(out)

    def is_complete(self, split: str) -> bool:
        """Whether the split exists and carries its completion marker."""
        return split in self and (self._split_dir(split) / _COMPLETE).is_file()

    def status(self, split: str) -> SplitStatus:
        """A :class:`SplitStatus` for ``split`` (``state="missing"`` when absent)."""
        check_split_name(split)
        if split not in self:
            return SplitStatus(split, "missing")
        layout = self.layout(split)
        done = [c for c in self.done_chunks(split) if c < layout.n_chunks]
        done_rows = sum(hi - lo for lo, hi in map(layout.chunk_bounds, done))
        state = "complete" if self.is_complete(split) else "partial"
        return SplitStatus(split, state, layout.n_chunks, len(done), layout.n_rows, done_rows)

    def split(self, split: str, allow_incomplete: bool = False, verify: bool = True) -> "SplitReader":
        """A :class:`SplitReader` over ``split``.

        ``verify``: check each chunk file against the size and CRC-32C its done-marker
        recorded the first time the reader touches it (a damaged file raises
        :class:`StoreIntegrityError` naming it); chunks written before checksums were
        recorded are checked for size only.

        Raises:
            DebuggableError: no such split, or it is incomplete and ``allow_incomplete``
                is false.
        """
        return SplitReader(self, split, allow_incomplete=allow_incomplete, verify=verify)

    # -- integrity -----------------------------------------------------------------

    def _read_marker(self, split: str, c: int) -> dict[str, Any]:
        """Chunk ``c``'s done-marker, or raise :class:`StoreIntegrityError` if it is unreadable."""
        path = self._split_dir(split) / _CHUNKS_DIR / f"{c:08d}.json"
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreIntegrityError(path, split, c, "missing (the chunk's done-marker)") from None
        except (OSError, ValueError) as exc:
            raise StoreIntegrityError(path, split, c, f"unreadable ({exc})") from None
        if not isinstance(marker, dict) or not isinstance(marker.get("moments"), dict):
            raise StoreIntegrityError(path, split, c, "not a done-marker")
        return marker

    def _marker_files(self, split: str, c: int) -> dict[str, Any] | None:
        """Just the ``files`` table of chunk ``c``'s done-marker (``None`` without one).

        The writer puts ``files`` last, so a reader parses that tail instead of the
        whole marker (whose moments hold 2 x D floats); anything unexpected falls back
        to the full parse, which names a damaged marker.
        """
        path = self._split_dir(split) / _CHUNKS_DIR / f"{c:08d}.json"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return self._read_marker(split, c).get("files")
        at = text.rfind('"files": {')
        if at >= 0:
            try:
                files = json.loads("{" + text[at:])["files"]
                if isinstance(files, dict) and all(isinstance(v, dict) and "bytes" in v for v in files.values()):
                    return files
            except ValueError:
                pass
        return self._read_marker(split, c).get("files")

    def verify(self, split: str, full: bool = True) -> SplitCheck:
        """Check every done chunk of ``split`` against its done-marker.

        Args:
            split: the split.
            full: read every chunk file and compare its CRC-32C with the recorded one;
                ``False`` checks only that each file exists with the recorded size (a
                few ``stat`` calls per chunk, what ``debuggable status`` does).

        Returns:
            A :class:`SplitCheck`; its ``problems`` name each damaged file. Chunks
            written before checksums were recorded count as ``unchecksummed`` and are
            checked for presence and size only.
        """
        layout = self.layout(split)
        d = self._split_dir(split)
        complete = (d / _COMPLETE).is_file()
        problems: list[ChunkProblem] = []
        if complete:
            try:
                json.loads((d / _COMPLETE).read_text(encoding="utf-8"))["moments"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(ChunkProblem(split, None, d / _COMPLETE, f"unreadable ({exc})"))
        handles = {}
        for a in layout.arrays:
            try:
                handles[a] = _ArrayHandle(d / a, mode="r")
            except DebuggableError as exc:
                problems.append(ChunkProblem(split, None, d / a / "zarr.json", f"unreadable ({exc})"))
        if len(handles) < len(layout.arrays):
            return SplitCheck(split, "complete" if complete else "partial", layout.n_chunks, 0, 0, bool(full),
                              tuple(problems))
        done = [c for c in self.done_chunks(split) if c < layout.n_chunks]
        if complete:
            for c in sorted(set(range(layout.n_chunks)) - set(done)):
                problems.append(ChunkProblem(split, c, d / _CHUNKS_DIR / f"{c:08d}.json", "missing (the chunk's done-marker)"))
        unchecksummed = 0
        for c in done:
            try:
                marker = self._read_marker(split, c)
            except StoreIntegrityError as exc:
                problems.append(ChunkProblem(split, c, exc.file, exc.problem))
                continue
            files = marker.get("files")
            if files is None:
                unchecksummed += 1
            for name, h in handles.items():
                rec = None if files is None else files.get(name)
                h.expected = (lambda _c, rec=rec: rec) if (full or rec is None) else None
                try:
                    if full or rec is None:
                        h.check_file(c)
                    else:
                        path = h.chunk_path(c)
                        size = path.stat().st_size
                        if size != rec["bytes"]:
                            what = "truncated" if size < rec["bytes"] else "longer than recorded"
                            problems.append(ChunkProblem(split, c, path, f"{what} ({size} of {rec['bytes']} bytes)"))
                except FileNotFoundError:
                    problems.append(ChunkProblem(split, c, h.chunk_path(c), "missing although its chunk is marked done"))
                except StoreIntegrityError as exc:
                    problems.append(ChunkProblem(split, c, exc.file, exc.problem))
        return SplitCheck(split, "complete" if complete else "partial", layout.n_chunks, len(done), unchecksummed,
                          bool(full), tuple(problems))

    __getitem__ = split

    def delete_split(self, split: str) -> bool:
        """Delete ``split`` (first renamed away atomically); return whether it existed."""
        src = self._split_dir(split)
        if not src.exists():
            return False
        trash = self.path / f".deleting-{split}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(src, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def create_split(
        self,
        split: str,
        layout: SplitLayout,
        *,
        class_names: Sequence[str],
        fingerprint: str,
        metadata: dict[str, Any] | None = None,
    ) -> "SplitWriter":
        """Create ``split`` (or join it when another writer already created it identically).

        The split's group and empty arrays are built under a temporary name and renamed
        into place, so concurrent writers end up sharing one set of arrays.

        Args:
            split: the split name.
            layout: the arrays' shapes, chunking and encoding.
            class_names: the K data set class names (label k means ``class_names[k]``).
            fingerprint: identifies the data/model that produced the split; joining an
                existing split requires the same fingerprint.
            metadata: JSON-serialisable extra attributes (backbone, dataset, extraction).

        Returns:
            A :class:`SplitWriter` for the split.

        Raises:
            DebuggableError: the split exists with another fingerprint or layout.
        """
        if self.mode != "a":
            raise DebuggableError(f"mode: the feature store {str(self.path)!r} was opened read-only; open it with mode='a'.")
        check_split_name(split)
        if split not in self:
            attrs = {
                _SPLIT_KEY: {
                    **(metadata or {}),
                    "format_version": FORMAT_VERSION,
                    "name": split,
                    "layout": layout.to_dict(),
                    "arrays": list(layout.arrays),
                    "class_names": [str(c) for c in class_names],
                    "fingerprint": str(fingerprint),
                }
            }
            host = socket.gethostname().replace("-", "_")
            tmp = self.path / f".creating-{split}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                group = zarr.open_group(store=LocalStore(tmp), mode="w-", zarr_format=3, attributes=json.loads(json.dumps(attrs)))
                compressors = None
                if layout.compression == "blosc":
                    compressors = [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]
                for name in layout.arrays:
                    row = layout.row_shape(name)
                    group.create_array(
                        name,
                        shape=(layout.n_rows,) + row,
                        chunks=(layout.chunk_rows,) + row,
                        dtype=layout.dtype(name),
                        compressors=compressors,
                        fill_value=0,
                        chunk_key_encoding={"name": "default", "separator": "/"},
                        dimension_names=("row",) + tuple(f"dim{i}" for i in range(len(row))),
                    )
                (tmp / _CHUNKS_DIR).mkdir()
                try:
                    os.rename(tmp, self.path / split)
                except OSError:
                    if split not in self:
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        meta = self.metadata(split)
        if meta.get("fingerprint") != str(fingerprint):
            raise DebuggableError(
                f"split: {split!r} in {str(self.path)!r} was made from a different backbone or dataset "
                f"(fingerprint {meta.get('fingerprint')!r}, now {fingerprint!r}); use a new directory or overwrite=True."
            )
        stored = SplitLayout.from_dict(meta["layout"])
        if stored != layout:
            raise DebuggableError(
                f"split: {split!r} in {str(self.path)!r} was started with another layout "
                f"({'; '.join(stored.differences(layout))}); use the same settings, a new directory or overwrite=True."
            )
        return SplitWriter(self, split)

    def writer(self, split: str) -> "SplitWriter":
        """A :class:`SplitWriter` for an existing split."""
        if self.mode != "a":
            raise DebuggableError(f"mode: the feature store {str(self.path)!r} was opened read-only; open it with mode='a'.")
        self.metadata(split)
        return SplitWriter(self, split)

    def info(self) -> dict[str, Any]:
        """A JSON-serialisable summary (format version, each split's status and layout)."""
        out: dict[str, Any] = {"path": str(self.path), "format_version": FORMAT_VERSION, "splits": {}}
        for s in self.splits():
            st = self.status(s)
            out["splits"][s] = {
                "state": st.state,
                "done_chunks": st.done_chunks,
                "n_chunks": st.n_chunks,
                "layout": self.layout(s).to_dict(),
            }
        return out

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, splits={self.splits()})"


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------


class SplitWriter:
    """Writes whole chunks of one split; several writers may work on disjoint chunks.

    Obtain one from :meth:`FeatureStore.create_split` or :meth:`FeatureStore.writer`.

    Attributes:
        store: the :class:`FeatureStore`.
        name: the split.
        layout: its :class:`SplitLayout`.
    """

    def __init__(self, store: FeatureStore, split: str):
        self.store = store
        self.name = split
        self.dir = store.path / split
        self.meta = store.metadata(split)
        self.layout = SplitLayout.from_dict(self.meta["layout"])
        self._arrays = {a: _ArrayHandle(self.dir / a, mode="r+") for a in self.layout.arrays}

    @property
    def n_chunks(self) -> int:
        return self.layout.n_chunks

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of chunk ``i``."""
        return self.layout.chunk_bounds(i)

    def done_chunks(self) -> list[int]:
        """Sorted indices of chunks with a done-marker."""
        return [c for c in self.store.done_chunks(self.name) if c < self.n_chunks]

    def missing_chunks(self) -> list[int]:
        """Sorted indices of chunks without a done-marker (to (re)compute)."""
        done = set(self.done_chunks())
        return [c for c in range(self.n_chunks) if c not in done]

    def _marker_path(self, i: int) -> Path:
        return self.dir / _CHUNKS_DIR / f"{i:08d}.json"

    def invalidate(self, chunks: Sequence[int]) -> None:
        """Forget chunks (for :func:`extract_features` ``repair=True``): the completion
        marker goes first (also when ``chunks`` is empty), then each chunk's done-marker,
        so the split reads as partial and a rerun recomputes exactly these chunks."""
        (self.dir / _COMPLETE).unlink(missing_ok=True)
        for c in chunks:
            self._marker_path(int(c)).unlink(missing_ok=True)

    def write_chunk(
        self,
        i: int,
        *,
        features: np.ndarray,
        labels: np.ndarray,
        logits: np.ndarray | None = None,
        preds: np.ndarray | None = None,
        spatial: np.ndarray | None = None,
        fsync: bool = True,
    ) -> RunningMoments:
        """Write all arrays of chunk ``i``, then its done-marker.

        Args:
            i: chunk index; the arrays hold rows ``chunk_bounds(i)``.
            features: (n, D) float32; must be finite.
            labels: (n,) int64.
            logits: (n, K) float32 when the split stores logits.
            preds: (n,) int64 when the split stores logits.
            spatial: (n, C, h, w) when the split stores spatial maps (cast to the
                split's spatial dtype).
            fsync: flush chunk files and marker to disk before declaring the chunk done.

        Returns:
            The chunk's feature :class:`RunningMoments` (also stored in the marker).
        """
        lo, hi = self.chunk_bounds(i)
        given = {"features": features, "labels": labels, "logits": logits, "preds": preds, "spatial": spatial}
        data: dict[str, np.ndarray] = {}
        for name in ARRAY_NAMES:
            value = given[name]
            if name not in self.layout.arrays:
                if value is not None:
                    raise DebuggableError(f"{name}: split {self.name!r} does not store {name}, but an array was given.")
                continue
            if value is None:
                raise DebuggableError(f"{name}: split {self.name!r} stores {name}; expected an array for chunk {i}.")
            arr = np.ascontiguousarray(np.asarray(value), dtype=self.layout.dtype(name))
            want = (hi - lo,) + self.layout.row_shape(name)
            if arr.shape != want:
                raise DebuggableError(f"{name}: chunk {i} of split {self.name!r} needs shape {want}, got {arr.shape}.")
            data[name] = arr
        if not np.isfinite(data["features"]).all():
            raise DebuggableError(f"features: chunk {i} (rows {lo}..{hi - 1}) of split {self.name!r} contains NaN or inf.")
        moments = RunningMoments.from_block(data["features"])
        files = {name: self._arrays[name].write_chunk(i, arr, fsync=fsync) for name, arr in data.items()}
        marker = {"chunk": int(i), "rows": [int(lo), int(hi)], "moments": moments.to_dict(),
                  "checksum": CHECKSUM, "files": files}
        atomic_write_text(self._marker_path(i), json.dumps(marker), fsync=fsync)
        return moments

    def finalize(self, fsync: bool = True) -> bool:
        """Declare the split complete if every chunk is done; return whether it is complete.

        Merges the per-chunk moments in chunk order (so the result does not depend on
        the order chunks were written in) and writes ``_complete.json`` atomically, last.
        Safe to call from several writers at once: they all write the same content.
        """
        if (self.dir / _COMPLETE).is_file():
            return True
        if self.missing_chunks():
            return False
        total = RunningMoments()
        for i in range(self.n_chunks):
            marker = self.store._read_marker(self.name, i)
            if marker.get("rows") != list(self.chunk_bounds(i)):
                raise DebuggableError(
                    f"store: done-marker of chunk {i} in split {self.name!r} covers rows {marker.get('rows')}, "
                    f"expected {list(self.chunk_bounds(i))}; re-extract with overwrite=True."
                )
            total.merge(RunningMoments.from_dict(marker["moments"]))
        self._cleanup_partials()
        complete = {
            "format_version": FORMAT_VERSION,
            "n_rows": self.layout.n_rows,
            "n_chunks": self.n_chunks,
            "fingerprint": self.meta.get("fingerprint"),
            "completed_at": _now(),
            "moments": total.to_dict(),
        }
        atomic_write_text(self.dir / _COMPLETE, json.dumps(complete), fsync=fsync)
        return True

    def _cleanup_partials(self) -> None:
        for name in self.layout.arrays:
            for p in (self.dir / name).rglob("*.partial"):
                try:
                    p.unlink()
                except OSError:
                    pass
        for p in (self.dir / _CHUNKS_DIR).glob(".*.tmp-*"):
            try:
                p.unlink()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------


def _to_device(block: np.ndarray, device: torch.device | str | None) -> torch.Tensor:
    import torch

    t = torch.from_numpy(block)
    if device is None:
        return t
    device = torch.device(device)
    if device.type == "cuda":
        pinned = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        pinned.copy_(t)
        return pinned.to(device, non_blocking=True)
    return t.to(device)


class SplitReader:
    """Reads one split of a :class:`FeatureStore`.

    Args:
        store: the store.
        split: the split name.
        allow_incomplete: open a split that is not complete (rows of chunks without a
            done-marker, as of opening, read as 0; :meth:`moments` is unavailable).

    Attributes:
        name: the split.
        layout: its :class:`SplitLayout`.
        metadata: the split attributes (see :meth:`FeatureStore.metadata`).
        complete: whether the split carries its completion marker.
    """

    def __init__(self, store: FeatureStore, split: str, allow_incomplete: bool = False, verify: bool = True):
        self.store = store
        self.name = check_split_name(split)
        self.metadata = store.metadata(split)
        self.layout = SplitLayout.from_dict(self.metadata["layout"])
        self.dir = store.path / split
        self.complete = (self.dir / _COMPLETE).is_file()
        if not self.complete and not allow_incomplete:
            st = store.status(split)
            raise DebuggableError(
                f"split: {split!r} in {str(store.path)!r} is incomplete ({st.done_chunks} of {st.n_chunks} chunks done); "
                "rerun the extraction to finish it, or open it with allow_incomplete=True."
            )
        self._arrays = {a: _ArrayHandle(self.dir / a, mode="r") for a in self.layout.arrays}
        if not self.complete:
            # Only chunks with a done-marker hold trustworthy data; the rest read as 0.
            done = set(store.done_chunks(split))
            for h in self._arrays.values():
                h.done = done
        self.verify = bool(verify)
        #: chunks that ``extract_features(..., repair=True)`` recomputed to return this reader
        self.repaired_chunks: list[int] = []
        self._records: dict[int, dict[str, Any] | None] = {}
        if self.verify:
            for name, h in self._arrays.items():
                h.expected = (lambda c, name=name: self._file_record(c, name))
        self._moments: RunningMoments | None = None

    def _file_record(self, c: int, array: str) -> dict[str, int] | None:
        """The ``{"bytes", "crc32c"}`` chunk ``c``'s done-marker recorded for ``array``
        (``None`` when the chunk was written before checksums were recorded)."""
        if c not in self._records:
            self._records[c] = self.store._marker_files(self.name, c)
        files = self._records[c]
        return None if files is None else files.get(array)

    # -- description -------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """N, rows in the split."""
        return self.layout.n_rows

    def __len__(self) -> int:
        return self.layout.n_rows

    @property
    def shape(self) -> tuple[int, int]:
        """(N, D) of ``features``."""
        return (self.layout.n_rows, self.layout.feature_dim)

    @property
    def feature_dim(self) -> int:
        return self.layout.feature_dim

    @property
    def num_classes(self) -> int | None:
        """K of the stored logits, or ``None`` without a head."""
        return self.layout.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata.get("class_names", []))

    @property
    def chunk_rows(self) -> int:
        return self.layout.chunk_rows

    @property
    def n_chunks(self) -> int:
        return self.layout.n_chunks

    @property
    def arrays(self) -> tuple[str, ...]:
        """Names of the stored arrays."""
        return self.layout.arrays

    @property
    def fingerprint(self) -> str:
        return str(self.metadata.get("fingerprint"))

    @property
    def backbone(self) -> dict[str, Any]:
        """The backbone description recorded at extraction (``{}`` if none)."""
        return dict(self.metadata.get("backbone", {}))

    @property
    def dataset(self) -> dict[str, Any]:
        """The dataset description recorded at extraction (``{}`` if none)."""
        return dict(self.metadata.get("dataset", {}))

    def array_shape(self, array: str = "features") -> tuple[int, ...]:
        """Full shape of ``array``."""
        return self._handle(array).shape

    def dtype(self, array: str = "features") -> np.dtype:
        return self._handle(array).dtype

    def is_memmappable(self, array: str = "features") -> bool:
        """Whether ``array`` is stored raw, so :meth:`iter_memmaps` works."""
        return self._handle(array).raw

    def _handle(self, array: str) -> _ArrayHandle:
        if array not in self._arrays:
            raise DebuggableError(f"array: split {self.name!r} has no array {array!r}; it stores {list(self.arrays)}.")
        return self._arrays[array]

    # -- reading -------------------------------------------------------------------

    def read(self, array: str = "features", rows: Any = None) -> np.ndarray:
        """Rows of one array as a NumPy array.

        Args:
            array: one of :attr:`arrays`.
            rows: ``None`` (all), a slice, an int, an integer array (any order,
                repeats allowed; negative counts from the end) or a boolean mask of
                length N.

        Returns:
            ``(len(rows), *row_shape)`` array of the array's dtype (``row_shape`` for an
            int).
        """
        h = self._handle(array)
        n = self.n_rows
        if rows is None:
            return h.read_range(0, n)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                return h.read_range(start, max(start, stop))
            return h.read_index(np.arange(start, stop, step, dtype=np.int64))
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            r = int(rows)
            if not -n <= r < n:
                raise DebuggableError(f"rows: index {r} is out of range for split {self.name!r} with {n} rows.")
            r %= n
            return h.read_range(r, r + 1)[0]
        idx = np.asarray(rows.cpu() if is_tensor(rows) else rows)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise DebuggableError(f"rows: a boolean mask must have shape ({n},), got {idx.shape}.")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise DebuggableError(f"rows: expected a slice, an int, a 1-D integer array or a boolean mask, got {rows!r}.")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise DebuggableError(f"rows: index {bad} is out of range for split {self.name!r} with {n} rows.")
        return h.read_index(np.where(idx < 0, idx + n, idx))

    def iter_blocks(
        self,
        array: str | Sequence[str] = "features",
        block_rows: int | None = None,
        *,
        start: int = 0,
        stop: int | None = None,
        as_torch: bool = False,
        device: torch.device | str | None = None,
        prefetch: bool = True,
    ) -> Iterator[tuple[int, Any]]:
        """Stream consecutive row blocks, in row order, without loading the whole array.

        Args:
            array: one array name, or several (then each block is a tuple in that order).
            block_rows: rows per block; default one chunk (reads then touch exactly one
                file per array).
            start, stop: the row range to stream (default: all rows).
            as_torch: yield torch tensors instead of NumPy arrays.
            device: with ``as_torch``, the device to put blocks on (CUDA blocks go
                through pinned memory).
            prefetch: read the next block in a background thread while the caller
                works on the current one.

        Yields:
            ``(row_start, block)`` with ``block`` of shape ``(b, *row_shape)``.
        """
        names = (array,) if isinstance(array, str) else tuple(array)
        handles = [self._handle(a) for a in names]
        block_rows = self.chunk_rows if block_rows is None else block_rows
        if not isinstance(block_rows, (int, np.integer)) or isinstance(block_rows, bool) or block_rows < 1:
            raise DebuggableError(f"block_rows: expected a positive integer, got {block_rows!r}.")
        stop = self.n_rows if stop is None else stop
        if not (0 <= start <= stop <= self.n_rows):
            raise DebuggableError(f"start, stop: expected 0 <= start <= stop <= {self.n_rows}, got {start}, {stop}.")
        if as_torch is False and device is not None:
            as_torch = True

        def load(lo: int) -> tuple[int, Any]:
            hi = min(lo + block_rows, stop)
            blocks = [h.read_range(lo, hi) for h in handles]
            if as_torch:
                blocks = [_to_device(b, device) for b in blocks]
            return lo, (blocks[0] if isinstance(array, str) else tuple(blocks))

        starts = range(start, stop, int(block_rows))
        if not prefetch or len(starts) < 2:
            for lo in starts:
                yield load(lo)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-prefetch") as pool:
            pending = pool.submit(load, starts[0])
            for nxt in starts[1:]:
                current = pending.result()
                pending = pool.submit(load, nxt)
                yield current
            yield pending.result()

    def to_numpy(self, array: str = "features") -> np.ndarray:
        """The whole array, ``(N, *row_shape)``, in memory."""
        return self.read(array)

    def to_torch(self, array: str = "features", device: torch.device | str | None = None) -> torch.Tensor:
        """The whole array as a tensor on ``device`` (default CPU)."""
        return _to_device(self.read(array), device)

    def iter_memmaps(self, array: str = "features") -> Iterator[tuple[int, np.ndarray]]:
        """Zero-copy read-only views of each chunk, in row order.

        Only for arrays stored uncompressed (the default; see :meth:`is_memmappable`).

        Yields:
            ``(row_start, view)`` with ``view`` a :class:`numpy.memmap` of shape
            ``(rows_in_chunk, *row_shape)``; a chunk without a done-marker (incomplete
            splits only) is yielded as zeros.
        """
        h = self._handle(array)
        for c in range(self.n_chunks):
            lo, hi = self.layout.chunk_bounds(c)
            mm = h.memmap_chunk(c, hi - lo)
            yield lo, (mm if mm is not None else np.zeros((hi - lo,) + h.row_shape, dtype=h.dtype))

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 labels."""
        return self.read("labels")

    # -- statistics -------------------------------------------------------------

    def moments(self) -> RunningMoments:
        """Per-feature count/mean/M2 of ``features`` (float64), merged in chunk order.

        Raises:
            DebuggableError: the split is not complete.
        """
        if self._moments is None:
            path = self.dir / _COMPLETE
            if not path.is_file():
                raise DebuggableError(f"split: {self.name!r} is incomplete, so its feature moments are not available yet.")
            self._moments = RunningMoments.from_dict(json.loads(path.read_text(encoding="utf-8"))["moments"])
        return self._moments.copy()

    @property
    def mean(self) -> np.ndarray:
        """(D,) float64 per-feature mean of ``features``."""
        return self.moments().mean

    def std(self, ddof: int = 0) -> np.ndarray:
        """(D,) float64 per-feature standard deviation of ``features``."""
        return self.moments().std(ddof)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"SplitReader({self.name!r}, n_rows={self.n_rows}, feature_dim={self.feature_dim}, {state})"
