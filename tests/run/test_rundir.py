import os

import pytest

from debuggable.errors import DebuggableError
from debuggable.run import FORMAT_VERSION, RunConfig, RunDirectory, atomic_write_json, read_json


def test_stage_lifecycle(tmp_path):
    run = RunDirectory.create(tmp_path / "run", RunConfig())
    h = run.config.section_hash("data")
    assert run.status("data", h) == "missing"
    run.begin("data", "data", h)
    assert run.status("data", h) == "partial"  # started, never finished: as after a kill
    run.finish("data", {"n": 1}, ["data/x"])
    assert run.status("data", h) == "done"
    assert run.summary("data") == {"n": 1}
    assert run.status("data", "other-hash") == "stale"
    reopened = RunDirectory.open(run.path)
    assert reopened.status("data", h) == "done"
    assert reopened.manifest["stages"]["data"]["outputs"] == ["data/x"]


def test_downstream_becomes_stale_when_upstream_reruns(tmp_path):
    run = RunDirectory.create(tmp_path, RunConfig())
    for stage in ("a", "b"):
        run.begin(stage, stage, "h")
        run.finish(stage, {}, [])
    assert run.status("b", "h", depends_on=("a",)) == "done"
    run.begin("a", "a", "h")
    run.finish("a", {}, [])
    assert run.status("b", "h", depends_on=("a",)) == "stale"


def test_incompatible_version_is_refused(tmp_path):
    run = RunDirectory.create(tmp_path, RunConfig())
    manifest = read_json(tmp_path / "manifest.json")
    manifest.update(format=FORMAT_VERSION + 1, debuggable_version="9.0.0")
    atomic_write_json(tmp_path / "manifest.json", manifest)
    with pytest.raises(DebuggableError, match=r"made by debuggable 9\.0\.0.*cannot use"):
        RunDirectory.open(run.path)


def test_non_empty_foreign_directory_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(DebuggableError, match="not empty and is not a run directory"):
        RunDirectory.create(tmp_path, RunConfig())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(DebuggableError, match="not writable"):
        RunDirectory.create(ro / "run", RunConfig())


def test_unwritable_directory_even_as_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DebuggableError, match="not writable"):
        RunDirectory.create(blocker / "run", RunConfig())


def test_open_something_that_is_not_a_run(tmp_path):
    with pytest.raises(DebuggableError, match="not a run directory"):
        RunDirectory.open(tmp_path)


def test_a_dependency_that_never_ran_does_not_make_a_stage_stale(tmp_path):
    # e.g. ``train`` never runs for a pretrained backbone: the report must not redo forever
    run = RunDirectory.create(tmp_path, RunConfig())
    run.begin("b", "b", "h")
    run.finish("b", {}, [])
    assert run.status("b", "h", depends_on=("never_ran",)) == "done"
    run.begin("a", "a", "h")  # a dependency that started after b and did not finish
    assert run.status("b", "h", depends_on=("a",)) == "stale"
