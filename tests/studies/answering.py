"""Answering any task from its public record alone (what a browser or an API client sees)."""

from __future__ import annotations

import random
from typing import Any

EVIL_TEXT = "<script>alert('x')</script> '; DROP TABLE answers; -- \" & é"


def generic_answer(task: dict[str, Any], seed: int) -> dict[str, Any]:
    """A valid answer to the public ``task`` record, the same for the same ``seed``.

    Choices and Likert values are drawn at random, a multi question gets a random
    subset, free text carries HTML and SQL metacharacters; questions whose ``show_if``
    does not hold are left out.
    """
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for q in task["questions"]:
        cond = q.get("show_if")
        if cond and out.get(cond["key"]) != cond["equals"]:
            continue
        values = [o["value"] for o in q["options"]]
        if q["kind"] == "choice":
            out[q["key"]] = rng.choice(values)
        elif q["kind"] == "multi":
            out[q["key"]] = [v for v in values if rng.random() < 0.5]
        elif q["kind"] == "likert":
            out[q["key"]] = rng.randint(q["low"], min(q["high"], q["low"] + 8))
        else:
            out[q["key"]] = f"{seed}: {EVIL_TEXT}"[: q["max_chars"]]
    return out


def shortcut(question: dict[str, Any], value: str) -> str:
    """The key that picks ``value`` in ``question`` (as ``Question.shortcut``)."""
    for i, o in enumerate(question["options"]):
        if o["value"] == value:
            return o.get("key") or str(i + 1)
    raise KeyError(value)


def form_fields(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """``answer`` as the (name, value) pairs an HTML form would send."""
    out = []
    for k, v in answer.items():
        for item in (v if isinstance(v, list) else [v]):
            out.append((f"q.{k}", str(item)))
    return out
