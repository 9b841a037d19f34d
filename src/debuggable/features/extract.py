"""Feature extraction into a :class:`~debuggable.features.store.FeatureStore`.

:func:`extract_features` runs a :class:`~debuggable.models.backbone.Backbone` over a
:class:`~debuggable.data.base.Dataset` chunk by chunk and writes, per row, the
features (D), label, logits (K) and prediction of the model's head when it has one,
and optionally the spatial map (C, h, w).

Resumability. Work is done in whole chunks (``chunk_rows`` rows; batches never
straddle a chunk boundary and always start at the chunk's first row), and a chunk
only counts once its done-marker is written after its data. A rerun after a crash or
``SIGKILL`` recomputes exactly the chunks without a marker, each with the same batch
composition as an uninterrupted run, so the stored bytes and the feature mean/std
(merged from per-chunk moments in chunk order) are bit-identical to an
uninterrupted run on the same machine and settings. A complete split is returned
without running the model.

Many writers. Each of ``world_size`` processes takes a contiguous range of chunks:
under ``torchrun`` (``torch.distributed`` initialised) ranks are read from the
process group and synchronise with barriers; independent processes (e.g. a job
array) pass ``rank``/``world_size`` explicitly, and whichever finishes last declares
the split complete.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

import debuggable
from debuggable.data.base import Dataset
from debuggable.errors import DebuggableError
from debuggable.features.store import (
    FeatureStore,
    SplitLayout,
    SplitReader,
    StoreIntegrityError,
    auto_chunk_rows,
    check_split_name,
)
from debuggable.models.backbone import Backbone, BackboneOutput

__all__ = ["extract_features", "extract_splits", "split_fingerprint"]

_AMP_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


# ---------------------------------------------------------------------------
# fingerprints
# ---------------------------------------------------------------------------


def _weights_sha256(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        try:
            raw = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        except (RuntimeError, TypeError):
            raw = t.cpu().to(torch.float64).contiguous().reshape(-1).numpy().view(np.uint8)
        h.update(memoryview(raw))
    return h.hexdigest()


def split_fingerprint(backbone: Backbone, dataset: Dataset) -> tuple[str, dict[str, Any]]:
    """Identify what a split was extracted from.

    The fingerprint covers the backbone's :meth:`~Backbone.describe` summary and a
    SHA-256 of its ``state_dict`` (so a retrained model with the same architecture is
    told apart), and the data set's name, length, class names and a SHA-256 of its
    labels.

    Returns:
        ``(fingerprint, detail)``: a 16-hex-digit id and the JSON-serialisable dict it
        hashes (``{"backbone", "weights_sha256", "dataset"}``).
    """
    labels = np.ascontiguousarray(np.asarray(dataset.labels, dtype="<i8"))
    detail = {
        "backbone": json.loads(json.dumps(backbone.describe(), sort_keys=True, default=str)),
        "weights_sha256": _weights_sha256(backbone),
        "dataset": {
            "name": str(getattr(dataset, "name", type(dataset).__name__)),
            "n_rows": int(len(dataset)),
            "class_names": [str(c) for c in dataset.class_names],
            "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
        },
    }
    digest = hashlib.sha256(json.dumps(detail, sort_keys=True).encode()).hexdigest()[:16]
    return digest, detail


def _fingerprint_difference(stored: dict[str, Any], now: dict[str, Any]) -> str:
    parts = []
    if stored.get("backbone") != now["backbone"]:
        parts.append("backbone description")
    if stored.get("weights_sha256") != now["weights_sha256"]:
        parts.append("backbone weights")
    sd, nd = stored.get("dataset", {}), now["dataset"]
    for key, label in (("name", "dataset name"), ("n_rows", "dataset length"), ("class_names", "class names"), ("labels_sha256", "labels")):
        if sd.get(key) != nd[key]:
            parts.append(label)
    return ", ".join(parts) or "fingerprint"


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise DebuggableError(f"{name}: expected a positive integer, got {value!r}.")


def _validate_inputs(backbone: Any, dataset: Any, split: Any) -> None:
    check_split_name(split)
    if not isinstance(backbone, Backbone):
        raise DebuggableError(f"backbone: expected a debuggable Backbone, got {type(backbone).__name__}.")
    if not isinstance(dataset, Dataset):
        raise DebuggableError(f"dataset: expected a debuggable Dataset for split {split!r}, got {type(dataset).__name__}.")
    n = len(dataset)
    if n == 0:
        raise DebuggableError(f"dataset: split {split!r} is empty; expected at least one example.")
    labels = np.asarray(dataset.labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise DebuggableError(
            f"dataset: split {split!r} labels must be an ({n},) integer array, got shape {labels.shape} dtype {labels.dtype}."
        )
    k = len(dataset.class_names)
    if labels.min() < 0 or labels.max() >= k:
        bad = labels[(labels < 0) | (labels >= k)][0]
        raise DebuggableError(
            f"dataset: split {split!r} has label {int(bad)}; expected integers 0..{k - 1} for its {k} class names."
        )
    if dataset.modality != backbone.modality:
        raise DebuggableError(
            f"dataset: split {split!r} is {dataset.modality!r} data but the backbone {backbone.name!r} takes "
            f"{backbone.modality!r} inputs; expected matching modalities."
        )
    if getattr(backbone, "feature_dim", None) is None:
        _infer_feature_dim(backbone, dataset, split)
    _check_int("backbone.feature_dim", getattr(backbone, "feature_dim", None))


def _infer_feature_dim(backbone: Backbone, dataset: Dataset, split: str) -> None:
    """Run the backbone once on the split's first item(s) so that an adapter that learns
    its shapes from its first forward pass (``ModuleBackbone`` without ``input_shape``)
    knows ``feature_dim`` before the fingerprint and the store layout are made.

    The backbone runs in eval mode without gradients; its train/eval flags are restored.
    """
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        x, _ = dataset.batch(np.arange(min(2, len(dataset)), dtype=np.int64))
        with torch.inference_mode():
            out = backbone(x)
    finally:
        for m, mode in modes:
            m.training = mode
    if getattr(backbone, "feature_dim", None) is None and isinstance(getattr(out, "features", None), torch.Tensor):
        if out.features.ndim == 2:
            backbone.feature_dim = int(out.features.shape[1])
    if getattr(backbone, "feature_dim", None) is None:
        raise DebuggableError(
            f"backbone.feature_dim: the backbone {backbone.name!r} still does not know its feature size after a forward "
            f"pass on the first rows of split {split!r}; expected an adapter that sets feature_dim."
        )


def _resolve_amp(amp: Any, device: torch.device) -> torch.dtype | None:
    if amp is None:
        amp = device.type == "cuda"
    if amp is False:
        return None
    if amp is True:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if isinstance(amp, str) and amp.lower() in _AMP_NAMES:
        return _AMP_NAMES[amp.lower()]
    if amp in (torch.bfloat16, torch.float16):
        return amp
    raise DebuggableError(f"amp: expected None, True, False, 'bf16' or 'fp16', got {amp!r}.")


def _resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int, bool]:
    """(rank, world_size, collective) where collective means torch.distributed barriers."""
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size(), True
        return 0, 1, False
    if rank is None or world_size is None:
        raise DebuggableError(f"rank, world_size: expected both or neither, got rank={rank!r}, world_size={world_size!r}.")
    _check_int("world_size", world_size)
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise DebuggableError(f"rank: expected an integer in 0..{world_size - 1}, got {rank!r}.")
    return int(rank), int(world_size), False


# ---------------------------------------------------------------------------
# planning (pure checks; nothing is written)
# ---------------------------------------------------------------------------


@dataclass
class _Plan:
    backbone: Backbone
    dataset: Dataset
    path: Path
    split: str
    batch_size: int
    chunk_rows: int | None
    spatial: bool
    spatial_dtype: str
    compression: str | None
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    progress: bool
    overwrite: bool
    fsync: bool
    rank: int
    world_size: int
    collective: bool
    fingerprint: str
    detail: dict[str, Any]
    state: str  # "missing" | "partial" | "complete"
    stored_layout: SplitLayout | None
    damaged: tuple[int, ...] = ()  # chunks ``repair=True`` recomputes
    repair: bool = False


def _plan(
    backbone: Backbone,
    dataset: Dataset,
    store_or_path: Any,
    split: str,
    *,
    batch_size: int = 256,
    chunk_rows: int | None = None,
    spatial: bool = False,
    spatial_dtype: str = "float32",
    device: Any = None,
    amp: Any = None,
    channels_last: bool | None = None,
    progress: bool = True,
    overwrite: bool = False,
    compression: str | None = None,
    fsync: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    repair: bool = False,
) -> _Plan:
    _validate_inputs(backbone, dataset, split)
    if not isinstance(repair, bool):
        raise DebuggableError(f"repair: expected True or False, got {repair!r}.")
    if repair and overwrite:
        raise DebuggableError("repair, overwrite: overwrite=True re-extracts everything; expected at most one of them.")
    _check_int("batch_size", batch_size)
    _check_int("chunk_rows", chunk_rows, allow_none=True)
    if not isinstance(spatial, bool):
        raise DebuggableError(f"spatial: expected True or False, got {spatial!r}.")
    if spatial and not backbone.has_spatial:
        raise DebuggableError(
            f"spatial: the backbone {backbone.name!r} has no spatial map (has_spatial=False); expected spatial=False."
        )
    if spatial_dtype not in ("float32", "float16"):
        raise DebuggableError(f"spatial_dtype: expected 'float32' or 'float16', got {spatial_dtype!r}.")
    if compression not in (None, "blosc"):
        raise DebuggableError(f"compression: expected None or 'blosc', got {compression!r}.")
    try:
        dev = torch.device(device) if device is not None else backbone.device
    except (RuntimeError, TypeError):
        raise DebuggableError(f"device: expected a torch device such as 'cpu' or 'cuda:0', got {device!r}.") from None
    amp_dtype = _resolve_amp(amp, dev)
    if channels_last is None:
        channels_last = dev.type == "cuda" and backbone.modality == "image"
    if not isinstance(channels_last, bool):
        raise DebuggableError(f"channels_last: expected None, True or False, got {channels_last!r}.")
    rank_, world, collective = _resolve_world(rank, world_size)
    if overwrite and world > 1 and not collective:
        raise DebuggableError(
            "overwrite: independent writers (explicit rank/world_size) would delete each other's chunks; "
            "expected overwrite=False (delete the split first with FeatureStore.delete_split) or torchrun."
        )

    path = Path(store_or_path.path if isinstance(store_or_path, FeatureStore) else store_or_path).expanduser()
    kind = FeatureStore.inspect_path(path)

    fingerprint, detail = split_fingerprint(backbone, dataset)
    state, stored_layout, damaged = "missing", None, ()
    if kind == "store":
        store = FeatureStore(path, mode="r")
        meta = None
        if split in store and not overwrite:
            try:
                meta = store.metadata(split)
            except StoreIntegrityError:
                if not repair:
                    raise
                overwrite = True  # the split's own metadata is damaged: only a whole re-extraction mends it
        if meta is not None:
            stored_layout = SplitLayout.from_dict(meta["layout"])
            state = "complete" if store.is_complete(split) else "partial"
            if meta.get("fingerprint") != fingerprint:
                raise DebuggableError(
                    f"store: split {split!r} in {str(path)!r} was extracted from a different "
                    f"{_fingerprint_difference(meta, detail)}; use a new directory or overwrite=True."
                )
            else:
                _check_compatible(split, path, stored_layout, state, meta, spatial, spatial_dtype, chunk_rows, compression, amp_dtype, batch_size, dev)
            if repair:
                check = store.verify(split, full=True)
                if any(p.chunk is None and p.file.name == "zarr.json" for p in check.problems):
                    overwrite, state, stored_layout = True, "missing", None
                elif check.problems:
                    damaged, state = tuple(check.damaged_chunks), "partial"
    if state != "complete":
        FeatureStore.check_writable(path)
    return _Plan(
        backbone=backbone,
        dataset=dataset,
        path=path,
        split=split,
        batch_size=int(batch_size),
        chunk_rows=None if chunk_rows is None else int(chunk_rows),
        spatial=spatial,
        spatial_dtype=spatial_dtype,
        compression=compression,
        device=dev,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        progress=bool(progress),
        overwrite=bool(overwrite),
        fsync=bool(fsync),
        rank=rank_,
        world_size=world,
        collective=collective,
        fingerprint=fingerprint,
        detail=detail,
        state=state,
        stored_layout=stored_layout,
        damaged=damaged,
        repair=repair,
    )


def _check_compatible(
    split: str,
    path: Path,
    stored: SplitLayout,
    state: str,
    meta: dict[str, Any],
    spatial: bool,
    spatial_dtype: str,
    chunk_rows: int | None,
    compression: str | None,
    amp_dtype: torch.dtype | None,
    batch_size: int,
    device: torch.device,
) -> None:
    """Raise unless a run with these settings may reuse (complete) or resume (partial) ``stored``."""
    where = f"split {split!r} in {str(path)!r}"
    has_spatial = stored.spatial_shape is not None
    if spatial and not has_spatial:
        raise DebuggableError(f"spatial: {where} was extracted without spatial maps; use overwrite=True to add them.")
    if spatial and stored.spatial_dtype != spatial_dtype:
        raise DebuggableError(
            f"spatial_dtype: {where} stores spatial maps as {stored.spatial_dtype}, not {spatial_dtype}; "
            "use the same dtype or overwrite=True."
        )
    if state == "complete":
        return
    problems = []
    if has_spatial != spatial:
        problems.append(f"spatial {has_spatial} -> {spatial}")
    if chunk_rows is not None and chunk_rows != stored.chunk_rows:
        problems.append(f"chunk_rows {stored.chunk_rows} -> {chunk_rows}")
    if compression != stored.compression:
        problems.append(f"compression {stored.compression!r} -> {compression!r}")
    old = meta.get("extraction", {})
    amp_name = None if amp_dtype is None else str(amp_dtype).replace("torch.", "")
    if old.get("amp", amp_name) != amp_name:
        problems.append(f"amp {old.get('amp')!r} -> {amp_name!r}")
    if problems:
        raise DebuggableError(
            f"store: {where} was started with other settings ({'; '.join(problems)}); resume with the same settings "
            "or pass overwrite=True."
        )
    if old.get("batch_size", batch_size) != batch_size or old.get("device_type", device.type) != device.type:
        warnings.warn(
            f"Resuming split {split!r} with batch_size={batch_size} on {device.type} although it was started with "
            f"batch_size={old.get('batch_size')} on {old.get('device_type')}; the remaining chunks may differ from an "
            "uninterrupted run in the last bits.",
            stacklevel=4,
        )


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


class _Prefetcher:
    """Loads dataset batches in a background thread, one or two ahead of the model."""

    _DONE = object()

    def __init__(self, dataset: Dataset, ranges: list[tuple[int, int]], depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(dataset, ranges), name="feature-loader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, dataset: Dataset, ranges: list[tuple[int, int]]) -> None:
        try:
            for lo, hi in ranges:
                if self._stop.is_set():
                    return
                x, y = dataset.batch(np.arange(lo, hi, dtype=np.int64))
                if not self._put((lo, hi, x, y)):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # forwarded to the consumer
            self._put(exc)

    def __iter__(self) -> Iterator[tuple[int, int, Any, Any]]:
        while True:
            item = self._q.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _batch_ranges(lo: int, hi: int, batch_size: int) -> list[tuple[int, int]]:
    return [(b, min(b + batch_size, hi)) for b in range(lo, hi, batch_size)]


def _forward(plan: _Plan, x: Any) -> BackboneOutput:
    if plan.channels_last and isinstance(x, torch.Tensor) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(device_type=plan.device.type, dtype=plan.amp_dtype) if plan.amp_dtype is not None else nullcontext()
    with ctx:
        return plan.backbone(x)


def _batch_arrays(plan: _Plan, out: BackboneOutput, lo: int, hi: int, layout: SplitLayout | None) -> dict[str, np.ndarray]:
    """Check one batch's outputs (shapes, finiteness) and return them as NumPy arrays."""
    b = hi - lo
    bb = plan.backbone
    where = f"split {plan.split!r}: the backbone {bb.name!r}"
    if not isinstance(out, BackboneOutput):
        raise DebuggableError(f"{where} returned {type(out).__name__}; expected a BackboneOutput.")
    tensors: dict[str, torch.Tensor] = {}
    feats = out.features
    if not isinstance(feats, torch.Tensor) or tuple(feats.shape) != (b, bb.feature_dim):
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise DebuggableError(f"{where} returned features of shape {got} for rows {lo}..{hi - 1}; expected ({b}, {bb.feature_dim}).")
    tensors["features"] = feats.float()
    k = layout.num_classes if layout is not None else bb.num_classes
    if k is not None:
        logits = out.logits
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (b, k):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else None
            raise DebuggableError(f"{where} returned logits of shape {got} for rows {lo}..{hi - 1}; expected ({b}, {k}).")
        tensors["logits"] = logits.float()
    if plan.spatial:
        sp = out.spatial
        want = None if layout is None else (b,) + tuple(layout.spatial_shape or ())
        if not isinstance(sp, torch.Tensor) or sp.ndim != 4 or sp.shape[0] != b or (want is not None and tuple(sp.shape) != want):
            got = tuple(sp.shape) if isinstance(sp, torch.Tensor) else None
            raise DebuggableError(
                f"{where} returned a spatial map of shape {got} for rows {lo}..{hi - 1}; expected "
                f"{want if want is not None else '(B, C, h, w)'}."
            )
        tensors["spatial"] = sp.float()
    for name, t in tensors.items():
        finite = torch.isfinite(t.reshape(b, -1)).all(dim=1)
        if not bool(finite.all()):
            first = lo + int((~finite).nonzero()[0, 0])
            raise DebuggableError(
                f"{where} produced NaN or inf {name} for rows {lo}..{hi - 1} (first at row {first}); "
                "the split was not marked complete."
            )
    arrays = {"features": tensors["features"].cpu().numpy()}
    if "logits" in tensors:
        arrays["preds"] = tensors["logits"].argmax(dim=1).to(torch.int64).cpu().numpy()
        arrays["logits"] = tensors["logits"].cpu().numpy()
    if "spatial" in tensors:
        arrays["spatial"] = tensors["spatial"].to(getattr(torch, plan.spatial_dtype)).cpu().numpy()
    return arrays


