"""The studies' database, on SQLite and on a real PostgreSQL server (the same tests)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from debuggable.errors import DebuggableError
from debuggable.studies import StudySet, Task
from debuggable.studies.db import Base, StudyDatabase

from tests.studies.toy import make_toy_study


@pytest.fixture
def db(database_url, study_set):
    d = StudyDatabase(database_url)
    d.migrate()
    d.import_studies(study_set)
    yield d
    d.close()


def _first(study_set, study="toy"):
    annotator, ids = next(iter(study_set.assignments[study].items()))
    return annotator, ids


def _answer_for(task: Task, pick: str = "A") -> dict:
    if task.attention_check:
        return {"pick": pick}
    return {"pick": pick, "seen": [], "ease": 3, "pattern": "no"}


def test_migrations_build_exactly_the_orm_schema(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    d = StudyDatabase(database_url)
    assert d.revision() is None
    d.migrate()
    d.migrate()  # every start migrates: a no-op the second time
    assert d.revision() == "0001"
    with d.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    # The only table the ORM does not know is alembic's own bookkeeping.
    assert [(kind, t.name) for kind, t, *_ in diffs] == [("remove_table", "studies_alembic_version")]
    d.close()


def test_import_is_idempotent_and_stores_the_full_records(database_url, study_set):
    d = StudyDatabase(database_url)
    d.migrate()
    assert d.import_studies(study_set) == {"toy": "added", "toy2": "added"}
    counts = d.counts()
    assert d.import_studies(study_set) == {"toy": "unchanged", "toy2": "unchanged"}
    assert d.counts() == counts
    n_tasks = sum(len(s.tasks) for s in study_set.studies.values())
    n_assigned = sum(len(ids) for a in study_set.assignments.values() for ids in a.values())
    assert counts == {"studies": 2, "tasks": n_tasks, "annotators": 8, "assignments": n_assigned, "answers": 0}
    records = d.task_records()
    for study in study_set.studies.values():
        for t in study.tasks:
            assert Task.model_validate(records[t.id]) == t
    d.close()


def test_a_changed_study_is_replaced_before_answers_and_refused_after(database_url, tmp_path):
    root = tmp_path / "studies"
    make_toy_study(root, "toy")
    StudySet.write_index(root, ["toy"], None)
    d = StudyDatabase(database_url)
    d.migrate()
    d.import_studies(StudySet(root))
    make_toy_study(root, "toy", seed=5)  # other tasks, other order
    changed = StudySet(root)
    assert d.import_studies(changed) == {"toy": "replaced"}
    annotator, ids = _first(changed)
    assert d.record_answer(annotator, 1, ids[0], _answer_for(changed.task(ids[0])), 100)
    make_toy_study(root, "toy", seed=6)
    before = d.counts()
    with pytest.raises(DebuggableError, match=r"study 'toy': its tasks or assignments differ .* already holds 1 answers"):
        d.import_studies(StudySet(root))
    assert d.counts() == before
    assert d.answers()[0]["task_id"] == ids[0]
    d.close()


def test_a_task_twice_in_one_list_is_refused(database_url, study_set):
    annotator, ids = _first(study_set)
    study_set.assignments["toy"][annotator] = ids + ids[:1]
    d = StudyDatabase(database_url)
    d.migrate()
    with pytest.raises(DebuggableError, match=f"annotator '{annotator}' is assigned task '{ids[0]}' twice"):
        d.import_studies(study_set)
    assert d.counts()["studies"] == 0
    d.close()


def test_first_write_wins_and_is_committed(db, study_set, database_url):
    annotator, ids = _first(study_set)
    task = study_set.task(ids[0])
    assert db.record_answer(annotator, 1, ids[0], _answer_for(task, "A"), 1200) is True
    assert db.record_answer(annotator, 1, ids[0], _answer_for(task, "B"), 50) is False
    # A second engine (another process, in effect) sees the committed row, once.
    other = StudyDatabase(database_url)
    rows = other.answers()
    other.close()
    assert len(rows) == 1
    row = rows[0]
    assert row["answer"] == _answer_for(task, "A") and row["elapsed_ms"] == 1200
    assert {k: row[k] for k in ("study", "task_id", "annotator_id", "position", "condition", "attention_check")} == {
        "study": "toy", "task_id": ids[0], "annotator_id": annotator, "position": 1,
        "condition": task.condition, "attention_check": task.attention_check}
    moment = datetime.fromisoformat(row["submitted_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - moment).total_seconds()) < 60


@pytest.mark.parametrize("case", ["wrong task", "out of range", "unknown annotator", "other study's task"])
def test_an_answer_outside_the_assignment_is_refused_and_nothing_written(db, study_set, case):
    annotator, ids = _first(study_set)
    other_annotator, other_ids = _first(study_set, "toy2")
    args = {"wrong task": (annotator, 1, ids[1]), "out of range": (annotator, len(ids) + 1, ids[0]),
            "unknown annotator": ("nobody", 1, ids[0]), "other study's task": (annotator, 1, other_ids[0])}[case]
    with pytest.raises(DebuggableError, match="is not at position"):
        db.record_answer(*args, {"pick": "A"}, None)
    assert db.counts()["answers"] == 0


def test_concurrent_identical_submits_store_one_row(db, study_set):
    annotator, ids = _first(study_set)
    answer = _answer_for(study_set.task(ids[0]))
    barrier = threading.Barrier(8)
    results = []

    def submit():
        barrier.wait()
        results.append(db.record_answer(annotator, 1, ids[0], answer, 10))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 7 + [True]
    assert db.counts()["answers"] == 1


def test_concurrent_writers_all_land(db, study_set):
    """Every annotator of both studies answers all their tasks, one thread each."""
    lists = [(a, ids) for study in study_set.assignments.values() for a, ids in study.items()]

    def answer_all(annotator, ids):
        for i, task_id in enumerate(ids, 1):
            assert db.record_answer(annotator, i, task_id, _answer_for(study_set.task(task_id)), i)

    threads = [threading.Thread(target=answer_all, args=item) for item in lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    rows = db.answers()
    assert len(rows) == sum(len(ids) for _, ids in lists)
    assert len({(r["annotator_id"], r["task_id"]) for r in rows}) == len(rows)
    assert all(db.next_position(a) is None for a, _ in lists)


def test_free_text_is_stored_verbatim(db, study_set):
    annotator, ids = _first(study_set)
    position, task_id = next((i, t) for i, t in enumerate(ids, 1) if not study_set.task(t).attention_check)
    evil = "<script>alert('x')</script> '; DROP TABLE answers; -- \" \\ % _ \u00e9\u4e2d\U0001f600 \n\tend"
    answer = study_set.task(task_id).validate_answer({"pick": "C", "seen": ["B"], "ease": 5, "pattern": "yes",
                                                      "describe": evil})
    assert db.record_answer(annotator, position, task_id, answer, None)
    assert db.answers()[0]["answer"]["describe"] == evil
    assert db.answer_at(annotator, position) == answer
    assert db.counts()["tasks"] > 0  # the table is still there


def test_next_position_resumes_at_the_first_gap(db, study_set):
    annotator, ids = _first(study_set)
    assert db.next_position(annotator) == 1
    for p in (1, 2, 4):
        db.record_answer(annotator, p, ids[p - 1], _answer_for(study_set.task(ids[p - 1])), None)
    assert db.next_position(annotator) == 3
    assert db.answered_positions(annotator) == {1, 2, 4}
    for p in range(3, len(ids) + 1):
        db.record_answer(annotator, p, ids[p - 1], _answer_for(study_set.task(ids[p - 1])), None)
    assert db.next_position(annotator) is None
    with pytest.raises(DebuggableError, match="annotator 'nobody' is not in the database"):
        db.next_position("nobody")


def test_progress_counts_match_the_assignment(db, study_set):
    # Answer everything of the first annotator of toy and the first task of the second.
    (a1, ids1), (a2, ids2) = list(study_set.assignments["toy"].items())[:2]
    for p, task_id in enumerate(ids1, 1):
        db.record_answer(a1, p, task_id, _answer_for(study_set.task(task_id)), None)
    db.record_answer(a2, 1, ids2[0], _answer_for(study_set.task(ids2[0])), None)
    got = {(r["study"], r["condition"]): r for r in db.progress()}
    for study_name, lists in study_set.assignments.items():
        study = study_set.studies[study_name]
        for condition in [*study.conditions, "attention"]:
            in_condition = {t.id for t in study.tasks if t.condition == condition}
            per = {a: [t for t in ids if t in in_condition] for a, ids in lists.items()}
            answered = {a: [t for t in per[a] if (a == a1) or (a == a2 and t == ids2[0])] for a in per}
            expected = dict(study=study_name, condition=condition, tasks=len(in_condition),
                            assigned=sum(map(len, per.values())), answered=sum(map(len, answered.values())),
                            annotators=sum(1 for v in per.values() if v),
                            started=sum(1 for a in per if answered[a]),
                            finished=sum(1 for a in per if per[a] and len(answered[a]) == len(per[a])))
            assert got[(study_name, condition)] == expected


def test_annotator_progress_counts_passed_attention_checks(db, study_set):
    annotator, ids = _first(study_set)
    checks = [(p, t) for p, t in enumerate(ids, 1) if study_set.task(t).attention_check]
    assert len(checks) == 2
    db.record_answer(annotator, checks[0][0], checks[0][1], {"pick": "B"}, None)  # the key
    db.record_answer(annotator, checks[1][0], checks[1][1], {"pick": "C"}, None)  # wrong
    rows = {r["annotator_id"]: r for r in db.annotator_progress("toy")}
    assert set(rows) == set(study_set.assignments["toy"])
    assert rows[annotator] == dict(study="toy", annotator_id=annotator, answered=2, total=len(ids), checks=2,
                                   checks_passed=1)


def test_answers_filter_by_study(db, study_set):
    for study in ("toy", "toy2"):
        annotator, ids = _first(study_set, study)
        db.record_answer(annotator, 1, ids[0], _answer_for(study_set.task(ids[0])), None)
    assert [r["study"] for r in db.answers("toy2")] == ["toy2"]
    assert len(db.answers()) == 2
    json.dumps(db.answers())  # plain JSON types only


def test_sqlite_is_durable_and_checks_foreign_keys(tmp_path):
    d = StudyDatabase(f"sqlite:///{tmp_path / 'x.db'}")
    with d.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    d.close()


def test_a_bad_url_is_one_sentence():
    with pytest.raises(DebuggableError, match="database URL 'not a url': expected a SQLAlchemy URL"):
        StudyDatabase("not a url")


def test_the_answer_table_refuses_a_second_row_by_itself(db, study_set):
    """The UNIQUE constraint, not only the code, keeps one row per (annotator, task)."""
    from sqlalchemy.exc import IntegrityError

    annotator, ids = _first(study_set)
    db.record_answer(annotator, 1, ids[0], {"pick": "A"}, None)
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO answers (annotator, task, position, answer, submitted_at) "
                              "VALUES (:a, :t, 1, '{}', :now)"),
                         {"a": annotator, "t": ids[0], "now": datetime.now(timezone.utc)})
    assert db.counts()["answers"] == 1
