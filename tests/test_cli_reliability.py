"""The ``debuggable`` command under bad input and faults (issue 19's table, row by row).

Each test asserts the exit code, the sentence, and that nothing was corrupted or
written. A run through ``evaluate`` on tiny digits is built once and copied per test.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from debuggable.cli import main
from debuggable.glm import GLMPath
from debuggable.run import DataConfig, ModelConfig, dumps_config, read_json
from tests.tiny_runs import digits_config

CLI = [sys.executable, "-m", "debuggable.cli"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _config(**kw):
    return digits_config(epochs=1, chunk_rows=128, **kw)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """data -> train -> extract -> fit -> evaluate, never touched by the tests."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("base") / "run"
        d.mkdir()
        (d / "run.toml").write_text(dumps_config(_config()))
        assert main(["evaluate", str(d), "--no-progress"]) == 0
        return d
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    return d


def _chunk(run: Path, array: str = "features", c: int = 1, split: str = "train") -> Path:
    p = run / "features" / "inspected" / split / array / "c" / str(c)
    while p.is_dir():
        p = next(p.iterdir())
    return p


def _tree(root: Path, under: str = "") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / under).rglob("*")) if p.is_file()}


def _figures(run: Path) -> dict:
    """What the run concluded: the whole path (but its timings) and the layer's summary."""
    path = GLMPath.load(run / "glm")
    arrays = {k: getattr(path, k).tobytes() for k in ("lambdas", "coef", "intercept", "objective", "gap", "kkt", "nnz",
                                                       "val_accuracy", "train_accuracy")}
    layer = {k: v for k, v in read_json(run / "layer" / "summary.json").items() if "second" not in k}
    return {"path": arrays, "layer": layer, "layer_file": (run / "layer" / "layer.safetensors").read_bytes()}


def _status(run: Path, capsys) -> dict[str, str]:
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    return dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())


