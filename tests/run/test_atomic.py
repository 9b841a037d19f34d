import json
import os

import numpy as np
import pytest

from debuggable.run import atomic_directory, atomic_write_json, read_json


def test_json_handles_numpy_and_leaves_no_temp_files(tmp_path):
    p = atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5), "n": np.int64(3), "v": np.arange(3)})
    assert read_json(p) == {"x": 1.5, "n": 3, "v": [0, 1, 2]}
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_write_keeps_old_content(tmp_path):
    p = atomic_write_json(tmp_path / "a.json", {"ok": True})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"bad": float("nan")})  # JSON has no NaN: refused, old file kept
    assert json.loads(p.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("one")
    assert (target / "f").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "f").write_text("two")
            raise RuntimeError("killed")
    assert (target / "f").read_text() == "one"
    assert sorted(os.listdir(tmp_path)) == ["out"]
