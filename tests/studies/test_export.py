"""Exports: answers joined with their task records (CSV, JSONL) and the crowd links."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from debuggable.errors import DebuggableError
from debuggable.studies import StudySet
from debuggable.studies.db import StudyDatabase
from debuggable.studies.export import (
    answers_rows,
    completion_code,
    links_rows,
    write_answers_csv,
    write_answers_jsonl,
    write_links_csv,
)

from tests.studies.answering import EVIL_TEXT


@pytest.fixture
def answered(study_set):
    """Two answers per study: an attention check (right in toy, wrong in toy2) and a main task with free text."""
    db = StudyDatabase(study_set.database_url)  # migrated and imported already (conftest)
    given = []
    for study, check_pick in (("toy", "B"), ("toy2", "A")):
        annotator, ids = next(iter(study_set.assignments[study].items()))
        check = next(p for p, t in enumerate(ids, 1) if study_set.task(t).attention_check)
        main = next(p for p, t in enumerate(ids, 1) if not study_set.task(t).attention_check)
        for position in sorted([check, main]):
            task = study_set.task(ids[position - 1])
            if task.attention_check:
                answer = {"pick": check_pick}
            else:
                answer = {"pick": "C", "seen": ["A", "C"], "ease": 4, "pattern": "yes",
                          "describe": EVIL_TEXT + ',\n"quoted", line 2'}
            db.record_answer(annotator, position, task.id, task.validate_answer(answer), 1000 + position)
            given.append((study, annotator, task, answer, position))
    yield db, given
    db.close()


def test_rows_join_the_task_record_and_say_what_is_right(study_set, answered):
    db, given = answered
    rows = answers_rows(study_set, db)
    assert len(rows) == 4
    for row, (study, annotator, task, answer, position) in zip(rows, given):
        assert (row["study"], row["annotator_id"], row["task_id"], row["position"]) == (study, annotator, task.id, position)
        assert row["condition"] == task.condition and row["attention_check"] == task.attention_check
        assert row["key"] == task.key and row["meta"] == task.meta
        assert row["answer"] == task.validate_answer(answer)
        # Right iff the pick equals the key's pick (written out, not via Task.correct).
        assert row["correct"] == {"pick": answer["pick"] == task.key["pick"]}
        assert row["elapsed_ms"] == 1000 + position
    assert [r["correct"]["pick"] for r in rows if r["attention_check"]] == [True, False]
    assert [r["study"] for r in answers_rows(study_set, db, "toy2")] == ["toy2", "toy2"]
    with pytest.raises(DebuggableError, match=r"study: 'nope' is not one of \['toy', 'toy2'\]"):
        answers_rows(study_set, db, "nope")


def test_csv_flattens_and_round_trips(study_set, answered, tmp_path):
    db, given = answered
    rows = answers_rows(study_set, db)
    path = tmp_path / "out" / "answers.csv"
    write_answers_csv(rows, path)
    assert [p.name for p in path.parent.iterdir()] == ["answers.csv"]  # no temporary left behind
    with open(path, newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    header = list(back[0])
    assert header[:8] == ["study", "task_id", "annotator_id", "position", "condition", "attention_check",
                          "elapsed_ms", "submitted_at"]
    assert {"answer.pick", "answer.seen", "answer.ease", "answer.pattern", "answer.describe", "correct.pick"} <= set(header)
    main = next(r for r, g in zip(back, given) if not g[2].attention_check)
    assert main["answer.describe"] == EVIL_TEXT + ',\n"quoted", line 2'
    assert json.loads(main["answer.seen"]) == ["A", "C"] and main["answer.ease"] == "4"
    assert main["attention_check"] == "false" and main["correct.pick"] in ("true", "false")
    check = next(r for r, g in zip(back, given) if g[2].attention_check)
    assert check["answer.describe"] == "" and check["answer.seen"] == ""
    for r, row in zip(back, rows):
        assert json.loads(r["answer"]) == row["answer"] and json.loads(r["meta"]) == row["meta"]


def test_jsonl_keeps_every_value(study_set, answered, tmp_path):
    db, _ = answered
    rows = answers_rows(study_set, db)
    path = tmp_path / "answers.jsonl"
    path.write_text("old contents\n")
    write_answers_jsonl(rows, path)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows


def test_answers_of_a_study_gone_from_disk_use_the_stored_record(study_set, answered, tmp_path):
    db, given = answered
    only_toy = tmp_path / "only_toy"
    shutil.copytree(study_set.root, only_toy)
    StudySet.write_index(only_toy, ["toy"], None)
    rows = answers_rows(StudySet(only_toy), db)
    toy2 = [r for r in rows if r["study"] == "toy2"]
    assert len(toy2) == 2
    for r in toy2:
        assert r["key"] == study_set.task(r["task_id"]).key


def test_links_carry_valid_tokens_for_every_annotator(study_set, tmp_path):
    rows = links_rows(study_set, "https://studies.example.org/run/")
    assert [(r["study"], r["annotator_id"]) for r in rows] == [
        (s, a) for s, lists in study_set.assignments.items() for a in lists]
    for r in rows:
        prefix = "https://studies.example.org/run/a/"
        assert r["url"].startswith(prefix)
        token = r["url"][len(prefix):]
        assert study_set.signer.verify_annotator(token) == r["annotator_id"]
        assert r["completion_code"] == completion_code(token) and len(r["completion_code"]) == 10
    assert len({r["completion_code"] for r in rows}) == len(rows)
    path = tmp_path / "links.csv"
    write_links_csv(rows, path)
    assert list(csv.DictReader(io.StringIO(path.read_text()))) == rows


@pytest.mark.parametrize("bad", ["", "studies.example.org", "ftp://host", "javascript:alert(1)", "http://",
                                 "https://host/?q=1", "https://host/#x"])
def test_a_bad_base_url_is_refused(study_set, bad):
    with pytest.raises(DebuggableError, match="base_url .*: expected the server's public address"):
        links_rows(study_set, bad)
