"""Exports of a run's studies: every answer with its task record, and the annotator links.

* :func:`answers_rows` joins each stored answer with the task it answers (condition,
  attention check, answer key, meta) and says, per keyed question, whether it is
  right. :func:`write_answers_jsonl` keeps every value as it is (one JSON object a
  line); :func:`write_answers_csv` flattens it for a spreadsheet: one ``answer.<key>``
  column per question and one ``correct.<key>`` per keyed question, lists and objects
  as JSON.
* :func:`links_rows` is the crowd-platform export: one URL per annotator, carrying
  the annotator's token, and the completion code the done page shows.

Both write atomically (:mod:`debuggable.run.atomic`): a file is complete or absent.
Free text is exported verbatim; a spreadsheet that evaluates cells starting with
``=`` should import the CSV as text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from debuggable.errors import DebuggableError
from debuggable.run import atomic_write_text
from debuggable.studies.schema import Task

if TYPE_CHECKING:
    from debuggable.studies.db import StudyDatabase
    from debuggable.studies.files import StudySet

#: The columns every answer row starts with, in order.
ANSWER_COLUMNS = ["study", "task_id", "annotator_id", "position", "condition", "attention_check", "elapsed_ms",
                  "submitted_at"]
LINK_COLUMNS = ["study", "annotator_id", "url", "completion_code"]


def answers_rows(study_set: "StudySet", database: "StudyDatabase", study: str | None = None) -> list[dict[str, Any]]:
    """Every stored answer (of ``study`` only, when given) joined with its task record.

    Returns:
        In order of arrival, one dict per answer: the fields of
        :meth:`StudyDatabase.answers` plus ``key`` (the correct answers),
        ``meta`` (what the annotator did not see) and ``correct``
        (``{question: bool}`` per keyed question; empty when the task has no key).
        Tasks of a study no longer in ``study_set`` are joined with the record the
        database kept when it was served.
    """
    if study is not None and study not in study_set.studies:
        raise DebuggableError(f"study: {study!r} is not one of {sorted(study_set.studies)}.")
    rows = database.answers(study)
    missing = {r["task_id"] for r in rows if study_set.task(r["task_id"]) is None}
    stored = {i: Task.model_validate(rec) for i, rec in database.task_records().items() if i in missing} if missing else {}
    out = []
    for r in rows:
        task = study_set.task(r["task_id"]) or stored[r["task_id"]]
        out.append({**r, "key": dict(task.key), "meta": dict(task.meta), "correct": task.correct(r["answer"])})
    return out


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def answers_csv(rows: list[dict[str, Any]]) -> str:
    """``rows`` (from :func:`answers_rows`) as CSV text; see the module docstring for the columns."""
    answer_keys: list[str] = []
    keyed: list[str] = []
    for r in rows:
        for k in r["answer"]:
            if k not in answer_keys:
                answer_keys.append(k)
        for k in r["key"]:
            if k not in keyed:
                keyed.append(k)
    columns = (ANSWER_COLUMNS + [f"answer.{k}" for k in answer_keys] + [f"correct.{k}" for k in keyed]
               + ["answer", "key", "meta"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        line = {c: _cell(r[c]) for c in ANSWER_COLUMNS}
        line.update({f"answer.{k}": _cell(r["answer"].get(k)) for k in answer_keys})
        line.update({f"correct.{k}": _cell(r["correct"].get(k)) for k in keyed})
        line.update(answer=_cell(r["answer"]), key=_cell(r["key"]), meta=_cell(r["meta"]))
        writer.writerow(line)
    return buf.getvalue()


def answers_jsonl(rows: list[dict[str, Any]]) -> str:
    """``rows`` as JSON lines (every value as it is)."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def write_answers_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write :func:`answers_csv` of ``rows`` to ``path`` atomically."""
    atomic_write_text(path, answers_csv(rows))


def write_answers_jsonl(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write :func:`answers_jsonl` of ``rows`` to ``path`` atomically."""
    atomic_write_text(path, answers_jsonl(rows))


def completion_code(token: str) -> str:
    """The code the done page shows to the annotator with ``token`` (10 characters;
    unforgeable without the token, so a crowd platform can check it)."""
    return hashlib.sha256(f"debuggable-completion\x00{token}".encode()).hexdigest()[:10].upper()


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, or :class:`DebuggableError` unless it is an http(s) URL."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise DebuggableError(
            f"base_url {base_url!r}: expected the server's public address, such as 'https://studies.example.org'."
        )
    return base_url.rstrip("/")


def links_rows(study_set: "StudySet", base_url: str) -> list[dict[str, str]]:
    """One row per annotator of every study: ``study, annotator_id, url, completion_code``.

    Args:
        base_url: the address annotators reach the server at (``http://host:port``,
            or a proxy's ``https://host/prefix``).
    """
    base = check_base_url(base_url)
    out = []
    for study, assigned in study_set.assignments.items():
        for annotator in assigned:
            token = study_set.signer.annotator_token(annotator)
            out.append(dict(study=study, annotator_id=annotator, url=f"{base}/a/{token}",
                            completion_code=completion_code(token)))
    return out


def links_csv(rows: list[dict[str, str]]) -> str:
    """``rows`` (from :func:`links_rows`) as CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LINK_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_links_csv(rows: list[dict[str, str]], path: str | os.PathLike) -> None:
    """Write :func:`links_csv` of ``rows`` to ``path`` atomically."""
    atomic_write_text(path, links_csv(rows))
