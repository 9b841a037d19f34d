"""``debuggable study ...`` from the command line on the tiny run."""

import csv
import json

import pytest

from debuggable.cli import main
from debuggable.run import RunDirectory, dumps_config
from debuggable.studies import StudySet

from tests.studies.tiny_study_run import fresh_copy, tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    return fresh_copy(tmp_path_factory.mktemp("studies_run"), tmp_path / "run")


def test_status_simulate_score_and_export(run, capsys):
    path = str(run.path)
    assert main(["study", "status", path]) == 0
    out = capsys.readouterr().out
    assert "simulation" in out and "sparse" in out and "0/" in out

    assert main(["study", "simulate", path, "--oracle", "1", "--noisy", "1", "--random", "1"]) == 0
    out = capsys.readouterr().out
    assert "simulation:" in out and "simulated policies" in out

    assert main(["study", "score", path]) == 0
    scores = json.loads((run.path / "studies" / "scores.json").read_text())
    assert scores["simulated"] and set(scores["studies"]) == set(StudySet(run.path / "studies").studies)

    out_dir = run.path / "exported"
    assert main(["study", "export", path, "--out", str(out_dir), "--base-url", "https://studies.example.org"]) == 0
    rows = list(csv.DictReader(open(out_dir / "answers.csv", encoding="utf-8")))
    assert len(rows) == sum(1 for _ in open(out_dir / "answers.jsonl", encoding="utf-8"))
    links = list(csv.DictReader(open(out_dir / "links.csv", encoding="utf-8")))
    studies = StudySet(run.path / "studies")
    assert len(links) == sum(len(a) for a in studies.assignments.values())
    assert all(r["url"].startswith("https://studies.example.org/a/") for r in links)
    token = links[0]["url"].rsplit("/", 1)[1]
    assert studies.signer.verify_annotator(token) == links[0]["annotator_id"]
    # The report shows the scored studies, and scoring again rebuilds it.
    assert main(["report", path, "--no-progress"]) == 0
    html = (run.path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Human studies" in html and "SIMULATED annotators" in html and "study_simulation_accuracy.png" in html
    (run.path / "report" / "index.html").unlink()
    assert main(["study", "score", path]) == 0
    assert "Human studies" in (run.path / "report" / "index.html").read_text(encoding="utf-8")


def test_creating_again_is_refused_once_people_answered(run, capsys):
    studies = StudySet(run.path / "studies")
    from debuggable.studies.db import StudyDatabase

    annotator, ids = next(iter(studies.assignments["simulation"].items()))
    db = StudyDatabase(studies.database_url)
    try:
        db.record_answer(annotator, 1, ids[0], {"pick": "A"}, None)
    finally:
        db.close()
    before = (run.path / "studies" / "simulation" / "tasks.jsonl").read_bytes()
    assert main(["study", "create", str(run.path), "--force", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds 1 answers" in err and "study export" in err
    assert (run.path / "studies" / "simulation" / "tasks.jsonl").read_bytes() == before


def test_study_commands_on_a_run_without_studies_say_so(tmp_path, capsys):
    target = tmp_path / "fresh"
    target.mkdir()
    (target / "run.toml").write_text(dumps_config(tiny_config()), encoding="utf-8")
    for cmd in ("status", "serve", "score", "export"):
        assert main(["study", cmd, str(target)]) == 2
        assert "run `debuggable study create RUN` first" in capsys.readouterr().err
    assert not (target / "studies").exists()


def test_bad_study_settings_are_one_sentence_before_anything_is_written(tmp_path, capsys):
    config = tiny_config(replication=6)  # 5 annotators
    target = tmp_path / "bad"
    target.mkdir()
    (target / "run.toml").write_text(dumps_config(config), encoding="utf-8")
    assert main(["study", "create", str(target), "--no-progress"]) == 2
    assert "studies.replication 6 needs at least as many annotators" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["run.toml"]


def test_simulated_answers_are_discarded_when_the_studies_are_made_again(run, capsys):
    assert main(["study", "simulate", str(run.path), "--oracle", "1", "--noisy", "0", "--random", "0"]) == 0
    capsys.readouterr()
    assert main(["study", "create", str(run.path), "--force", "--no-progress"]) == 0
    assert "discarding" in capsys.readouterr().out
    from debuggable.studies.db import StudyDatabase

    studies = StudySet(run.path / "studies")
    db = StudyDatabase(studies.database_url)
    try:
        assert db.answers() == []
    finally:
        db.close()
    assert not (run.path / "studies" / "simulated.json").exists()
