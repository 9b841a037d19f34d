"""Annotators in a real browser: Playwright driving Debian's Chromium against a real server.

Every test walks every study of the study set and answers each task generically from
its public record (the questions' kinds, options and shortcut keys), so a new study
kind is covered without a change here. Skipped, with the reason, when Chromium
(``apt-get install chromium``; ``.ci/run`` installs it as root) or Playwright is missing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from debuggable.studies import StudySet
from debuggable.studies.db import StudyDatabase
from debuggable.studies.export import completion_code
from debuggable.studies.server import ServerProcess

from tests.studies.answering import generic_answer, shortcut
from tests.studies.tiny_study_run import fresh_copy
from tests.studies.toy import make_toy_studies

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (Debian package 'chromium'; .ci/run installs it when run as root)",
                allow_module_level=True)


@pytest.fixture(scope="module", params=["toy", "run"])
def study_set(request, tmp_path_factory):
    if request.param == "toy":
        # Four or five tasks per annotator (two or three main tasks, two attention checks), every question kind.
        return make_toy_studies(tmp_path_factory.mktemp("browser") / "studies", tasks_per_condition=3, annotators=5)
    # The five real study kinds, made from a tiny finished run (5 annotators each).
    run = fresh_copy(tmp_path_factory.mktemp("studies_run"), tmp_path_factory.mktemp("browser_run") / "run")
    return StudySet(run.path / "studies")


@pytest.fixture(scope="module")
def server(study_set):
    with ServerProcess(study_set.root) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    # Playwright's launch() starts Chromium on a fresh temporary profile (user-data-dir)
    # of its own and deletes it at close.
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Exception as exc:  # a broken install: say so rather than fail every test
            pytest.skip(f"Chromium did not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _annotators(study_set: StudySet, index: int):
    """The ``index``-th annotator of every study: (study, annotator, token, task ids)."""
    for study, lists in study_set.assignments.items():
        annotator = list(lists)[index]
        yield study, annotator, study_set.signer.annotator_token(annotator), lists[annotator]


def _seed(annotator: str, position: int) -> int:
    return sum(map(ord, annotator)) * 100 + position


def _next_url(server, token, ids, answered: set[int], position: int) -> str:
    later = [p for p in range(position + 1, len(ids) + 1) if p not in answered]
    earlier = [p for p in range(1, position) if p not in answered]
    nxt = (later or earlier or [None])[0]
    return f"{server.url}/a/{token}/t/{nxt}" if nxt else f"{server.url}/a/{token}/done"


def _answer_with_mouse(page, task: dict, answer: dict) -> None:
    for q in task["questions"]:
        if q["key"] not in answer:
            continue
        value = answer[q["key"]]
        name = f"q.{q['key']}"
        if q["kind"] == "text":
            box = page.locator(f"textarea[name='{name}']")
            box.click()
            box.fill(value)
            continue
        for v in (value if isinstance(value, list) else [value]):
            page.locator("label.option", has=page.locator(f"input[name='{name}'][value='{v}']")).click()
    page.get_by_role("button", name="Submit").click()


def _answer_with_keyboard(page, task: dict, answer: dict) -> None:
    """Only key presses: the page starts on the first question; a choice moves on by itself."""
    for q in task["questions"]:
        if q["key"] not in answer:
            continue
        value = answer[q["key"]]
        if q["kind"] == "choice":
            page.keyboard.press(shortcut(q, value))
        elif q["kind"] == "likert":
            page.keyboard.press(str(value))
        elif q["kind"] == "multi":
            for v in value:
                page.keyboard.press(shortcut(q, v))
            page.keyboard.press("ArrowDown")
        else:
            page.keyboard.type(value)
            page.keyboard.press("Escape")
            page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")


def _answer_positions(page, server, study_set, token, ids, annotator, positions, how, *, answered=()) -> dict[str, dict]:
    """Answer ``positions`` in turn (``answered``: those answered before), checking where each submit leads."""
    expected = {}
    answered = set(answered)
    for position in positions:
        url = f"{server.url}/a/{token}/t/{position}"
        if page.url != url:
            page.goto(url)
        assert page.locator("#progress").inner_text() == f"Task {position} of {len(ids)}"
        task = study_set.task(ids[position - 1])
        answer = generic_answer(task.public(), _seed(annotator, position))
        (_answer_with_mouse if how == "mouse" else _answer_with_keyboard)(page, task.public(), answer)
        answered.add(position)
        page.wait_for_url(_next_url(server, token, ids, answered, position))
        expected[task.id] = task.validate_answer(answer)
    return expected


def _stored(study_set, annotator) -> dict[str, dict]:
    db = StudyDatabase(study_set.database_url)
    try:
        return {r["task_id"]: r["answer"] for r in db.answers() if r["annotator_id"] == annotator}
    finally:
        db.close()


def test_an_annotator_completes_every_study_with_the_mouse(page, server, study_set):
    for study, annotator, token, ids in _annotators(study_set, 0):
        page.goto(f"{server.url}/a/{token}")
        assert study_set.studies[study].title in page.content()
        page.get_by_role("link", name="Start").click()
        page.wait_for_url(f"{server.url}/a/{token}/t/1")
        expected = _answer_positions(page, server, study_set, token, ids, annotator, range(1, len(ids) + 1), "mouse")
        assert page.locator("#completion-code").inner_text() == completion_code(token)
        assert _stored(study_set, annotator) == expected


def test_an_annotator_completes_every_study_with_the_keyboard_only(page, server, study_set):
    for study, annotator, token, ids in _annotators(study_set, 1):
        page.goto(f"{server.url}/a/{token}")
        page.keyboard.press("Enter")  # follows Start
        page.wait_for_url(f"{server.url}/a/{token}/t/1")
        expected = _answer_positions(page, server, study_set, token, ids, annotator, range(1, len(ids) + 1), "keyboard")
        assert "Thank you" in page.content()
        assert _stored(study_set, annotator) == expected


def test_closing_the_page_midway_resumes_at_the_right_task(browser, server, study_set):
    for study, annotator, token, ids in _annotators(study_set, 2):
        half = len(ids) // 2
        context = browser.new_context()
        context.set_default_timeout(10_000)
        page = context.new_page()
        expected = _answer_positions(page, server, study_set, token, ids, annotator, range(1, half + 1), "mouse")
        context.close()  # nothing of this browser session survives
        context = browser.new_context()
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.goto(f"{server.url}/a/{token}")
        assert f"{half} of {len(ids)} tasks answered" in page.content()
        page.get_by_role("link", name=f"Continue with task {half + 1} of {len(ids)}").click()
        page.wait_for_url(f"{server.url}/a/{token}/t/{half + 1}")
        # An answered task is shown read-only with its stored answer.
        page.goto(f"{server.url}/a/{token}/t/1")
        first = study_set.task(ids[0])
        assert page.locator("fieldset").get_attribute("disabled") is not None
        assert page.locator(f"[name='q.{first.questions[0].key}']").first.is_disabled()
        assert page.get_by_role("button", name="Submit").count() == 0
        for key, value in expected[first.id].items():
            for v in (value if isinstance(value, list) else [value]):
                q = next(q for q in first.questions if q.key == key)
                if q.kind == "text":
                    assert page.locator(f"textarea[name='q.{key}']").input_value() == v
                else:
                    assert page.locator(f"input[name='q.{key}'][value='{v}']").is_checked()
        expected.update(_answer_positions(page, server, study_set, token, ids, annotator,
                                          range(half + 1, len(ids) + 1), "mouse", answered=range(1, half + 1)))
        context.close()
        assert _stored(study_set, annotator) == expected


def test_everything_works_without_javascript(browser, server, study_set):
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        for study, annotator, token, ids in _annotators(study_set, 4):
            page.goto(f"{server.url}/a/{token}/t/1")
            # Without the script a conditional question is on the page, with its condition stated.
            assert page.locator(".condition").count() == sum(
                1 for q in study_set.task(ids[0]).questions if q.show_if is not None)
            expected = _answer_positions(page, server, study_set, token, ids, annotator, range(1, len(ids) + 1), "mouse")
            assert "Thank you" in page.content()
            assert _stored(study_set, annotator) == expected
    finally:
        context.close()


def test_the_admin_downloads_the_answers(page, server, study_set):
    # Answers given by this module's other tests, or by this one when it runs alone.
    for study, annotator, token, ids in _annotators(study_set, 3):
        _answer_positions(page, server, study_set, token, ids, annotator, range(1, 3), "mouse")
    page.goto(f"{server.url}/admin/{study_set.signer.admin_token()}")
    assert "Per study and condition" in page.content()
    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    db = StudyDatabase(study_set.database_url)
    stored = db.answers()
    db.close()
    assert len(rows) == len(stored) >= 4
    for row, want in zip(rows, stored):
        assert (row["study"], row["task_id"], row["annotator_id"], int(row["position"])) == (
            want["study"], want["task_id"], want["annotator_id"], want["position"])
        task = study_set.task(want["task_id"])
        for key, value in want["answer"].items():
            assert row[f"answer.{key}"] == (value if isinstance(value, str) else
                                            str(value) if isinstance(value, int) else json.dumps(value))
        for key, ok in task.correct(want["answer"]).items():
            assert row[f"correct.{key}"] == ("true" if ok else "false")
