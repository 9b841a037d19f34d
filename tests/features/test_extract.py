"""extract_features / extract_splits: correctness, checks, resumability, many writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from debuggable.data.base import TextDataset
from debuggable.errors import DebuggableError
from debuggable.features import FeatureStore, RunningMoments, extract_features, extract_splits, split_fingerprint

from .tiny import NoSpatialBackbone, RawDataset, TinyConvBackbone, TinyTextBackbone, make_dataset

WORKER = Path(__file__).with_name("resume_worker.py")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _direct(backbone, dataset):
    with torch.inference_mode():
        return backbone(dataset.batch(np.arange(len(dataset)))[0])


def _store_bytes(split_dir: Path) -> dict[str, bytes]:
    """Every array file of a split (metadata and chunks), by relative path."""
    out = {}
    for p in sorted(split_dir.rglob("*")):
        rel = p.relative_to(split_dir)
        if p.is_file() and rel.parts[0] not in ("_chunks", "_complete.json", "zarr.json"):
            out[str(rel)] = p.read_bytes()
    return out


# ---------------------------------------------------------------------------
# correctness
# ---------------------------------------------------------------------------


def test_extraction_matches_the_model_and_numpy_stats(tmp_path):
    bb, ds = TinyConvBackbone(), make_dataset(70)
    r = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=20, spatial=True, progress=False)
    assert r.complete and r.n_rows == 70 and r.n_chunks == 4
    ref = _direct(bb, ds)
    np.testing.assert_allclose(r.read("features"), ref.features.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.read("logits"), ref.logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.read("spatial"), ref.spatial.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(r.read("preds"), r.read("logits").argmax(1))
    assert np.array_equal(r.labels, ds.labels)
    f64 = r.read("features").astype(np.float64)
    np.testing.assert_allclose(r.mean, f64.mean(0), rtol=1e-13)
    np.testing.assert_allclose(r.std(), f64.std(0), rtol=1e-10)
    assert r.class_names == ds.class_names
    assert r.backbone["name"] == "tiny-conv" and r.dataset["n_rows"] == 70


def test_train_mode_is_restored_and_complete_split_is_skipped(tmp_path):
    bb, ds = TinyConvBackbone(), make_dataset(30)
    bb.train()
    r1 = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, progress=False)
    assert bb.training
    calls = bb.calls
    r2 = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, progress=False)
    assert bb.calls == calls  # nothing recomputed
    assert np.array_equal(r1.to_numpy(), r2.to_numpy())


def test_batches_align_to_chunks_and_float16_spatial(tmp_path):
    bb, ds = TinyConvBackbone(), make_dataset(50)
    r = extract_features(bb, ds, tmp_path / "fs", "val", batch_size=7, chunk_rows=12, spatial=True,
                         spatial_dtype="float16", progress=False)
    assert r.dtype("spatial") == np.float16
    ref = _direct(bb, ds)
    np.testing.assert_allclose(r.read("spatial").astype(np.float32), ref.spatial.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(r.read("features"), ref.features.numpy(), rtol=1e-5, atol=1e-6)


def test_headless_backbone_and_compression(tmp_path):
    bb, ds = NoSpatialBackbone(num_classes=None), make_dataset(40)
    r = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=16, compression="blosc", progress=False)
    assert r.arrays == ("features", "labels")
    np.testing.assert_allclose(r.read("features"), _direct(bb, ds).features.numpy(), rtol=1e-5, atol=1e-6)


def test_text_backbone(tmp_path):
    texts = [f"example {i} " + "ab" * (i % 7) for i in range(45)]
    ds = TextDataset(texts, [i % 2 for i in range(45)], ["neg", "pos"], name="texts")
    bb = TinyTextBackbone()
    r = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=16, progress=False)
    np.testing.assert_allclose(r.read("features"), _direct(bb, ds).features.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(r.labels, ds.labels)


def test_amp_on_cpu_when_asked_and_resuming_with_other_amp_is_refused(tmp_path):
    bb, ds = TinyConvBackbone(), make_dataset(40)
    ds.images[30, 0, 0, 0] = 255
    nan_bb = TinyConvBackbone(nan_trigger=True)
    with pytest.raises(DebuggableError, match="NaN"):
        extract_features(nan_bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, amp="bf16", progress=False)
    with pytest.raises(DebuggableError, match=r"amp 'bfloat16' -> None"):
        extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, progress=False)
    r = extract_features(bb, ds, tmp_path / "fs2", "train", batch_size=8, amp=True, progress=False)
    assert r.dtype("features") == np.float32 and r.metadata["extraction"]["amp"] == "bfloat16"
    np.testing.assert_allclose(r.read("features"), _direct(bb, ds).features.numpy(), rtol=0.05, atol=0.05)


def test_extract_splits_checks_every_split_before_writing(tmp_path):
    bb = TinyConvBackbone()
    good = make_dataset(20, name="a")
    empty = RawDataset(torch.zeros(0, 3, 8, 8), np.zeros(0, dtype=np.int64), ["c0", "c1", "c2"])
    with pytest.raises(DebuggableError, match="split 'test' is empty"):
        extract_splits(bb, {"train": good, "test": empty}, tmp_path / "fs", progress=False)
    assert not (tmp_path / "fs").exists() and bb.calls == 0
    out = extract_splits(bb, {"train": good, "test": make_dataset(9, seed=3, name="b")}, tmp_path / "fs",
                         batch_size=4, progress=False)
    assert list(out) == ["train", "test"] and out["test"].n_rows == 9
    assert FeatureStore(tmp_path / "fs").splits() == ["test", "train"]


# ---------------------------------------------------------------------------
# checks before any work
# ---------------------------------------------------------------------------


def _nothing_written(bb, path):
    assert bb.calls == 0
    assert not Path(path).exists() or not any(Path(path).iterdir())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: (TinyConvBackbone(), RawDataset(torch.zeros(4, 3, 8, 8), [0, 1, 5, 2], ["a", "b", "c"])),
         r"has label 5; expected integers 0\.\.2"),
        (lambda: (TinyConvBackbone(), RawDataset(torch.zeros(0, 3, 8, 8), [], ["a"])), "is empty"),
        (lambda: (TinyConvBackbone(), TextDataset(["x", "y"], [0, 1], ["a", "b"])), "'text' data"),
        (lambda: (NoSpatialBackbone(), make_dataset(5)), "has no spatial map"),
    ],
)
def test_bad_inputs_fail_before_any_work(tmp_path, make, match):
    bb, ds = make()
    spatial = isinstance(bb, NoSpatialBackbone)
    with pytest.raises(DebuggableError, match=match):
        extract_features(bb, ds, tmp_path / "fs", "train", spatial=spatial, progress=False)
    _nothing_written(bb, tmp_path / "fs")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_rows": -3}, "chunk_rows"),
        ({"spatial_dtype": "int8"}, "spatial_dtype"),
        ({"amp": "fp8"}, "amp"),
        ({"compression": "lz4"}, "compression"),
        ({"device": "nonsense"}, "device"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"rank": 0, "world_size": 2, "overwrite": True}, "overwrite"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, kwargs, match):
    bb = TinyConvBackbone()
    with pytest.raises(DebuggableError, match=match):
        extract_features(bb, make_dataset(5), tmp_path / "fs", "train", progress=False, **kwargs)
    with pytest.raises(DebuggableError, match="split"):
        extract_features(bb, make_dataset(5), tmp_path / "fs", "bad/name", progress=False)
    _nothing_written(bb, tmp_path / "fs")


def test_unwritable_directory_fails_before_any_work(tmp_path):
    bb = TinyConvBackbone()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DebuggableError, match="expected a writable directory"):
        extract_features(bb, make_dataset(5), tmp_path / "afile" / "fs", "train", progress=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(DebuggableError, match="not a feature store"):
        extract_features(bb, make_dataset(5), tmp_path / "notes", "train", progress=False)
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(0o500)
        try:
            with pytest.raises(DebuggableError, match="not writable"):
                extract_features(bb, make_dataset(5), ro / "fs", "train", progress=False)
        finally:
            ro.chmod(0o700)
    assert bb.calls == 0


def test_fingerprint_mismatch_needs_a_new_directory_or_overwrite(tmp_path):
    ds = make_dataset(20)
    extract_features(TinyConvBackbone(seed=0), ds, tmp_path / "fs", "train", batch_size=8, progress=False)
    other = TinyConvBackbone(seed=1)
    with pytest.raises(DebuggableError, match="different backbone weights; use a new directory or overwrite=True"):
        extract_features(other, ds, tmp_path / "fs", "train", progress=False)
    assert other.calls == 0
    relabeled = make_dataset(20)
    relabeled.labels = (relabeled.labels + 1) % 3
    with pytest.raises(DebuggableError, match="different labels"):
        extract_features(TinyConvBackbone(seed=0), relabeled, tmp_path / "fs", "train", progress=False)
    with pytest.raises(DebuggableError, match="different dataset name, dataset length"):
        extract_features(TinyConvBackbone(seed=0), make_dataset(21, name="x"), tmp_path / "fs", "train", progress=False)
    r = extract_features(other, ds, tmp_path / "fs", "train", batch_size=8, overwrite=True, progress=False)
    assert r.complete and r.fingerprint == split_fingerprint(other, ds)[0]
    np.testing.assert_allclose(r.read("features"), _direct(other, ds).features.numpy(), rtol=1e-5, atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path):
    ds = make_dataset(40, seed=5)
    ds.images[25, 0, 0, 0] = 255  # row 25 -> NaN with nan_trigger
    nan_bb = TinyConvBackbone(nan_trigger=True)
    with pytest.raises(DebuggableError, match=r"split 'train'.*NaN or inf features for rows 24\.\.31 \(first at row 25\); the split was not marked complete"):
        extract_features(nan_bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, progress=False)
    store = FeatureStore(tmp_path / "fs")
    st = store.status("train")
    assert st.state == "partial" and st.done_chunks == 3  # chunks 0-2 before the bad one
    with pytest.raises(DebuggableError, match="incomplete"):
        store.split("train")
    with pytest.raises(DebuggableError, match=r"other settings \(chunk_rows 8 -> 16\)"):
        extract_features(nan_bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=16, progress=False)
    with pytest.raises(DebuggableError, match="spatial"):
        extract_features(nan_bb, ds, tmp_path / "fs", "train", batch_size=8, spatial=True, progress=False)


def test_nan_in_first_batch_writes_nothing(tmp_path):
    ds = make_dataset(10)
    ds.images[1, 0, 0, 0] = 255
    bb = TinyConvBackbone(nan_trigger=True)
    with pytest.raises(DebuggableError, match="rows 0..9 \\(first at row 1\\)"):
        extract_features(bb, ds, tmp_path / "fs", "train", batch_size=16, progress=False)
    assert not (tmp_path / "fs").exists()


def test_in_process_independent_writers(tmp_path):
    bb, ds = TinyConvBackbone(), make_dataset(60)
    ref = extract_features(bb, ds, tmp_path / "ref", "train", batch_size=8, chunk_rows=8, progress=False)
    a = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, rank=1, world_size=3, progress=False)
    assert not a.complete and FeatureStore(tmp_path / "fs").status("train").done_chunks == 3
    extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, rank=0, world_size=3, progress=False)
    c = extract_features(bb, ds, tmp_path / "fs", "train", batch_size=8, chunk_rows=8, rank=2, world_size=3, progress=False)
    assert c.complete
    assert _store_bytes(tmp_path / "fs" / "train") == _store_bytes(tmp_path / "ref" / "train")
    assert c.moments() == ref.moments()


# ---------------------------------------------------------------------------
# kill and resume (subprocesses)
# ---------------------------------------------------------------------------


def _worker(store: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(WORKER), str(store), *args]
    if log is not None:
        cmd += ["--log", str(log)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_worker(store: Path, *args: str, log: Path | None = None) -> tuple[int, str]:
    p = _worker(store, *args, log=log)
    out, err = p.communicate(timeout=120)
    return p.returncode, out + err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "fs"
    rc, out = _run_worker(path)
    assert rc == 0 and "complete" in out, out
    return path


def _assert_identical(path: Path, ref: Path) -> None:
    assert _store_bytes(path / "train") == _store_bytes(ref / "train")
    a, b = FeatureStore(path).split("train"), FeatureStore(ref).split("train")
    for name in a.arrays:
        assert a.read(name).tobytes() == b.read(name).tobytes()
    assert a.moments() == b.moments()
    assert a.mean.tobytes() == b.mean.tobytes() and a.std().tobytes() == b.std().tobytes()


def _assert_killed_and_incomplete(rc: int, out: str, path: Path) -> set[int]:
    assert rc == -signal.SIGKILL, out
    store = FeatureStore(path)
    assert not store.is_complete("train") and not (path / "train" / "_complete.json").exists()
    with pytest.raises(DebuggableError, match="incomplete"):
        store.split("train")
    return set(store.done_chunks("train"))


def test_kill_anywhere_and_resume_is_bit_identical(tmp_path, reference):
    path, log = tmp_path / "fs", tmp_path / "chunks.log"
    # 300 rows, 32-row chunks -> 10 chunks.
    rc, out = _run_worker(path, "--kill", "after-marker:3")
    assert _assert_killed_and_incomplete(rc, out, path) == {0, 1, 2}

    # Dies after chunk 4's data is flushed but before its done-marker: chunk 4 must be redone.
    rc, out = _run_worker(path, "--kill", "before-marker:2", log=log)
    done = _assert_killed_and_incomplete(rc, out, path)
    assert done == {0, 1, 2, 3} and (path / "train" / "features" / "c" / "4" / "0").exists()

    # Dies with a torn features file for chunk 5.
    rc, out = _run_worker(path, "--kill", "torn:3", log=log)
    done = _assert_killed_and_incomplete(rc, out, path)
    assert done == {0, 1, 2, 3, 4, 5}
    assert (path / "train" / "features" / "c" / "6" / "0").stat().st_size < 32 * 8 * 4

    # Killed from outside at an arbitrary moment (the parent watches the done-markers).
    p = _worker(path, "--delay", "0.15")
    deadline = time.time() + 60
    while len(FeatureStore(path).done_chunks("train")) < 8 and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    out = "".join(p.communicate(timeout=60))
    done = _assert_killed_and_incomplete(p.returncode, out, path)
    assert len(done) >= 8 and len(done) < 10

    log.write_text("")
    missing = set(range(10)) - done
    rc, out = _run_worker(path, log=log)
    assert rc == 0 and "complete" in out, out
    assert {int(x) for x in log.read_text().split()} == missing  # only missing chunks recomputed
    _assert_identical(path, reference)
    assert not list((path / "train").rglob("*.partial"))


def test_concurrent_writer_processes(tmp_path, reference):
    path = tmp_path / "fs"
    procs = [_worker(path, "--rank", str(r), "--world-size", "2") for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert any("complete" in o for o, _ in outs)
    assert FeatureStore(path).is_complete("train")
    assert not [p for p in path.iterdir() if p.name.startswith(".")]
    _assert_identical(path, reference)


def test_stats_do_not_depend_on_interruptions(tmp_path, reference):
    r = FeatureStore(reference).split("train")
    f = r.to_numpy()
    expected = RunningMoments.combine(RunningMoments.from_block(f[lo : lo + 32]) for lo in range(0, len(f), 32))
    assert r.moments() == expected
    np.testing.assert_allclose(r.mean, f.astype(np.float64).mean(0), rtol=1e-13)