def _my_chunks(n_chunks: int, rank: int, world: int) -> list[int]:
    """Contiguous share of chunk indices for ``rank`` out of ``world``."""
    return [int(c) for c in np.array_split(np.arange(n_chunks), world)[rank]]


def _barrier(plan: _Plan) -> None:
    if plan.collective and plan.world_size > 1:
        torch.distributed.barrier()


def _run(plan: _Plan) -> SplitReader:
    if plan.state == "complete":
        return FeatureStore(plan.path, mode="r").split(plan.split)
    backbone, dataset = plan.backbone, plan.dataset
    n = len(dataset)
    labels_all = np.asarray(dataset.labels, dtype=np.int64)
    was_training = backbone.training
    backbone.eval()
    try:
        if backbone.device != plan.device:
            backbone.to(plan.device)
        if plan.channels_last:
            backbone.to(memory_format=torch.channels_last)
        if plan.overwrite:
            if plan.rank == 0:
                FeatureStore(plan.path, mode="a").delete_split(plan.split)
            _barrier(plan)
        elif plan.repair and plan.state == "partial":
            if plan.rank == 0:
                FeatureStore(plan.path, mode="a").writer(plan.split).invalidate(plan.damaged)
            _barrier(plan)
        exists = FeatureStore.inspect_path(plan.path) == "store" and plan.split in FeatureStore(plan.path, mode="r")

        cached: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        with torch.inference_mode():
            if exists:
                store = FeatureStore(plan.path, mode="a")
                writer = store.writer(plan.split)
            else:
                # Probe with chunk 0's first batch: it fixes the spatial shape and the
                # default chunk size, and validates outputs before anything is written.
                first = min(plan.batch_size, plan.chunk_rows or n, n)
                x, _ = dataset.batch(np.arange(0, first, dtype=np.int64))
                arrays = _batch_arrays(plan, _forward(plan, x), 0, first, None)
                store = FeatureStore(plan.path, mode="a")
                spatial_shape = tuple(arrays["spatial"].shape[1:]) if plan.spatial else None
                num_classes = backbone.num_classes
                draft = SplitLayout(
                    n_rows=n,
                    chunk_rows=1,
                    feature_dim=int(backbone.feature_dim),
                    num_classes=num_classes,
                    spatial_shape=spatial_shape,
                    spatial_dtype=plan.spatial_dtype,
                    compression=plan.compression,
                )
                chunk_rows = plan.chunk_rows or auto_chunk_rows(n, draft.row_bytes(), plan.batch_size)
                layout = SplitLayout(**{**draft.__dict__, "chunk_rows": chunk_rows})
                cached[(0, first)] = arrays
                writer = store.create_split(
                    plan.split,
                    layout,
                    class_names=dataset.class_names,
                    fingerprint=plan.fingerprint,
                    metadata={
                        "backbone": plan.detail["backbone"],
                        "weights_sha256": plan.detail["weights_sha256"],
                        "dataset": plan.detail["dataset"],
                        "extraction": {
                            "batch_size": plan.batch_size,
                            "amp": None if plan.amp_dtype is None else str(plan.amp_dtype).replace("torch.", ""),
                            "channels_last": plan.channels_last,
                            "device_type": plan.device.type,
                            "torch_version": torch.__version__,
                            "debuggable_version": debuggable.__version__,
                        },
                    },
                )
            layout = writer.layout
            mine = _my_chunks(layout.n_chunks, plan.rank, plan.world_size)
            done = set(writer.done_chunks())
            todo = [c for c in mine if c not in done]
            total_rows = sum(hi - lo for lo, hi in map(layout.chunk_bounds, mine))
            todo_rows = sum(hi - lo for lo, hi in map(layout.chunk_bounds, todo))
            if todo:
                _extract_chunks(plan, writer, layout, todo, labels_all, cached, total_rows, total_rows - todo_rows)
        _barrier(plan)
        if plan.rank == 0 or not plan.collective:
            writer.finalize(fsync=plan.fsync)
        _barrier(plan)
        complete = store.is_complete(plan.split)
        reader = store.split(plan.split, allow_incomplete=not complete)
        reader.repaired_chunks = list(plan.damaged)
        return reader
    finally:
        backbone.train(was_training)


