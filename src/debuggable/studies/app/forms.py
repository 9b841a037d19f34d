"""An HTML form's fields to a task's answer, and a stored answer back to form values.

Every question ``key`` is the form field ``q.<key>``: one value for ``choice``,
``likert`` and ``text``, any number for ``multi``. A question whose ``show_if`` does
not hold is dropped (without JavaScript every question is on the page and the
annotator may have typed into one that does not apply), so what reaches
:meth:`Task.validate_answer` is what the annotator was asked.
"""

from __future__ import annotations

from typing import Any, Mapping

from debuggable.studies.schema import Task

FIELD_PREFIX = "q."


def field_name(question_key: str) -> str:
    return FIELD_PREFIX + question_key


def answer_from_form(task: Task, getlist) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer to validate and the values to show again if it is refused.

    Args:
        task: the task the form belongs to.
        getlist: ``name -> list of submitted strings`` (a form's ``getlist``).

    Returns:
        ``(answer, values)``: ``answer`` maps each asked question to its raw value
        (absent when empty); ``values`` maps every question to what was submitted.
    """
    values: dict[str, Any] = {}
    for q in task.questions:
        submitted = [v for v in getlist(field_name(q.key)) if isinstance(v, str)]
        if q.kind == "multi":
            values[q.key] = submitted
        elif q.kind == "text":
            # Browsers send line breaks as CRLF; store what was typed.
            values[q.key] = submitted[0].replace("\r\n", "\n") if submitted else ""
        else:
            values[q.key] = submitted[0] if submitted else None
    answer: dict[str, Any] = {}
    for q in task.questions:
        if q.show_if is not None and values.get(q.show_if["key"]) != q.show_if["equals"]:
            continue
        value = values[q.key]
        if q.kind == "multi":
            answer[q.key] = value
        elif value not in (None, ""):
            answer[q.key] = value
    return answer, values


def values_from_answer(task: Task, answer: Mapping[str, Any]) -> dict[str, Any]:
    """Form values (strings) that show a stored answer."""
    out: dict[str, Any] = {}
    for q in task.questions:
        v = answer.get(q.key)
        if q.kind == "multi":
            out[q.key] = [str(x) for x in v] if isinstance(v, list) else []
        elif q.kind == "text":
            out[q.key] = v if isinstance(v, str) else ""
        else:
            out[q.key] = None if v is None else str(v)
    return out