def _one_sentence(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("debuggable: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------
# the feature store: truncated, shuffled, deleted chunks
# ---------------------------------------------------------------------------


def test_truncated_chunk_is_corrupt_named_and_repaired(run, base_run, capsys):
    f = _chunk(run)
    f.write_bytes(f.read_bytes()[:100])
    glm_before = _tree(run, "glm")
    assert _status(run, capsys)["extract"] == "corrupt"
    for command in (["fit", str(run)], ["fit", str(run), "--force"], ["evaluate", str(run)]):
        assert main(command + ["--no-progress"]) == 2
        err = _one_sentence(capsys.readouterr().err)
        assert f"{f} is truncated (100 of" in err
        assert f"repair it with `debuggable extract {run} --repair`" in err
    assert _tree(run, "glm") == glm_before  # the failed fit wrote nothing
    # --force really re-extracts (it used to print "done" in 0.0 s and leave the file truncated)
    assert main(["extract", str(run), "--force", "--no-progress"]) == 0
    assert f.read_bytes() == _chunk(base_run).read_bytes()
    assert _status(run, capsys)["extract"] == "done"


def test_shuffled_chunk_of_the_same_size_fails_the_fit_instead_of_a_silent_wrong_result(run, capsys):
    f = _chunk(run)
    data = np.frombuffer(f.read_bytes(), dtype=np.float32).reshape(-1, 16)
    f.write_bytes(data[::-1].tobytes())  # same size, rows shuffled
    glm_before = _tree(run, "glm")
    assert main(["fit", str(run), "--force", "--no-progress"]) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert f"{f} is corrupt (CRC-32C" in err and "--repair" in err
    assert _tree(run, "glm") == glm_before
    capsys.readouterr()
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert f"extract       corrupt: 1 damaged file; repair with `debuggable extract {run} --repair`" in out
    assert f"  {f}: corrupt (CRC-32C" in out


def test_fault_injection_truncate_flip_delete_then_repair_gives_identical_figures(run, base_run, capsys):
    truncated, flipped, deleted = _chunk(run, "features", 0), _chunk(run, "spatial", 3), _chunk(run, "labels", 1, "test")
    truncated.write_bytes(truncated.read_bytes()[:-4])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x10
    flipped.write_bytes(bytes(data))
    deleted.unlink()
    capsys.readouterr()
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "extract       corrupt: 3 damaged files" in out
    for f, what in ((truncated, "truncated"), (flipped, "corrupt (CRC-32C"), (deleted, "missing")):
        assert f"  {f}: {what}" in out
    assert "data          ok" in out and "fit           ok" in out

    assert main(["extract", str(run), "--repair", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[extract] inspected/train: recomputed damaged chunks [0, 3]" in out
    assert "[extract] inspected/test: recomputed damaged chunks [1]" in out
    assert "[extract] inspected/val: every chunk matches its checksum" in out
    assert main(["verify", str(run)]) == 0
    assert _tree(run, "features/inspected") == {k: v for k, v in _tree(base_run, "features/inspected").items()
                                                if "_complete" not in k}  | {
        k: v for k, v in _tree(run, "features/inspected").items() if "_complete" in k}
    # the fit and the layer are redone on the mended features: the same figures as the untouched run
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert _figures(run) == _figures(base_run)


def test_a_damaged_stage_file_outside_the_store_is_found_and_named(run, capsys):
    path = run / "glm" / "glm_path.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert _status(run, capsys)["fit"] == "done"  # same size: only the checksum tells
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert f"fit           corrupt: 1 damaged file; repair with `debuggable fit {run} --force`" in out
    path.write_bytes(bytes(data[:10]))
    assert _status(run, capsys)["fit"] == "corrupt"
    assert main(["evaluate", str(run), "--force", "--no-progress"]) == 2
    assert f"stage 'fit': {path} is truncated" in _one_sentence(capsys.readouterr().err)
    assert main(["fit", str(run), "--force", "--no-progress"]) == 0
    assert main(["verify", str(run)]) == 0


def test_stores_and_manifests_written_before_checksums_still_work_and_verify_says_so(run, capsys):
    for marker in (run / "features" / "inspected" / "train" / "_chunks").glob("*.json"):
        m = json.loads(marker.read_text())
        del m["files"], m["checksum"]
        marker.write_text(json.dumps(m))
    manifest = read_json(run / "manifest.json")
    del manifest["stages"]["fit"]["files"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert _status(run, capsys)["extract"] == "done"
    assert main(["fit", str(run), "--force", "--no-progress"]) == 0
    capsys.readouterr()
    manifest = read_json(run / "manifest.json")
    manifest["stages"]["evaluate"].pop("files")
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(run)]) == 0
    out = capsys.readouterr().out
    assert "features/inspected/train: 9 of 9 chunks were written before checksums were recorded" in out
    assert "evaluate      ok" in out and "finished before checksums were recorded" in out


# ---------------------------------------------------------------------------
# labels: checked by the data stage before anything is written or trained
# ---------------------------------------------------------------------------


def _arrays_run(tmp_path: Path, arrays: dict, **params) -> Path:
    np.savez(tmp_path / "data.npz", **arrays)
    d = tmp_path / "run"
    d.mkdir()
    cfg = _config()
    cfg.data = DataConfig(name="arrays", params={"path": str(tmp_path / "data.npz"), **params})
    (d / "run.toml").write_text(dumps_config(cfg))
    return d


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8)).astype(np.float32)


LABEL_CASES = {
    "test class unseen in train": (
        {"x_train": _images(20), "y_train": np.arange(20) % 2, "x_val": _images(6, 1), "y_val": np.arange(6) % 2,
         "x_test": _images(6, 2), "y_test": np.arange(6) % 3, "class_names": np.array(["cat", "dog", "emu"])},
        {}, "class 'emu' (id 2) occurs in test 2 but has no training example; expected every class in train"),
    "class_names longer than the classes": (
        {"x_train": _images(30), "y_train": np.arange(30) % 3, "class_names": np.array(["a", "b", "c", "d"])},
        {"val_fraction": 0.2, "test_fraction": 0.2},
        "class_names lists 4 names but the labels use only ids 0..2, so 'd' has no example"),
    "a gap in the labels": (
        {"x_train": _images(30), "y_train": np.where(np.arange(30) % 2, 2, 0), "class_names": np.array(["a", "b", "c"])},
        {}, "no split has an example of class 'b' (id 1), though ids above it occur; expected contiguous class ids 0..2"),
    "one class": (
        {"x_train": _images(30), "y_train": np.zeros(30, dtype=int), "class_names": np.array(["only"])},
        {}, "has 1 class (['only']); expected at least two classes to tell apart"),
    "six images": (
        {"x_train": _images(6), "y_train": np.arange(6) % 3},
        {"val_fraction": 0.15, "test_fraction": 0.25},
        "class id 0 occurs in val 1, test 1 but has no training example; expected every class in train (with 2 "
        "examples of it the configured splits (val_fraction 0.15, test_fraction 0.25) leave none for train"),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_inconsistent_labels_fail_in_the_data_stage_before_anything_is_written(tmp_path, capsys, case):
    arrays, params, sentence = LABEL_CASES[case]
    d = _arrays_run(tmp_path, arrays, **params)
    assert main(["fit", str(d), "--no-progress"]) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert sentence in err
    # nothing trained, nothing written, and the manifest says no stage ever started
    assert not (d / "data").exists() and not (d / "models").exists()
    assert read_json(d / "manifest.json")["stages"] == {} if (d / "manifest.json").exists() else True


def test_nan_images_leave_the_manifest_untouched(tmp_path, capsys):
    x = _images(30)
    x[4, 2, 2] = np.nan
    d = _arrays_run(tmp_path, {"x_train": x, "y_train": np.arange(30) % 3})
    assert main(["data", str(d), "--no-progress"]) == 2
    assert "NaN" in _one_sentence(capsys.readouterr().err)
    assert not (d / "manifest.json").exists() or read_json(d / "manifest.json")["stages"] == {}
    assert _status(d, capsys)["data"] == "missing"  # not 'partial': the stage never started


# ---------------------------------------------------------------------------
# config mistakes: section named, closest key, no pydantic text, nothing written
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("edit, sentence", [
    (lambda c: c.model.train.update(epoch=2),
     "inspected model train settings [model.train]: 'epoch' is not a setting here; did you mean `epochs`?"),
    (lambda c: c.model.train.update(lr="fast"),
     "inspected model train settings [model.train]: lr = 'fast' is not valid; expected a number > 0."),
    (lambda c: c.model.params.update(width="wide"), "inspected model params: width = 'wide' is not valid; expected an integer."),
    (lambda c: c.model.params.update(widht=8), "inspected model params: 'widht' is not a setting here; did you mean `width`?"),
])
def test_config_mistakes_name_the_section_and_write_nothing(tmp_path, capsys, edit, sentence):
    d = tmp_path / "run"
    d.mkdir()
    cfg = _config()
    edit(cfg)
    (d / "run.toml").write_text(dumps_config(cfg))
    assert main(["run", str(d), "--no-progress"]) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert err == f"debuggable: error: {sentence}"
    assert "Input should" not in err and "pydantic" not in err
    assert sorted(p.name for p in d.iterdir()) == ["run.toml"]


def test_unknown_key_in_run_toml_gets_the_closest_one(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(_config()).replace("n_lambdas = 8", "n_lambda = 8"))
    assert main(["run", str(d)]) == 2
    assert _one_sentence(capsys.readouterr().err) == (
        f"debuggable: error: {d / 'run.toml'} [glm]: 'n_lambda' is not a setting here; did you mean `n_lambdas`?")
    assert sorted(p.name for p in d.iterdir()) == ["run.toml"]


# ---------------------------------------------------------------------------
# faults: disk full, read-only, permissions; umask; hints; SIGPIPE
# ---------------------------------------------------------------------------


def _until_train(tmp_path: Path, base_run: Path) -> Path:
    """A copy of the run with only data and train done (so extract writes the store)."""
    d = tmp_path / "run"
    d.mkdir()
    for name in ("run.toml", "data", "models"):
        src = base_run / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, d / name)
    manifest = read_json(base_run / "manifest.json")
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("data", "train")}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def _limit_file_size(limit: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _extract_in_subprocess(run: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(CLI + ["extract", str(run), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def _assert_resumes(run: Path, base_run: Path, capsys) -> None:
    assert _status(run, capsys)["extract"] == "partial"
    assert main(["extract", str(run), "--no-progress"]) == 0
    ref = _tree(base_run, "features/inspected")
    assert {k: v for k, v in _tree(run, "features/inspected").items() if "_complete" not in k} == \
        {k: v for k, v in ref.items() if "_complete" not in k}


def test_file_size_limit_during_extract_is_one_sentence_and_resumes(tmp_path, base_run, capsys):
    run = _until_train(tmp_path, base_run)
    proc = _extract_in_subprocess(run, preexec_fn=_limit_file_size(16 * 1024))
    assert proc.returncode == 2, proc.stderr
    err = _one_sentence(proc.stderr)
    assert "could not read or write " + str(run / "features" / "inspected" / "train") in err
    assert "the file grew past the size limit (ulimit -f)" in err
    assert f"then rerun `debuggable extract {run}` to resume." in err
    _assert_resumes(run, base_run, capsys)


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_disk_full_during_extract_is_one_sentence_and_resumes(tmp_path, base_run, capsys):
    used = sum(p.stat().st_size for name in ("data", "models") for p in (base_run / name).rglob("*") if p.is_file())
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, used + 120 * 1024):
        pytest.skip("needs root and tmpfs to make a small disk")
    try:
        run = _until_train(mnt, base_run)
        proc = _extract_in_subprocess(run)
        assert proc.returncode == 2, proc.stderr
        err = _one_sentence(proc.stderr)
        assert "no space left on the device" in err and str(run / "features") in err
        assert f"then rerun `debuggable extract {run}` to resume." in err
        # free space: move the run to a roomy disk, then rerun
        roomy = tmp_path / "roomy"
        shutil.copytree(run, roomy)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    _assert_resumes(roomy, base_run, capsys)


def test_read_only_run_directory_names_the_path_without_out_hint(tmp_path, base_run, capsys):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, 4 * 2**20):
        pytest.skip("needs root and tmpfs to make a read-only file system")
    try:
        (mnt / "run").mkdir()
        (mnt / "run" / "run.toml").write_text(dumps_config(_config()))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert main(["data", str(mnt / "run"), "--no-progress"]) == 2
        err = _one_sentence(capsys.readouterr().err)
        assert f"'{mnt / 'run'}' is not writable (read-only file system)" in err and "--out" not in err
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_hints_do_not_mention_out_on_commands_without_it(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["init", str(blocker / "run")]) == 2
    err = _one_sentence(capsys.readouterr().err)
    assert "is not writable" in err and "--out" not in err and "choose another directory" in err


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_files_honour_the_umask(tmp_path, umask, file_mode, dir_mode, base_run):
    if umask == 0o022:
        root = base_run  # every stage through evaluate, made under this test process's umask
        current = os.umask(0o022)
        os.umask(current)
        if current != 0o022:
            pytest.skip("the test process does not run under umask 022")
    else:
        root = tmp_path / "run"
        root.mkdir()
        (root / "run.toml").write_text(dumps_config(_config()))
        old = os.umask(umask)
        try:
            assert main(["data", str(root), "--no-progress"]) == 0
        finally:
            os.umask(old)
    for p in root.rglob("*"):
        if p.name == "run.toml":
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (dir_mode if p.is_dir() else file_mode), f"{p}: {oct(mode)}"


def test_status_and_help_import_neither_torch_nor_scikit_learn(base_run):
    """``status`` reads the stage table, the manifest and the stores' done-markers: a
    fresh process answers it (and ``--help``) without loading torch or the methods."""
    code = ("import contextlib, io, sys\n"
            "from debuggable.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    code = main(['status', {str(base_run)!r}])\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(code, sorted(m for m in ('torch', 'sklearn', 'scipy', 'captum') if m in sys.modules))\n"
            "print(out.getvalue())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, printed = proc.stdout.split("\n", 1)
    assert first == "0 []"
    statuses = dict(line.split(None, 1) for line in printed.splitlines() if line[:1].isalpha() and "  " in line)
    assert statuses["extract"] == "done" and statuses["evaluate"] == "done"
    assert "usage: debuggable" in printed


def test_status_into_a_closed_pipe_is_quiet(base_run):
    proc = subprocess.Popen(CLI + ["status", str(base_run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""
    shell = subprocess.run(f"{' '.join(CLI)} status {base_run} | head -1", shell=True, capture_output=True, text=True,
                           timeout=120)
    assert shell.stdout.startswith("data") and shell.stderr == ""
