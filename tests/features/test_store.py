"""FeatureStore / SplitWriter / SplitReader: layout, completion protocol, readers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import zarr

from debuggable.errors import DebuggableError
from debuggable.features.stats import RunningMoments
from debuggable.features.store import FeatureStore, SplitLayout, auto_chunk_rows

N, D, K, CR = 103, 6, 4, 10
SPATIAL = (2, 3, 3)


def _data(seed: int = 0, n: int = N):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, K)).astype(np.float32)
    return {
        "features": rng.standard_normal((n, D)).astype(np.float32) * 3 + 100,
        "labels": rng.integers(0, K, n).astype(np.int64),
        "logits": logits,
        "preds": logits.argmax(1).astype(np.int64),
        "spatial": rng.standard_normal((n, *SPATIAL)).astype(np.float32),
    }


def _layout(**kw) -> SplitLayout:
    base = dict(n_rows=N, chunk_rows=CR, feature_dim=D, num_classes=K, spatial_shape=SPATIAL)
    base.update(kw)
    return SplitLayout(**base)


def _write(path, data, layout=None, order=None, finalize=True, split="train"):
    layout = layout or _layout()
    store = FeatureStore(path, mode="a")
    w = store.create_split(split, layout, class_names=[f"k{i}" for i in range(K)], fingerprint="fp0",
                           metadata={"backbone": {"name": "b"}, "dataset": {"name": "d"}})
    chunks = list(range(w.n_chunks)) if order is None else order
    for c in chunks:
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, **{a: data[a][lo:hi] for a in layout.arrays}, fsync=False)
    if finalize:
        assert w.finalize() is True
    return store, w


@pytest.fixture
def written(tmp_path):
    data = _data()
    order = list(np.random.default_rng(0).permutation(_layout().n_chunks))
    store, _ = _write(tmp_path / "fs", data, order=order)
    return store, data


def test_round_trip_arrays_attributes_and_status(written):
    store, data = written
    r = store.split("train")
    assert r.complete and r.n_rows == N and r.shape == (N, D) and len(r) == N
    assert r.arrays == ("features", "labels", "logits", "preds", "spatial")
    assert r.class_names == ["k0", "k1", "k2", "k3"] and r.num_classes == K and r.chunk_rows == CR
    assert r.backbone == {"name": "b"} and r.dataset == {"name": "d"} and r.fingerprint == "fp0"
    for a in r.arrays:
        out = r.read(a)
        assert out.dtype == data[a].dtype and np.array_equal(out, data[a])
    st = store.status("train")
    assert st.complete and st.done_chunks == st.n_chunks == 11 and st.done_rows == N
    assert store.splits() == ["train"] and "train" in store and "test" not in store
    assert store.status("test").state == "missing"
    assert store.info()["splits"]["train"]["state"] == "complete"


def test_plain_zarr_reads_the_store(written):
    store, data = written
    g = zarr.open_group(store.path, mode="r")
    assert np.array_equal(g["train/features"][:], data["features"])
    assert np.array_equal(g["train/spatial"][5:20], data["spatial"][5:20])
    assert g["train"]["features"].chunks == (CR, D)


def test_moments_are_merged_in_chunk_order(written):
    store, data = written
    r = store.split("train")
    expected = RunningMoments.combine(
        RunningMoments.from_block(data["features"][lo : lo + CR]) for lo in range(0, N, CR)
    )
    assert r.moments() == expected  # bit-identical whatever order chunks were written in
    np.testing.assert_allclose(r.mean, data["features"].astype(np.float64).mean(0), rtol=1e-13)
    np.testing.assert_allclose(r.std(), data["features"].astype(np.float64).std(0), rtol=1e-10)
    np.testing.assert_allclose(r.std(ddof=1), data["features"].astype(np.float64).std(0, ddof=1), rtol=1e-10)


@pytest.mark.parametrize("block_rows", [1, 7, CR, 33, N, 1000, None])
@pytest.mark.parametrize("prefetch", [True, False])
def test_iter_blocks_concatenate_to_the_whole_array(written, block_rows, prefetch):
    store, data = written
    r = store.split("train")
    starts, blocks = zip(*r.iter_blocks("spatial", block_rows, prefetch=prefetch))
    step = block_rows or CR
    assert list(starts) == list(range(0, N, step))
    assert all(b.shape[0] == min(step, N - s) for s, b in zip(starts, blocks))
    assert np.array_equal(np.concatenate(blocks), data["spatial"])


def test_iter_blocks_ranges_several_arrays_and_torch(written):
    store, data = written
    r = store.split("train")
    got = list(r.iter_blocks(("features", "labels"), 9, start=5, stop=60))
    assert [s for s, _ in got] == list(range(5, 60, 9))
    assert np.array_equal(np.concatenate([f for _, (f, _) in got]), data["features"][5:60])
    assert np.array_equal(np.concatenate([y for _, (_, y) in got]), data["labels"][5:60])
    tb = [b for _, b in r.iter_blocks("features", 16, as_torch=True)]
    assert all(isinstance(b, torch.Tensor) and b.dtype == torch.float32 for b in tb)
    assert torch.equal(torch.cat(tb), torch.from_numpy(data["features"]))
    with pytest.raises(DebuggableError, match="block_rows"):
        next(r.iter_blocks("features", 0))
    with pytest.raises(DebuggableError, match="start, stop"):
        next(r.iter_blocks("features", start=50, stop=10))


def test_memmap_torch_and_numpy_readers_agree(written):
    store, data = written
    r = store.split("train")
    assert r.is_memmappable("features")
    views = list(r.iter_memmaps("features"))
    assert all(isinstance(v, np.memmap) for _, v in views)
    assert np.array_equal(np.concatenate([v for _, v in views]), r.to_numpy())
    assert torch.equal(r.to_torch("features"), torch.from_numpy(r.to_numpy("features")))
    assert torch.equal(r.to_torch("preds", device="cpu"), torch.from_numpy(data["preds"]))


def test_read_rows_by_slice_index_mask(written):
    store, data = written
    r = store.split("train")
    f = data["features"]
    idx = np.array([102, 0, 55, 9, 10, 55, -1])
    mask = np.arange(N) % 3 == 0
    assert np.array_equal(r.read("features", idx), f[idx])
    assert np.array_equal(r.read("features", torch.as_tensor(idx)), f[idx])
    assert np.array_equal(r.read("features", mask), f[mask])
    assert np.array_equal(r.read("features", slice(3, 97, 4)), f[3:97:4])
    assert np.array_equal(r.read("features", slice(-20, None)), f[-20:])
    assert np.array_equal(r.read("features", 42), f[42])
    assert r.read("features", []).shape == (0, D)
    assert np.array_equal(r.labels, data["labels"])
    with pytest.raises(DebuggableError, match="out of range"):
        r.read("features", np.array([N]))
    with pytest.raises(DebuggableError, match="no array"):
        r.read("nope")
    with pytest.raises(DebuggableError, match="boolean mask"):
        r.read("features", np.ones(5, dtype=bool))


def test_incomplete_split_is_never_reported_complete(tmp_path):
    data = _data()
    store, w = _write(tmp_path / "fs", data, order=[0, 3, 4], finalize=False)
    assert not store.is_complete("train")
    assert store.status("train").state == "partial" and store.status("train").done_chunks == 3
    with pytest.raises(DebuggableError, match=r"incomplete \(3 of 11 chunks done\)"):
        store.split("train")
    assert w.finalize() is False and not (store.path / "train" / "_complete.json").exists()
    r = store.split("train", allow_incomplete=True)
    assert not r.complete
    out = r.read("features")
    assert np.array_equal(out[30:50], data["features"][30:50]) and not out[10:20].any()
    with pytest.raises(DebuggableError, match="incomplete"):
        r.moments()
    assert w.missing_chunks() == [1, 2, 5, 6, 7, 8, 9, 10]


def test_chunk_without_marker_and_torn_files_are_rewritten(tmp_path):
    data = _data()
    store, w = _write(tmp_path / "fs", data, order=[0, 1], finalize=False)
    # chunk 2: a torn features file and a zarr temp file, but no done-marker
    cp = w._arrays["features"].chunk_path(2)
    cp.parent.mkdir(parents=True, exist_ok=True)
    cp.write_bytes(b"\x00garbage")
    (cp.parent / "0.deadbeef.partial").write_bytes(b"x")
    assert 2 in w.missing_chunks()
    partial = store.split("train", allow_incomplete=True)  # unmarked chunks read as 0, torn or not
    assert not partial.read("features", slice(20, 30)).any()
    assert not partial.read("features", np.array([25, 3]))[0].any()
    assert np.array_equal(partial.read("features", slice(0, 20)), data["features"][:20])
    w2 = store.writer("train")
    for c in w2.missing_chunks():
        lo, hi = w2.chunk_bounds(c)
        w2.write_chunk(c, **{a: data[a][lo:hi] for a in w2.layout.arrays}, fsync=False)
    assert w2.finalize()
    assert not list((store.path / "train").rglob("*.partial"))
    assert np.array_equal(store.split("train").to_numpy(), data["features"])


def test_join_existing_split_and_refuse_mismatches(tmp_path):
    data = _data()
    store, _ = _write(tmp_path / "fs", data, order=[0], finalize=False)
    again = store.create_split("train", _layout(), class_names=["a"] * K, fingerprint="fp0")
    assert again.done_chunks() == [0]
    with pytest.raises(DebuggableError, match="different backbone or dataset"):
        store.create_split("train", _layout(), class_names=["a"] * K, fingerprint="other")
    with pytest.raises(DebuggableError, match=r"another layout \(chunk_rows 10 -> 20\)"):
        store.create_split("train", _layout(chunk_rows=20), class_names=["a"] * K, fingerprint="fp0")
    assert store.delete_split("train") and "train" not in store and not store.delete_split("train")


def test_write_chunk_checks_its_inputs(tmp_path):
    data = _data()
    store, w = _write(tmp_path / "fs", data, order=[], finalize=False)
    good = {a: data[a][:CR] for a in w.layout.arrays}
    with pytest.raises(DebuggableError, match="needs shape"):
        w.write_chunk(0, **{**good, "features": data["features"][:CR - 1]})
    bad = good["features"].copy()
    bad[3, 2] = np.nan
    with pytest.raises(DebuggableError, match="NaN or inf"):
        w.write_chunk(0, **{**good, "features": bad})
    with pytest.raises(DebuggableError, match="expected an array"):
        w.write_chunk(0, **{**good, "logits": None})
    with pytest.raises(DebuggableError, match="chunk"):
        w.write_chunk(11, **good)
    assert w.done_chunks() == []


def test_compressed_store_round_trips_but_is_not_memmappable(tmp_path):
    data = _data()
    store, _ = _write(tmp_path / "fs", data, layout=_layout(compression="blosc", spatial_dtype="float16"))
    r = store.split("train")
    assert not r.is_memmappable("features")
    assert np.array_equal(r.read("features"), data["features"])
    assert np.array_equal(r.read("spatial"), data["spatial"].astype(np.float16))
    assert np.array_equal(np.concatenate([b for _, b in r.iter_blocks("logits", 13)]), data["logits"])
    assert np.array_equal(r.read("labels", np.array([5, 99, 5])), data["labels"][[5, 99, 5]])
    with pytest.raises(DebuggableError, match="compressed"):
        next(r.iter_memmaps("features"))


def test_headless_layout_stores_no_logits(tmp_path):
    data = _data()
    store, _ = _write(tmp_path / "fs", data, layout=_layout(num_classes=None, spatial_shape=None))
    r = store.split("train")
    assert r.arrays == ("features", "labels") and r.num_classes is None


def test_incompatible_versions_and_foreign_directories_are_refused(tmp_path, written):
    store, _ = written
    meta = store.path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["debuggable_feature_store"]["format_version"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(DebuggableError, match="format version 99"):
        FeatureStore(store.path)
    doc["attributes"]["debuggable_feature_store"]["format_version"] = 1
    meta.write_text(json.dumps(doc))
    smeta = store.path / "train" / "zarr.json"
    sdoc = json.loads(smeta.read_text())
    sdoc["attributes"]["debuggable_split"]["format_version"] = 0
    smeta.write_text(json.dumps(sdoc))
    with pytest.raises(DebuggableError, match="format version 0"):
        FeatureStore(store.path).split("train")

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(DebuggableError, match="non-empty directory that is not a feature store"):
        FeatureStore(tmp_path / "other", mode="a")
    with pytest.raises(DebuggableError, match="is a file"):
        FeatureStore(tmp_path / "other" / "notes.txt", mode="a")
    with pytest.raises(DebuggableError, match="not a feature store"):
        FeatureStore(tmp_path / "missing")
    zarr.open_group(tmp_path / "plainzarr", mode="w")
    with pytest.raises(DebuggableError, match="not a debuggable feature store"):
        FeatureStore(tmp_path / "plainzarr", mode="a")


def test_unwritable_store_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DebuggableError, match="is a file"):
        FeatureStore(tmp_path / "file" / "store", mode="a")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(DebuggableError, match="not writable"):
                FeatureStore(ro / "store", mode="a")
        finally:
            ro.chmod(0o700)


def test_leftovers_of_killed_split_creation_are_cleaned(tmp_path):
    store = FeatureStore(tmp_path / "fs", mode="a")
    import socket

    host = socket.gethostname().replace("-", "_")
    dead = store.path / f".creating-train-{host}-999999999-abcd1234"
    (dead / "features").mkdir(parents=True)
    trash = store.path / ".deleting-train-abcd1234"
    trash.mkdir()
    FeatureStore(store.path, mode="a")
    assert not dead.exists() and not trash.exists()


def test_layout_and_names_are_validated(tmp_path):
    with pytest.raises(DebuggableError, match="chunk_rows"):
        SplitLayout(n_rows=10, chunk_rows=0, feature_dim=3)
    with pytest.raises(DebuggableError, match="spatial_dtype"):
        SplitLayout(n_rows=10, chunk_rows=2, feature_dim=3, spatial_dtype="int8")
    with pytest.raises(DebuggableError, match="compression"):
        SplitLayout(n_rows=10, chunk_rows=2, feature_dim=3, compression="lz4")
    store = FeatureStore(tmp_path / "fs", mode="a")
    for bad in ["", "../x", "a/b", ".hidden", "_chunks", "zarr.json", 3]:
        with pytest.raises(DebuggableError, match="split"):
            store.create_split(bad, _layout(), class_names=["a"], fingerprint="f")
    with pytest.raises(DebuggableError, match="read-only"):
        FeatureStore(tmp_path / "fs").create_split("train", _layout(), class_names=["a"], fingerprint="f")


def test_auto_chunk_rows():
    assert auto_chunk_rows(10**6, 5 * 1024, 256) == 3072  # 16 MiB / 5 KiB, a multiple of 256
    assert auto_chunk_rows(100, 5 * 1024, 256) == 100
    assert auto_chunk_rows(10**6, 10**6, 64) == 64  # never below one batch
