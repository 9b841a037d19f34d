"""The server as a real process: start-up, concurrent submits, and durability across SIGKILL."""

from __future__ import annotations

import threading
import httpx
import pytest

from debuggable.errors import DebuggableError
from debuggable.studies import StudySet
from debuggable.studies.db import StudyDatabase
from debuggable.studies.server import ServerProcess, main, serve

from tests.studies.answering import generic_answer
from tests.studies.toy import make_toy_study


def _stored(study_set) -> set[tuple[str, str]]:
    db = StudyDatabase(study_set.database_url)  # a new engine: what is on disk
    try:
        return {(r["annotator_id"], r["task_id"]) for r in db.answers()}
    finally:
        db.close()


def _lists(study_set):
    return [(a, study_set.signer.annotator_token(a), ids)
            for lists in study_set.assignments.values() for a, ids in lists.items()]


def test_a_killed_server_loses_no_acknowledged_answer(study_set):
    """Eight annotators submit concurrently; SIGKILL once 20 answers are acknowledged;
    after a restart on the same database every acknowledged answer is there, once, and
    the clients' retries of what was not acknowledged complete the study."""
    server = ServerProcess(study_set.root).start()
    acknowledged: set[tuple[str, str]] = set()
    lock = threading.Lock()
    enough = threading.Event()
    errors: list[BaseException] = []

    def annotate(annotator, token, ids, *, until_killed: bool):
        with httpx.Client(base_url=server.url, timeout=5.0) as http:
            for position, task_id in enumerate(ids, 1):
                task = study_set.task(task_id)
                body = {"task_id": task_id, "answer": generic_answer(task.public(), position), "elapsed_ms": position}
                try:
                    r = http.post(f"/api/a/{token}/tasks/{position}", json=body)
                except httpx.HTTPError:
                    if until_killed:
                        return  # the server is gone: this answer was never acknowledged
                    raise
                assert r.status_code in (200, 201), r.text
                with lock:
                    acknowledged.add((annotator, task_id))
                    if len(acknowledged) >= 20:
                        enough.set()

    def run(until_killed):
        def target(*args):
            try:
                annotate(*args, until_killed=until_killed)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
        threads = [threading.Thread(target=target, args=item) for item in _lists(study_set)]
        for t in threads:
            t.start()
        return threads

    try:
        # First, double submits: eight identical API requests at once, and a form sent twice.
        annotator, token, ids = _lists(study_set)[0]
        body = {"task_id": ids[0], "answer": generic_answer(study_set.task(ids[0]).public(), 1), "elapsed_ms": 1}
        statuses = []
        barrier = threading.Barrier(8)

        def submit():
            barrier.wait()
            statuses.append(httpx.post(f"{server.url}/api/a/{token}/tasks/1", json=body, timeout=10).status_code)

        doubles = [threading.Thread(target=submit) for _ in range(8)]
        for t in doubles:
            t.start()
        for t in doubles:
            t.join(30)
        assert sorted(statuses) == [200] * 7 + [201]
        form = {"task_id": ids[1], **{f"q.{k}": v for k, v in generic_answer(study_set.task(ids[1]).public(), 2).items()}}
        assert [httpx.post(f"{server.url}/a/{token}/t/2", data=form, timeout=10).status_code for _ in range(2)] == [303, 303]
        assert "2 of 8 tasks answered" in httpx.get(f"{server.url}/a/{token}", timeout=10).text
        assert _stored(study_set) == {(annotator, ids[0]), (annotator, ids[1])}

        threads = run(until_killed=True)
        assert enough.wait(60), "the clients did not get 20 answers acknowledged within 60 s"
        server.kill()
        with lock:
            before_kill = set(acknowledged)
        for t in threads:
            t.join(30)
        assert not errors, errors
        # Every answer acknowledged before the kill is on disk.
        assert before_kill <= _stored(study_set)
        server.start()
        threads = run(until_killed=False)  # every client retries its whole list
        for t in threads:
            t.join(60)
        assert not errors, errors
    finally:
        server.stop()
    db = StudyDatabase(study_set.database_url)
    rows = db.answers()
    db.close()
    expected = {(a, t) for a, _, ids in _lists(study_set) for t in ids}
    assert len(rows) == len(expected) and {(r["annotator_id"], r["task_id"]) for r in rows} == expected
    # What the server printed at its (second) start.
    assert f"/admin/{study_set.signer.admin_token()}" in server.output
    assert "8 annotator links" in server.output and "Serving 2 studies (toy, toy2)" in server.output


def test_a_changed_study_with_answers_stops_the_server_before_it_listens(tmp_path, capsys):
    root = tmp_path / "studies"
    make_toy_study(root, "toy")
    StudySet.write_index(root, ["toy"], None)
    study_set = StudySet(root)
    db = StudyDatabase(study_set.database_url)
    db.migrate()
    db.import_studies(study_set)
    annotator, ids = next(iter(study_set.assignments["toy"].items()))
    db.record_answer(annotator, 1, ids[0], study_set.task(ids[0]).validate_answer(
        generic_answer(study_set.task(ids[0]).public(), 0)), None)
    db.close()
    make_toy_study(root, "toy", seed=9)
    assert main([str(root), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: study 'toy': its tasks or assignments differ") and err.count("\n") == 1


def test_bad_arguments_are_one_sentence(study_set, tmp_path):
    with pytest.raises(DebuggableError, match="port: expected an integer from 0 to 65535, got 70000"):
        serve(study_set.root, port=70000)
    with pytest.raises(DebuggableError, match="holds no studies"):
        serve(tmp_path / "nothing")
    with pytest.raises(DebuggableError, match="log_level: expected one of"):
        serve(study_set.root, log_level="loud")


def test_a_bad_database_url_stops_the_server_with_one_sentence(study_set, capsys):
    assert main([str(study_set.root), "--database", "nonsense://"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: database URL 'nonsense://': SQLAlchemy knows no database 'nonsense'")