def _extract_chunks(
    plan: _Plan,
    writer,
    layout: SplitLayout,
    todo: list[int],
    labels_all: np.ndarray,
    cached: dict[tuple[int, int], dict[str, np.ndarray]],
    total_rows: int,
    initial_rows: int,
) -> None:
    ranges: list[tuple[int, int]] = []
    for c in todo:
        lo, hi = layout.chunk_bounds(c)
        ranges += [r for r in _batch_ranges(lo, hi, plan.batch_size) if r not in cached]
    bar = tqdm(
        total=total_rows,
        initial=initial_rows,
        unit="row",
        desc=f"features[{plan.split}]",
        disable=(not plan.progress) or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    loader = _Prefetcher(plan.dataset, ranges)
    batches = iter(loader)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-writer")
    pending: Future | None = None
    try:
        for c in todo:
            lo, hi = layout.chunk_bounds(c)
            bufs = {
                name: np.empty((hi - lo,) + layout.row_shape(name), dtype=layout.dtype(name))
                for name in layout.arrays
                if name != "labels"
            }
            for b_lo, b_hi in _batch_ranges(lo, hi, plan.batch_size):
                arrays = cached.pop((b_lo, b_hi), None)
                if arrays is None:
                    got_lo, got_hi, x, y = next(batches)
                    assert (got_lo, got_hi) == (b_lo, b_hi)
                    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
                    if not np.array_equal(y, labels_all[b_lo:b_hi]):
                        raise DebuggableError(
                            f"dataset: split {plan.split!r} batch() returned labels for rows {b_lo}..{b_hi - 1} that differ "
                            "from dataset.labels; expected the same labels."
                        )
                    arrays = _batch_arrays(plan, _forward(plan, x), b_lo, b_hi, layout)
                for name, value in arrays.items():
                    bufs[name][b_lo - lo : b_hi - lo] = value
                bar.update(b_hi - b_lo)
            if pending is not None:
                pending.result()
            pending = pool.submit(
                writer.write_chunk, c, labels=labels_all[lo:hi], fsync=plan.fsync, **bufs
            )
        if pending is not None:
            pending.result()
    finally:
        loader.close()
        # Let an in-flight chunk write finish (its marker lands only if its data did).
        pool.shutdown(wait=True)
        bar.close()


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    store_or_path: FeatureStore | str | Path,
    split: str,
    *,
    batch_size: int = 256,
    chunk_rows: int | None = None,
    spatial: bool = False,
    spatial_dtype: str = "float32",
    device: torch.device | str | None = None,
    amp: bool | str | torch.dtype | None = None,
    channels_last: bool | None = None,
    progress: bool = True,
    overwrite: bool = False,
    compression: str | None = None,
    fsync: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    repair: bool = False,
) -> SplitReader:
    """Run ``backbone`` over ``dataset`` and store the outputs as split ``split``.

    Args:
        backbone: the model; put in eval mode for the run (its train/eval flag is
            restored afterwards) and moved to ``device`` (it stays there).
        dataset: N labelled examples of the backbone's modality.
        store_or_path: a :class:`FeatureStore` or the directory of one (created if
            missing; must be new, empty or a feature store).
        split: the split name (letters, digits, ``_ . -``).
        batch_size: rows per forward pass (batches start at each chunk's first row).
        chunk_rows: rows per chunk, the unit of writing and resuming; default aims at
            16 MiB per chunk in multiples of ``batch_size``. Resuming uses the stored value.
        spatial: also store the backbone's spatial map (N, C, h, w).
        spatial_dtype: ``"float32"`` or ``"float16"`` for the spatial map.
        device: where to run the model; default the backbone's device.
        amp: autocast dtype: ``None`` = bf16 (fp16 if bf16 is unsupported) on CUDA and
            off elsewhere; ``True``/``False``; ``"bf16"``/``"fp16"``. Stored arrays
            are float32 either way.
        channels_last: channels-last memory format for image models; default on CUDA
            only.
        progress: show a tqdm bar (only when stderr is a terminal).
        overwrite: replace an existing split of this name, even if it came from another
            backbone or dataset or is complete.
        compression: ``None`` (raw chunks, fastest, memory-mappable) or ``"blosc"``.
        fsync: flush each chunk to disk before its done-marker (durable against power
            loss, not just process death).
        rank, world_size: this process's share of the chunks when several independent
            processes extract the same split; default from ``torch.distributed`` when
            initialised, else a single writer.
        repair: check every done chunk of an existing split against its recorded
            size and CRC-32C (:meth:`FeatureStore.verify`) and recompute only the
            damaged ones (the reader's ``repaired_chunks`` lists them); a split whose
            own metadata is damaged is re-extracted whole.

    Returns:
        A :class:`SplitReader` over the split (complete unless other independent
        writers still have chunks to do; see :attr:`SplitReader.complete`).

    Raises:
        DebuggableError: bad arguments, an empty dataset, labels out of range,
            mismatched modality, an unwritable or foreign directory, an existing split
            from another backbone/dataset or with other settings, a backbone output of
            the wrong shape, or NaN/inf activations (the split stays incomplete). All
            but the last two are detected before anything is written.
    """
    plan = _plan(
        backbone,
        dataset,
        store_or_path,
        split,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        spatial=spatial,
        spatial_dtype=spatial_dtype,
        device=device,
        amp=amp,
        channels_last=channels_last,
        progress=progress,
        overwrite=overwrite,
        compression=compression,
        fsync=fsync,
        rank=rank,
        world_size=world_size,
        repair=repair,
    )
    return _run(plan)


def extract_splits(
    backbone: Backbone,
    splits: Mapping[str, Dataset] | Any,
    path: FeatureStore | str | Path,
    **kwargs: Any,
) -> dict[str, SplitReader]:
    """Extract several splits into one store, checking all of them before writing any.

    Args:
        backbone: the model.
        splits: split name -> :class:`Dataset`, or a ``DatasetSplits``.
        path: the store (or its directory).
        **kwargs: keyword arguments of :func:`extract_features`.

    Returns:
        split name -> :class:`SplitReader`, in the order given.
    """
    if hasattr(splits, "splits") and isinstance(getattr(splits, "splits"), Mapping):
        splits = splits.splits
    if not isinstance(splits, Mapping) or not splits:
        raise DebuggableError(f"splits: expected a non-empty mapping of split name to Dataset, got {splits!r}.")
    names = list(splits)
    plans = [_plan(backbone, splits[name], path, name, **kwargs) for name in names]
    return {p.split: _run(p) for p in plans}
