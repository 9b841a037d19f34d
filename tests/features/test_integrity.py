"""Per-chunk checksums: damaged chunk files are found on read and by verify, and repair mends only them."""

from __future__ import annotations

import json
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import torch

from debuggable.features import FeatureStore, extract_features
from debuggable.features.store import StoreIntegrityError

from .tiny import TinyConvBackbone, make_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _extract(path: Path, **kw):
    return extract_features(TinyConvBackbone(), make_dataset(70), path, "train", batch_size=8, chunk_rows=20,
                            spatial=True, progress=False, **kw)


def _chunk_file(path: Path, array: str, c: int) -> Path:
    p = path / "train" / array / "c" / str(c)
    while p.is_dir():
        p = next(p.iterdir())
    return p


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_chunks" not in p.parts and p.name != "_complete.json"}


def test_done_marker_records_each_files_size_and_crc32c(tmp_path):
    _extract(tmp_path / "fs")
    marker = json.loads((tmp_path / "fs" / "train" / "_chunks" / "00000003.json").read_text())
    assert marker["checksum"] == "crc32c"
    assert set(marker["files"]) == {"features", "labels", "logits", "preds", "spatial"}
    for array, rec in marker["files"].items():
        data = _chunk_file(tmp_path / "fs", array, 3).read_bytes()
        # an independent implementation of CRC-32C (google-crc32c's one-shot value)
        assert rec == {"bytes": len(data), "crc32c": google_crc32c.value(data)}


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_chunk_is_refused_on_read_naming_the_file(tmp_path, damage):
    _extract(tmp_path / "fs")
    f = _chunk_file(tmp_path / "fs", "features", 1)
    data = bytearray(f.read_bytes())
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[5] ^= 0xFF
        f.write_bytes(bytes(data))
    else:
        f.unlink()
    reader = FeatureStore(tmp_path / "fs").split("train")
    want = {"truncate": "truncated", "flip": "corrupt", "delete": "missing"}[damage]
    for read in (lambda: reader.to_numpy("features"), lambda: list(reader.iter_blocks("features", block_rows=7)),
                 lambda: reader.read("features", rows=np.array([25])), lambda: list(reader.iter_memmaps("features"))):
        reader = FeatureStore(tmp_path / "fs").split("train")  # a fresh reader has verified nothing yet
        with pytest.raises(StoreIntegrityError, match=want) as err:
            read()
        assert err.value.file == f and err.value.chunk == 1
        assert str(f) in str(err.value) and "repair=True" in str(err.value)
    # undamaged chunks still read; verify=False skips the checksum (not the size check)
    assert reader.read("features", rows=np.array([0, 45])).shape == (2, 8)
    if damage == "flip":
        FeatureStore(tmp_path / "fs").split("train", verify=False).to_numpy("features")


def test_verify_finds_every_damaged_file_and_repair_recomputes_only_those(tmp_path):
    ref = tmp_path / "ref"
    _extract(ref)
    fs = tmp_path / "fs"
    _extract(fs)
    assert FeatureStore(fs).verify("train").ok
    _chunk_file(fs, "features", 0).write_bytes(_chunk_file(fs, "features", 0).read_bytes()[:10])
    flipped = bytearray(_chunk_file(fs, "spatial", 2).read_bytes())
    flipped[-1] ^= 1
    _chunk_file(fs, "spatial", 2).write_bytes(bytes(flipped))
    _chunk_file(fs, "labels", 3).unlink()
    quick = FeatureStore(fs).verify("train", full=False)
    assert quick.damaged_chunks == [0, 3]  # a flipped byte keeps the size: only the checksum sees it
    check = FeatureStore(fs).verify("train")
    assert check.damaged_chunks == [0, 2, 3] and check.checked == 4 and check.unchecksummed == 0
    assert len(check.problems) == 3 and all(str(fs) in str(p.file) for p in check.problems)

    bb = TinyConvBackbone()
    reader = extract_features(bb, make_dataset(70), fs, "train", batch_size=8, chunk_rows=20, spatial=True,
                              progress=False, repair=True)
    assert reader.complete and reader.repaired_chunks == [0, 2, 3]
    assert bb.calls == 3 + 3 + 2  # batches of 8: 3 for each of chunks 0 and 2 (20 rows), 2 for chunk 3 (10 rows)
    assert _files(fs) == _files(ref)
    assert FeatureStore(fs).verify("train").ok
    np.testing.assert_array_equal(reader.mean, FeatureStore(ref).split("train").mean)


def test_stores_written_before_checksums_still_read_and_say_so(tmp_path):
    fs = tmp_path / "fs"
    _extract(fs)
    for marker in (fs / "train" / "_chunks").glob("*.json"):
        m = json.loads(marker.read_text())
        del m["files"], m["checksum"]
        marker.write_text(json.dumps(m))
    reader = FeatureStore(fs).split("train")
    assert reader.to_numpy("features").shape == (70, 8)
    check = FeatureStore(fs).verify("train")
    assert check.ok and check.unchecksummed == 4
    _chunk_file(fs, "features", 1).write_bytes(b"\0" * 8)
    assert FeatureStore(fs).verify("train").damaged_chunks == [1]  # sizes are still checked
    with pytest.raises(StoreIntegrityError, match="truncated"):
        FeatureStore(fs).split("train").to_numpy("features")


def test_damaged_split_metadata_is_named_and_repair_re_extracts_the_split(tmp_path):
    ref, fs = tmp_path / "ref", tmp_path / "fs"
    _extract(ref)
    _extract(fs)
    (fs / "train" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreIntegrityError, match=r"zarr.json is unreadable"):
        FeatureStore(fs).split("train")
    with pytest.raises(StoreIntegrityError):
        _extract(fs)
    assert "train" in FeatureStore(fs).splits()
    _extract(fs, repair=True)
    assert _files(fs) == _files(ref)
