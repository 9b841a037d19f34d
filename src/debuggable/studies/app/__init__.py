"""The annotation web app: server-rendered pages for annotators, a JSON API for programs, an admin page.

:func:`create_app` builds a FastAPI application over a :class:`StudySet` (what to
show) and a :class:`StudyDatabase` (where answers go). Every task page is rendered
from the task's public record alone (its blocks in order, then its questions), so a
new study kind needs no change here. Pages work without JavaScript; a small static
script adds keyboard shortcuts.

Routes (``TOKEN`` is an annotator's token, ``ADMIN`` the admin token; positions are
1-based in the annotator's own list):

==========================================  ====================================================
``GET  /a/TOKEN``                           the study's instructions, progress, Start/Continue
``GET  /a/TOKEN/t/N``                       task N ("N of M"); an answered one read-only
``POST /a/TOKEN/t/N``                       a form answer: stored, then 303 to the next one
``GET  /a/TOKEN/done``                      thanks and the completion code
``GET  /a/TOKEN/img/SRC``                   an image of the annotator's own study
``GET  /api/a/TOKEN``                       ``{annotator, study, answered, total, next}``
``GET  /api/a/TOKEN/tasks/N``               ``{position, total, answered, answer, task}``
``POST /api/a/TOKEN/tasks/N``               ``{task_id, answer, elapsed_ms}`` -> 201 / 200 (repeat)
``GET  /admin/ADMIN``                       progress per study and condition, per annotator
``GET  /admin/ADMIN/export/answers.csv``    every answer with its task record
``GET  /admin/ADMIN/export/answers.jsonl``  the same as JSON lines
``GET  /admin/ADMIN/export/links.csv``      one URL per annotator (``?base_url=...``)
``GET  /healthz``                           ``{"ok": true}`` once the app is up
==========================================  ====================================================

Refusals: a missing, malformed, forged or unknown token is 403 with the same body
whatever the reason, before anything is read or written; a position outside the
annotator's list is 404; a body over the size limit is 413; an API answer naming
another task than the one at N is 409; an invalid answer is 422 with one sentence.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from debuggable.errors import DebuggableError
from debuggable.studies.app.forms import answer_from_form, field_name, values_from_answer
from debuggable.studies.app.security import MAX_BODY_BYTES, SecurityMiddleware
from debuggable.studies.db import StudyDatabase
from debuggable.studies.export import (
    answers_csv,
    answers_jsonl,
    answers_rows,
    check_base_url,
    completion_code,
    links_csv,
    links_rows,
)
from debuggable.studies.files import StudySet
from debuggable.studies.schema import AnswerError, Question, Study, Task

HERE = Path(__file__).parent
#: The most milliseconds an answer may say it took (what the database's integer holds).
MAX_ELAPSED_MS = 2**31 - 1
FORBIDDEN = "This link is not valid. Check that you opened the whole address you were given."
NOT_FOUND = "There is no such task in your list."


@dataclass(frozen=True)
class _Annotator:
    id: str
    token: str
    study: Study
    tasks: list[str]

    @property
    def total(self) -> int:
        return len(self.tasks)


def _likert_values(q: Question) -> list[dict[str, str]]:
    return [{"value": str(v), "key": str(v) if len(str(v)) == 1 else ""} for v in range(q.low, q.high + 1)]


def _condition_label(task: Task, q: Question) -> str:
    """'"<prompt>" is "<option label>"' for a question asked only under a condition."""
    other = next(o for o in task.questions if o.key == q.show_if["key"])
    label = next((o.label for o in other.options if o.value == q.show_if["equals"]), q.show_if["equals"])
    return f"Answer only if your answer to “{other.prompt}” is “{label}”."


def create_app(study_set: StudySet, database: StudyDatabase, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The annotation app over ``study_set`` storing into ``database``.

    The database must be migrated and hold the studies
    (:meth:`StudyDatabase.migrate`, :meth:`StudyDatabase.import_studies`;
    :func:`debuggable.studies.server.serve` does both).

    Args:
        study_set: the run's studies.
        database: where answers are stored.
        max_body_bytes: larger request bodies are refused with 413.
    """
    app = FastAPI(title="debuggable studies", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityMiddleware, max_body_bytes=max_body_bytes)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
    templates.env.trim_blocks = templates.env.lstrip_blocks = True
    templates.env.globals.update(field_name=field_name, likert_values=_likert_values, condition_label=_condition_label)
    app.state.study_set = study_set
    app.state.database = database
    signer = study_set.signer

    # -- helpers --------------------------------------------------------------------

    def annotator_of(token: str) -> _Annotator:
        annotator_id = signer.verify_annotator(token)
        study = study_set.study_of(annotator_id) if annotator_id is not None else None
        if study is None:
            raise HTTPException(403, FORBIDDEN)
        return _Annotator(annotator_id, token, study, study_set.assignments[study.name][annotator_id])

    def position_of(who: _Annotator, n: str) -> tuple[int, Task]:
        if not (n.isascii() and n.isdigit()) or not 1 <= int(n) <= who.total:
            raise HTTPException(404, NOT_FOUND)
        position = int(n)
        return position, study_set.task(who.tasks[position - 1])

    def require_admin(token: str) -> None:
        if not signer.verify_admin(token):
            raise HTTPException(403, FORBIDDEN)

    def base_path(request: Request, who: _Annotator) -> str:
        return f"{request.scope.get('root_path', '')}/a/{who.token}"

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
        context = {"static": f"{request.scope.get('root_path', '')}/static", **context}
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def summary(who: _Annotator) -> tuple[set[int], int | None]:
        done = database.answered_positions(who.id)
        nxt = next((p for p in range(1, who.total + 1) if p not in done), None)
        return done, nxt

    # -- errors ---------------------------------------------------------------------

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/") or request.url.path.startswith("/healthz"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return page(request, "error.html", {"status": exc.status_code, "message": exc.detail, "title": "debuggable studies"},
                    status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": "the request is malformed."}, status_code=422)

    # -- annotator pages --------------------------------------------------------------

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    @app.get("/a")
    @app.get("/a/")
    @app.get("/api/a")
    @app.get("/api/a/")
    @app.get("/admin")
    @app.get("/admin/")
    def no_token():
        raise HTTPException(403, FORBIDDEN)

    @app.get("/a/{token}")
    def start(request: Request, token: str):
        who = annotator_of(token)
        done, nxt = summary(who)
        return page(request, "start.html", dict(study=who.study, title=who.study.title, base=base_path(request, who),
                                                answered=len(done), total=who.total, next=nxt))

    @app.get("/a/{token}/done")
    def finished(request: Request, token: str):
        who = annotator_of(token)
        done, nxt = summary(who)
        return page(request, "done.html", dict(title=who.study.title, base=base_path(request, who), answered=len(done),
                                               total=who.total, next=nxt,
                                               code=completion_code(who.token) if nxt is None else None))

    def task_page(request: Request, who: _Annotator, position: int, task: Task, *, values: dict[str, Any],
                  readonly: bool, error: AnswerError | None = None, shown_at: int | None = None,
                  status_code: int = 200) -> Response:
        done, nxt = summary(who)
        later = next((p for p in range(position + 1, who.total + 1) if p not in done), None) or nxt
        public = task.model_copy(update={"key": {}, "meta": {}})  # only what the browser may see
        return page(request, "task.html", dict(
            title=who.study.title, base=base_path(request, who), task=public, position=position, total=who.total,
            answered=len(done), values=values, readonly=readonly, error=error,
            error_prompt=next((q.prompt for q in task.questions if error and q.key == error.question), None),
            shown_at=shown_at if shown_at is not None else int(time.time() * 1000), next=later,
        ), status_code=status_code)

    @app.get("/a/{token}/t/{n}")
    def show_task(request: Request, token: str, n: str):
        who = annotator_of(token)
        position, task = position_of(who, n)
        stored = database.answer_at(who.id, position)
        if stored is not None:
            return task_page(request, who, position, task, values=values_from_answer(task, stored), readonly=True)
        return task_page(request, who, position, task, values=values_from_answer(task, {}), readonly=False)

    @app.post("/a/{token}/t/{n}")
    async def submit_task(request: Request, token: str, n: str):
        who = annotator_of(token)
        position, task = position_of(who, n)
        form = await request.form(max_files=0, max_fields=len(task.questions) * 64 + 16)
        if form.get("task_id") != task.id:
            raise HTTPException(409, "This page is out of date: the task it shows is not the one at this position. "
                                     "Reload it.")
        answer, values = answer_from_form(task, form.getlist)
        shown_at = form.get("shown_at")
        shown_at = int(shown_at) if isinstance(shown_at, str) and shown_at.isdigit() else None
        now = int(time.time() * 1000)
        elapsed = now - shown_at if shown_at is not None and 0 <= now - shown_at <= MAX_ELAPSED_MS else None
        try:
            normalised = task.validate_answer(answer)
        except AnswerError as exc:
            return await run_in_threadpool(task_page, request, who, position, task, values=values, readonly=False,
                                           error=exc, shown_at=shown_at, status_code=422)
        await run_in_threadpool(database.record_answer, who.id, position, task.id, normalised, elapsed)
        done, nxt = await run_in_threadpool(summary, who)
        later = next((p for p in range(position + 1, who.total + 1) if p not in done), None) or nxt
        target = f"{base_path(request, who)}/t/{later}" if later is not None else f"{base_path(request, who)}/done"
        return RedirectResponse(target, status_code=303)

    @app.get("/a/{token}/img/{src:path}")
    def image(token: str, src: str):
        who = annotator_of(token)
        path = study_set.image_path(who.study.name, src)
        if path is None:
            raise HTTPException(404, "There is no such image in your study.")
        return FileResponse(path)

    # -- JSON API -------------------------------------------------------------------

    @app.get("/api/a/{token}")
    def api_status(token: str):
        who = annotator_of(token)
        done, nxt = summary(who)
        return {"annotator": who.id, "study": who.study.name, "answered": len(done), "total": who.total, "next": nxt}

    @app.get("/api/a/{token}/tasks/{n}")
    def api_task(token: str, n: str):
        who = annotator_of(token)
        position, task = position_of(who, n)
        stored = database.answer_at(who.id, position)
        return {"position": position, "total": who.total, "answered": stored is not None, "answer": stored,
                "task": task.public()}

    @app.post("/api/a/{token}/tasks/{n}")
    async def api_submit(request: Request, token: str, n: str):
        who = annotator_of(token)
        position, task = position_of(who, n)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"detail": "the body is not JSON; expected {\"task_id\", \"answer\", \"elapsed_ms\"}."},
                                status_code=422)
        if not isinstance(body, dict) or not {"task_id", "answer"} <= set(body) or set(body) - {"task_id", "answer", "elapsed_ms"}:
            return JSONResponse({"detail": "the body must be an object with task_id, answer and optionally elapsed_ms, "
                                           f"got {sorted(body) if isinstance(body, dict) else type(body).__name__}."},
                                status_code=422)
        if body["task_id"] != task.id:
            return JSONResponse({"detail": f"task_id {body['task_id']!r} is not the task at position {position}."},
                                status_code=409)
        elapsed = body.get("elapsed_ms")
        if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, int)
                                    or not 0 <= elapsed <= MAX_ELAPSED_MS):
            return JSONResponse({"detail": f"elapsed_ms: expected null or an integer from 0 to {MAX_ELAPSED_MS}, "
                                           f"got {elapsed!r}."}, status_code=422)
        try:
            normalised = task.validate_answer(body["answer"])
        except AnswerError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        created = await run_in_threadpool(database.record_answer, who.id, position, task.id, normalised, elapsed)
        return JSONResponse({"created": created}, status_code=201 if created else 200)

    # -- admin ----------------------------------------------------------------------

    @app.get("/admin/{admin_token}")
    def admin(request: Request, admin_token: str):
        require_admin(admin_token)
        base = f"{request.scope.get('root_path', '')}/admin/{admin_token}"
        return page(request, "admin.html", dict(
            title="Studies: progress", base=base, studies=study_set.studies, progress=database.progress(),
            annotators=database.annotator_progress(), base_url=str(request.base_url).rstrip("/"),
        ))

    @app.get("/admin/{admin_token}/export/answers.csv")
    def export_csv(admin_token: str, study: str | None = None):
        require_admin(admin_token)
        rows = _rows(study)
        return Response(answers_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="answers.csv"'})

    @app.get("/admin/{admin_token}/export/answers.jsonl")
    def export_jsonl(admin_token: str, study: str | None = None):
        require_admin(admin_token)
        rows = _rows(study)
        return Response(answers_jsonl(rows), media_type="application/x-ndjson; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="answers.jsonl"'})

    @app.get("/admin/{admin_token}/export/links.csv")
    def export_links(request: Request, admin_token: str, base_url: str | None = None):
        require_admin(admin_token)
        try:
            rows = links_rows(study_set, check_base_url(base_url or str(request.base_url)))
        except DebuggableError as exc:
            raise HTTPException(422, str(exc)) from None
        return Response(links_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="links.csv"'})

    def _rows(study: str | None) -> list[dict[str, Any]]:
        try:
            return answers_rows(study_set, database, study)
        except DebuggableError as exc:
            raise HTTPException(404, str(exc)) from None

    return app


__all__ = ["create_app"]
