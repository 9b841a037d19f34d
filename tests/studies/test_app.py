"""The annotation app through its HTTP interface: pages, the JSON API, admin, and every refusal."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from debuggable.studies import StudySet
from debuggable.studies.app import create_app
from debuggable.studies.app.security import MAX_BODY_BYTES
from debuggable.studies.db import StudyDatabase
from debuggable.studies.export import completion_code

from tests.studies.answering import EVIL_TEXT, generic_answer
from tests.studies.toy import make_toy_studies


@pytest.fixture
def db(study_set):
    d = StudyDatabase(study_set.database_url)  # migrated and imported already (conftest)
    assert d.import_studies(study_set) == {"toy": "unchanged", "toy2": "unchanged"}
    yield d
    d.close()


@pytest.fixture
def client(study_set, db):
    with TestClient(create_app(study_set, db), follow_redirects=False) as c:
        yield c


def _who(study_set, study="toy", i=0):
    annotator = list(study_set.assignments[study])[i]
    return annotator, study_set.signer.annotator_token(annotator), study_set.assignments[study][annotator]


def _form(task_id, answer, shown_at=None):
    data: dict[str, list[str]] = {"task_id": [task_id]}
    if shown_at is not None:
        data["shown_at"] = [str(shown_at)]
    for k, v in answer.items():
        data[f"q.{k}"] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return data


def _main_position(study_set, ids):
    return next(i for i, t in enumerate(ids, 1) if not study_set.task(t).attention_check)


# -- pages ------------------------------------------------------------------------------

def test_start_page_shows_the_study_and_resumes(client, study_set, db):
    annotator, token, ids = _who(study_set)
    r = client.get(f"/a/{token}")
    assert r.status_code == 200
    assert "Toy study toy" in r.text and "Look, then answer." in r.text and "0 of 8 tasks answered" in r.text
    assert f'href="/a/{token}/t/1"' in r.text and ">Start<" in r.text
    for p in (1, 2):
        db.record_answer(annotator, p, ids[p - 1], study_set.task(ids[p - 1]).validate_answer(
            generic_answer(study_set.task(ids[p - 1]).public(), p)), None)
    r = client.get(f"/a/{token}")
    assert "2 of 8 tasks answered" in r.text and f'href="/a/{token}/t/3"' in r.text and "Continue with task 3 of 8" in r.text


def test_security_headers_on_every_page(client, study_set):
    _, token, _ = _who(study_set)
    for url in (f"/a/{token}", f"/a/{token}/t/1", f"/api/a/{token}", "/a/bad.token",
                f"/admin/{study_set.signer.admin_token()}"):
        r = client.get(url)
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors *" in csp and "unsafe-inline" not in csp
        assert "x-frame-options" not in r.headers  # crowd platforms frame the pages
    # The page's script and stylesheet are the app's own files.
    page = client.get(f"/a/{token}/t/1").text
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert client.get(src).status_code == 200


def test_every_task_renders_from_its_public_record(client, study_set):
    """Each block and question of every task of every study is on its page, and nothing secret."""
    for study, lists in study_set.assignments.items():
        for annotator, ids in lists.items():
            token = study_set.signer.annotator_token(annotator)
            for position, task_id in enumerate(ids, 1):
                task = study_set.task(task_id)
                r = client.get(f"/a/{token}/t/{position}")
                assert r.status_code == 200
                assert f"Task {position} of {len(ids)}" in r.text
                assert f'name="task_id" value="{task_id}"' in r.text
                for q in task.questions:
                    assert q.prompt in r.text and f'name="q.{q.key}"' in r.text
                    for i, o in enumerate(q.options):
                        assert f'value="{o.value}" data-key="{q.shortcut(i)}"' in r.text
                srcs = re.findall(r'<img src="([^"]+)"', r.text)
                assert srcs == [f"/a/{token}/img/{s}" for s in task.images()]
                for src, name in zip(srcs, task.images()):
                    img = client.get(src)
                    assert img.status_code == 200 and img.content == (study_set.root / study / name).read_bytes()
                for block in task.blocks:
                    if block.text:
                        assert block.text.replace("<", "&lt;").replace(">", "&gt;") in r.text
                api = client.get(f"/api/a/{token}/tasks/{position}").json()
                assert api["task"] == task.public() and "key" not in api["task"] and "meta" not in api["task"]


def test_a_form_answer_is_stored_and_the_page_moves_on(client, study_set, db):
    annotator, token, ids = _who(study_set)
    task = study_set.task(ids[0])
    answer = generic_answer(task.public(), 3)
    r = client.post(f"/a/{token}/t/1", data=_form(task.id, answer, shown_at=1))
    assert r.status_code == 303 and r.headers["location"] == f"/a/{token}/t/2"
    rows = db.answers()
    assert len(rows) == 1 and rows[0]["answer"] == task.validate_answer(answer) and rows[0]["position"] == 1
    assert rows[0]["elapsed_ms"] is None  # a shown_at from the distant past is not believed
    # The last open position leads to the done page with the completion code.
    for p in range(2, len(ids) + 1):
        t = study_set.task(ids[p - 1])
        r = client.post(f"/a/{token}/t/{p}", data=_form(t.id, generic_answer(t.public(), p)))
        assert r.status_code == 303
    assert r.headers["location"] == f"/a/{token}/done"
    done = client.get(f"/a/{token}/done").text
    assert "Thank you" in done and completion_code(token) in done
    assert db.next_position(annotator) is None


def test_the_next_page_after_a_submit_is_the_next_gap(client, study_set, db):
    annotator, token, ids = _who(study_set)
    t3 = study_set.task(ids[2])
    db.record_answer(annotator, 3, t3.id, t3.validate_answer(generic_answer(t3.public(), 0)), None)
    t2 = study_set.task(ids[1])
    r = client.post(f"/a/{token}/t/2", data=_form(t2.id, generic_answer(t2.public(), 0)))
    assert r.headers["location"] == f"/a/{token}/t/4"  # 3 is answered already
    t8 = study_set.task(ids[7])
    r = client.post(f"/a/{token}/t/8", data=_form(t8.id, generic_answer(t8.public(), 0)))
    assert r.headers["location"] == f"/a/{token}/t/1"  # wraps to the first gap


def test_elapsed_time_comes_from_the_page_shown(client, study_set, db):
    _, token, ids = _who(study_set)
    page = client.get(f"/a/{token}/t/1").text
    shown_at = int(re.search(r'name="shown_at" value="(\d+)"', page).group(1))
    task = study_set.task(ids[0])
    client.post(f"/a/{token}/t/1", data=_form(task.id, generic_answer(task.public(), 0), shown_at=shown_at - 1500))
    assert 1500 <= db.answers()[0]["elapsed_ms"] < 60_000


def test_an_invalid_form_keeps_what_was_typed(client, study_set, db):
    _, token, ids = _who(study_set)
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    # No choice for 'pick'; a description with markup.
    answer = {"seen": ["B"], "ease": "4", "pattern": "yes", "describe": EVIL_TEXT}
    r = client.post(f"/a/{token}/t/{p}", data=_form(task.id, answer))
    assert r.status_code == 422
    assert "“Which image is brightest?”: an answer is required." in r.text
    assert "<script>alert" not in r.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#39;; DROP TABLE answers; -- &#34; &amp; é" in r.text
    assert re.search(r'value="B" data-key="b" checked', r.text)
    assert re.search(r'name="q.ease" value="4" data-key="4" checked', r.text)
    assert db.counts()["answers"] == 0


@pytest.mark.parametrize("bad, problem", [
    ({"pick": "Z"}, "expected one of ['A', 'B', 'C']"),
    ({"ease": "9"}, "expected an integer from 1 to 5"),
    ({"ease": "three"}, "expected an integer from 1 to 5"),
    ({"seen": ["A", "Q"]}, "expected a list drawn from ['A', 'B', 'C']"),
    ({"describe": "x" * 201}, "expected at most 200 characters, got 201"),
])
def test_out_of_range_form_values_are_refused(client, study_set, db, bad, problem):
    _, token, ids = _who(study_set)
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    answer = {"pick": "A", "seen": [], "ease": "3", "pattern": "yes", "describe": "ok", **bad}
    r = client.post(f"/a/{token}/t/{p}", data=_form(task.id, answer))
    assert r.status_code == 422 and problem.replace("'", "&#39;") in r.text
    assert db.counts()["answers"] == 0


def test_a_question_that_does_not_apply_is_dropped(client, study_set, db):
    _, token, ids = _who(study_set)
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    r = client.post(f"/a/{token}/t/{p}", data=_form(task.id, {"pick": "A", "ease": "2", "pattern": "no",
                                                                "describe": "typed before choosing No"}))
    assert r.status_code == 303
    assert db.answers()[0]["answer"] == {"pick": "A", "seen": [], "ease": 2, "pattern": "no"}


def test_an_answered_task_is_read_only_and_final(client, study_set, db):
    _, token, ids = _who(study_set)
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    first = {"pick": "C", "seen": ["A", "C"], "ease": "5", "pattern": "yes", "describe": EVIL_TEXT + "\r\nline 2"}
    assert client.post(f"/a/{token}/t/{p}", data=_form(task.id, first)).status_code == 303
    second = {"pick": "A", "ease": "1", "pattern": "no"}
    r = client.post(f"/a/{token}/t/{p}", data=_form(task.id, second))
    assert r.status_code == 303  # a double submit moves on like the first one did
    rows = db.answers()
    assert len(rows) == 1
    assert rows[0]["answer"] == {"pick": "C", "seen": ["A", "C"], "ease": 5, "pattern": "yes",
                                 "describe": EVIL_TEXT + "\nline 2"}  # verbatim (line breaks as typed)
    page = client.get(f"/a/{token}/t/{p}").text
    assert "<fieldset disabled>" in page and "answers are final" in page and 'type="submit"' not in page
    assert re.search(r'name="q.pick" value="C" data-key="3" checked', page)
    assert re.search(r'value="A" data-key="a" checked', page) and re.search(r'value="C" data-key="c" checked', page)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page and "<script>alert" not in page


def test_a_stale_form_for_another_task_is_refused(client, study_set, db):
    _, token, ids = _who(study_set)
    task2 = study_set.task(ids[1])
    r = client.post(f"/a/{token}/t/1", data=_form(task2.id, generic_answer(task2.public(), 0)))
    assert r.status_code == 409 and "out of date" in r.text
    r = client.post(f"/a/{token}/t/1", data={"q.pick": "A"})
    assert r.status_code == 409
    assert db.counts()["answers"] == 0


# -- refusals -----------------------------------------------------------------------------

def _bad_tokens(study_set, tmp_path):
    annotator, token, _ = _who(study_set)
    other = make_toy_studies(tmp_path / "other")  # another run: same ids, another secret
    return {
        "wrong": "not-a-token",
        "forged": f"{annotator}.{'A' * 32}",
        "truncated": token[:-1],
        "another run's": other.signer.annotator_token(annotator),
        "unknown annotator": study_set.signer.annotator_token("toy-999"),
        "admin": study_set.signer.admin_token(),
        "long": "x" * 5000,
    }


def test_bad_tokens_get_the_same_403_and_write_nothing(client, study_set, db, tmp_path):
    _, _, ids = _who(study_set)
    task = study_set.task(ids[0])
    answer = generic_answer(task.public(), 0)
    bodies = set()
    for name, bad in _bad_tokens(study_set, tmp_path).items():
        for method, url, kw in [
            ("GET", f"/a/{bad}", {}), ("GET", f"/a/{bad}/t/1", {}), ("GET", f"/a/{bad}/done", {}),
            ("POST", f"/a/{bad}/t/1", {"data": _form(task.id, answer)}),
            ("GET", f"/a/{bad}/img/{task.images()[0]}", {}),
            ("GET", f"/api/a/{bad}", {}), ("GET", f"/api/a/{bad}/tasks/1", {}),
            ("POST", f"/api/a/{bad}/tasks/1", {"json": {"task_id": task.id, "answer": answer}}),
            ("POST", f"/api/a/{bad}/tasks/999", {"json": {"task_id": task.id, "answer": answer}}),
        ]:
            r = client.request(method, url, **kw)
            assert r.status_code == 403, (name, method, url)
            bodies.add((url.startswith("/api/"), r.text))
    for url in ("/a", "/a/", "/api/a/", "/admin", "/admin/"):
        assert client.get(url).status_code == 403
    # One page body and one JSON body, whatever the reason.
    assert len(bodies) == 2
    assert db.counts()["answers"] == 0


def test_admin_routes_need_the_admin_token(client, study_set, tmp_path):
    _, token, _ = _who(study_set)
    other = make_toy_studies(tmp_path / "other")
    for bad in ("x", token, other.signer.admin_token(), study_set.signer.admin_token()[:-1]):
        for suffix in ("", "/export/answers.csv", "/export/answers.jsonl", "/export/links.csv"):
            assert client.get(f"/admin/{bad}{suffix}").status_code == 403


@pytest.mark.parametrize("n", ["0", "9", "-1", "1.5", "abc", "01x", "99999999999999999999", "\u0663", " 1"])
def test_out_of_range_positions_are_404_and_write_nothing(client, study_set, db, n):
    _, token, ids = _who(study_set)
    assert len(ids) == 8
    task = study_set.task(ids[0])
    answer = generic_answer(task.public(), 0)
    assert client.get(f"/a/{token}/t/{n}").status_code == 404
    assert client.post(f"/a/{token}/t/{n}", data=_form(task.id, answer)).status_code == 404
    assert client.get(f"/api/a/{token}/tasks/{n}").status_code == 404
    assert client.post(f"/api/a/{token}/tasks/{n}", json={"task_id": task.id, "answer": answer}).status_code == 404
    assert db.counts()["answers"] == 0


def test_images_are_only_the_annotators_own(client, study_set):
    _, token, ids = _who(study_set)
    (study_set.root / "toy" / "img" / "unlisted.png").write_bytes(b"\x89PNG not a task image")
    own = study_set.task(ids[0]).images()[0]
    assert client.get(f"/a/{token}/img/{own}").status_code == 200
    for src in ["img/unlisted.png", "tasks.jsonl", "study.json", "assignments.json", "../secret.key",
                "img/../../secret.key", "img/..%2F..%2Fsecret.key", "%2e%2e/secret.key", "img/%2e%2e/study.json",
                "/etc/passwd", "img//etc/passwd", "../toy2/img/t1_A.png", "img/../../toy2/study.json", "img/"]:
        r = client.get(f"/a/{token}/img/{src}")
        assert r.status_code == 404, src
        assert (study_set.root / "secret.key").read_bytes() not in r.content
    # toy2's files with the same names are served to toy2's annotators from toy2's directory.
    _, token2, ids2 = _who(study_set, "toy2")
    src2 = study_set.task(ids2[0]).images()[0]
    assert client.get(f"/a/{token2}/img/{src2}").content == (study_set.root / "toy2" / src2).read_bytes()


def test_oversized_bodies_are_refused(client, study_set, db):
    _, token, ids = _who(study_set)
    task = study_set.task(ids[0])
    big = "x" * (MAX_BODY_BYTES + 1)
    r = client.post(f"/a/{token}/t/1", data={"task_id": task.id, "q.describe": big})
    assert r.status_code == 413
    r = client.post(f"/api/a/{token}/tasks/1", json={"task_id": task.id, "answer": {"describe": big}})
    assert r.status_code == 413
    # Without a length (chunked), the limit holds too.
    r = client.post(f"/api/a/{token}/tasks/1", content=iter([b"{" + b" " * 40000, b" " * 40000 + b"}"]),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert db.counts()["answers"] == 0


# -- JSON API -------------------------------------------------------------------------------

def test_the_api_round_trip(client, study_set, db):
    annotator, token, ids = _who(study_set)
    assert client.get(f"/api/a/{token}").json() == {"annotator": annotator, "study": "toy", "answered": 0,
                                                    "total": 8, "next": 1}
    got = client.get(f"/api/a/{token}/tasks/2").json()
    assert got == {"position": 2, "total": 8, "answered": False, "answer": None,
                   "task": study_set.task(ids[1]).public()}
    answer = generic_answer(got["task"], 7)
    r = client.post(f"/api/a/{token}/tasks/2", json={"task_id": ids[1], "answer": answer, "elapsed_ms": 4321})
    assert r.status_code == 201 and r.json() == {"created": True}
    r = client.post(f"/api/a/{token}/tasks/2", json={"task_id": ids[1], "answer": answer, "elapsed_ms": 1})
    assert r.status_code == 200 and r.json() == {"created": False}
    assert client.get(f"/api/a/{token}").json()["answered"] == 1
    stored = study_set.task(ids[1]).validate_answer(answer)
    assert client.get(f"/api/a/{token}/tasks/2").json()["answer"] == stored
    rows = db.answers()
    assert len(rows) == 1 and rows[0]["elapsed_ms"] == 4321 and rows[0]["answer"] == stored


@pytest.mark.parametrize("make, status, detail", [
    (lambda t, ids, full: {"json": {"task_id": "toy/9999", "answer": full}}, 409,
     "task_id 'toy/9999' is not the task at position 1."),
    (lambda t, ids, full: {"json": {"task_id": ids[1], "answer": full}}, 409, "is not the task at position 1"),
    (lambda t, ids, full: {"json": {"answer": full}}, 422, "the body must be an object with task_id, answer"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": full, "extra": 1}}, 422, "the body must be an object"),
    (lambda t, ids, full: {"json": [1, 2]}, 422, "the body must be an object"),
    (lambda t, ids, full: {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     "the body is not JSON"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": {**full, "nope": 1}}}, 422,
     "answer to 'nope': no such question"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": "A"}}, 422,
     "expected an object mapping question keys to answers"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": {}}}, 422, "an answer is required"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": full, "elapsed_ms": -5}}, 422,
     "elapsed_ms: expected null or an integer"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": full, "elapsed_ms": True}}, 422,
     "elapsed_ms: expected null or an integer"),
    (lambda t, ids, full: {"json": {"task_id": t.id, "answer": full, "elapsed_ms": 2**40}}, 422,
     "elapsed_ms: expected null or an integer"),
])
def test_the_api_refuses_bad_submissions(client, study_set, db, make, status, detail):
    _, token, ids = _who(study_set)
    task = study_set.task(ids[0])
    r = client.post(f"/api/a/{token}/tasks/1", **make(task, ids, generic_answer(task.public(), 0)))
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert db.counts()["answers"] == 0


def test_free_text_through_the_api_is_verbatim_and_shown_escaped(client, study_set, db):
    _, token, ids = _who(study_set)
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    answer = {"pick": "B", "ease": 2, "pattern": "yes", "describe": EVIL_TEXT}
    assert client.post(f"/api/a/{token}/tasks/{p}", json={"task_id": task.id, "answer": answer}).status_code == 201
    assert db.answers()[0]["answer"]["describe"] == EVIL_TEXT
    page = client.get(f"/a/{token}/t/{p}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


# -- admin ------------------------------------------------------------------------------------

def test_admin_page_and_exports(client, study_set, db):
    admin = study_set.signer.admin_token()
    annotator, token, ids = _who(study_set)
    checks = [p for p, t in enumerate(ids, 1) if study_set.task(t).attention_check]
    client.post(f"/api/a/{token}/tasks/{checks[0]}", json={"task_id": ids[checks[0] - 1], "answer": {"pick": "B"}})
    p = _main_position(study_set, ids)
    task = study_set.task(ids[p - 1])
    client.post(f"/api/a/{token}/tasks/{p}", json={"task_id": task.id, "answer": {
        "pick": task.key["pick"], "ease": 3, "pattern": "yes", "describe": EVIL_TEXT}})
    page = client.get(f"/admin/{admin}")
    assert page.status_code == 200
    assert f'href="/admin/{admin}/export/answers.csv"' in page.text and "1 of 1 answered" in page.text
    assert re.search(rf"<td>toy</td><td>{task.condition}</td><td>6</td><td>12</td>\s*<td>1 ", page.text)

    r = client.get(f"/admin/{admin}/export/answers.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="answers.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["task_id"] for row in rows] == [ids[checks[0] - 1], task.id]
    assert rows[0]["attention_check"] == "true" and rows[0]["correct.pick"] == "true"
    assert rows[1]["answer.describe"] == EVIL_TEXT and rows[1]["correct.pick"] == "true"
    assert json.loads(rows[1]["meta"]) == task.meta and json.loads(rows[1]["key"]) == task.key

    lines = client.get(f"/admin/{admin}/export/answers.jsonl").text.splitlines()
    records = [json.loads(x) for x in lines]
    assert records[1]["answer"]["describe"] == EVIL_TEXT and records[1]["meta"] == task.meta
    assert records[1]["correct"] == {"pick": True}

    links = client.get(f"/admin/{admin}/export/links.csv", params={"base_url": "https://studies.example.org/run1/"})
    rows = list(csv.DictReader(io.StringIO(links.text)))
    assert len(rows) == 8 and rows[0]["url"] == f"https://studies.example.org/run1/a/{token}"
    assert rows[0]["completion_code"] == completion_code(token)
    default = list(csv.DictReader(io.StringIO(client.get(f"/admin/{admin}/export/links.csv").text)))
    assert default[0]["url"] == f"http://testserver/a/{token}"
    assert client.get(f"/admin/{admin}/export/links.csv", params={"base_url": "javascript:alert(1)"}).status_code == 422
    assert client.get(f"/admin/{admin}/export/answers.csv", params={"study": "nope"}).status_code == 404
    only = list(csv.DictReader(io.StringIO(client.get(f"/admin/{admin}/export/answers.csv", params={"study": "toy2"}).text)))
    assert only == []


def test_the_app_serves_a_study_set_reloaded_from_disk(study_set, db, tmp_path):
    """A restart reads the same studies and tokens from disk: old links keep working."""
    _, token, _ = _who(study_set)
    copy = tmp_path / "copy"
    shutil.copytree(study_set.root, copy)
    with TestClient(create_app(StudySet(copy), db)) as c:
        assert c.get(f"/api/a/{token}").status_code == 200
