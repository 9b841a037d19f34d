"""What a study task is: the exact record of what an annotator is shown and asked.

A :class:`Study` is a list of :class:`Task` records plus its instructions. A task is
rendered from its record alone: ``blocks`` (what is shown, in order: text, image
grids, tables) and ``questions`` (what is asked). The correct answers, where a study
has them, live in ``key`` and never leave the server; ``meta`` holds what the scoring
needs but the annotator must not see (the hidden target class, the model's
probabilities, which option is the control feature).

Every answer is checked by :meth:`Task.validate_answer` against its questions:
choices must be among the options, Likert values in range, free text within its
length cap; questions hidden by ``show_if`` must be left out, required ones present.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from debuggable.errors import DebuggableError

#: Free text longer than this is refused whatever a question says.
MAX_TEXT_CHARS = 2000

QuestionKind = Literal["choice", "multi", "likert", "text"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Image(_Record):
    """One image file of the study, shown with a caption.

    Attributes:
        src: path relative to the study directory (``img/<name>.png``); the web app
            serves nothing else.
        caption: text under the image (may be empty).
        alt: text for screen readers.
        label: the option letter the image stands for, when a question refers to it.
    """

    src: str
    caption: str = ""
    alt: str = ""
    label: str | None = None

    @model_validator(mode="after")
    def _relative(self) -> "Image":
        parts = self.src.replace("\\", "/").split("/")
        if self.src.startswith("/") or ".." in parts or not self.src.startswith("img/"):
            raise ValueError(f"image src {self.src!r} must be a path under the study's img/ directory")
        return self


class Block(_Record):
    """One piece of what a task shows, rendered in order.

    Attributes:
        kind: ``heading``, ``text``, ``images`` (a grid), or ``table``.
        title: a heading above the block (optional).
        text: the paragraph (``text``, ``heading``).
        images: the grid's images (``images``).
        columns: images per row for ``images`` (0: as many as fit).
        header, rows: the table (``table``), cells as text.
        data: machine-readable record of what the block stands for (feature ids,
            weights, dataset rows); not rendered.
    """

    kind: Literal["heading", "text", "images", "table"]
    title: str = ""
    text: str = ""
    images: list[Image] = Field(default_factory=list)
    columns: int = 0
    header: list[str] = Field(default_factory=list)
    rows: list[list[str]] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class Option(_Record):
    """One answer option of a ``choice`` or ``multi`` question.

    Attributes:
        value: what is stored.
        label: what the annotator reads.
        key: the keyboard shortcut (one character); defaults to the option's position
            (1, 2, 3, ...).
    """

    value: str
    label: str
    key: str | None = None


class Question(_Record):
    """One question of a task.

    Attributes:
        key: the answer's field name (unique within the task).
        kind: ``choice`` (one option), ``multi`` (any subset of the options, possibly
            empty), ``likert`` (an integer from ``low`` to ``high``), ``text``.
        prompt: the question as the annotator reads it.
        options: for ``choice`` / ``multi``.
        low, high: the Likert range; ``low_label`` / ``high_label`` name its ends.
        max_chars: the cap on free text (at most :data:`MAX_TEXT_CHARS`).
        words: the suggested length of free text in words (shown as a hint).
        required: whether the answer must be given (when the question is shown).
        show_if: ``{"key": other_question, "equals": value}``: the question is asked
            only when that answer was given.
    """

    key: str
    kind: QuestionKind
    prompt: str
    options: list[Option] = Field(default_factory=list)
    low: int = 1
    high: int = 5
    low_label: str = ""
    high_label: str = ""
    max_chars: int = 300
    words: int | None = None
    required: bool = True
    show_if: dict[str, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Question":
        if self.kind in ("choice", "multi"):
            values = [o.value for o in self.options]
            if len(values) < 2 and self.kind == "choice":
                raise ValueError(f"question {self.key!r}: a choice needs at least two options")
            if len(set(values)) != len(values):
                raise ValueError(f"question {self.key!r}: option values must be unique")
        elif self.options:
            raise ValueError(f"question {self.key!r}: only choice and multi questions have options")
        if self.kind == "likert" and not self.low < self.high:
            raise ValueError(f"question {self.key!r}: likert needs low < high")
        if not 1 <= self.max_chars <= MAX_TEXT_CHARS:
            raise ValueError(f"question {self.key!r}: max_chars must be in 1..{MAX_TEXT_CHARS}")
        if self.show_if is not None and set(self.show_if) != {"key", "equals"}:
            raise ValueError(f"question {self.key!r}: show_if needs exactly 'key' and 'equals'")
        return self

    def shortcut(self, i: int) -> str:
        """The keyboard shortcut of option ``i``."""
        return self.options[i].key or str(i + 1)

    def check(self, value: Any) -> Any:
        """``value`` normalised for storage, or :class:`AnswerError` naming the problem."""
        if self.kind == "choice":
            if not isinstance(value, str) or value not in {o.value for o in self.options}:
                raise AnswerError(self.key, f"expected one of {[o.value for o in self.options]}")
            return value
        if self.kind == "multi":
            if isinstance(value, str):
                value = [value]
            allowed = [o.value for o in self.options]
            if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
                raise AnswerError(self.key, f"expected a list drawn from {allowed}")
            if len(set(value)) != len(value):
                raise AnswerError(self.key, "expected each option at most once")
            return [v for v in allowed if v in value]  # canonical order
        if self.kind == "likert":
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
                raise AnswerError(self.key, f"expected an integer from {self.low} to {self.high}")
            return value
        if not isinstance(value, str):
            raise AnswerError(self.key, "expected text")
        if len(value) > self.max_chars:
            raise AnswerError(self.key, f"expected at most {self.max_chars} characters, got {len(value)}")
        return value  # verbatim: whatever was typed is what is stored


class AnswerError(DebuggableError):
    """An answer that does not fit its task's questions (the web app answers 422)."""

    def __init__(self, question: str, problem: str):
        super().__init__(f"answer to {question!r}: {problem}.")
        self.question = question
        self.problem = problem


class Task(_Record):
    """One task: what is shown, what is asked, and the answer key where one exists.

    Attributes:
        id: unique within the run's studies (``<study>/<number>``).
        study: the study's name.
        condition: the experimental condition (e.g. ``sparse`` / ``dense``); attention
            checks carry the condition ``attention``.
        attention_check: a task with a known answer that tests the annotator's care.
        blocks: what is shown, in order.
        questions: what is asked, in order.
        key: the correct answer per question key, where one exists (never sent to
            the browser).
        meta: what scoring needs and the annotator must not see.
    """

    id: str
    study: str
    condition: str
    attention_check: bool = False
    blocks: list[Block]
    questions: list[Question]
    key: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "Task":
        keys = [q.key for q in self.questions]
        if not keys:
            raise ValueError(f"task {self.id!r} asks nothing")
        if len(set(keys)) != len(keys):
            raise ValueError(f"task {self.id!r}: question keys must be unique")
        for q in self.questions:
            if q.show_if is not None and q.show_if["key"] not in keys[: keys.index(q.key)]:
                raise ValueError(f"task {self.id!r}: question {q.key!r} depends on a later or unknown question")
        unknown = set(self.key) - set(keys)
        if unknown:
            raise ValueError(f"task {self.id!r}: answer key names unknown questions {sorted(unknown)}")
        if self.attention_check and not self.key:
            raise ValueError(f"task {self.id!r}: an attention check needs an answer key")
        return self

    def images(self) -> list[str]:
        """Every image file the task shows (``img/...``), in order of appearance."""
        return [im.src for b in self.blocks for im in b.images]

    def public(self) -> dict[str, Any]:
        """What the browser and the annotator API may see: no key, no meta, and no block
        ``data`` (the record of what a block stands for: dataset rows, feature ids)."""
        return self.model_dump(mode="json", exclude={"key": True, "meta": True, "blocks": {"__all__": {"data"}}})

    def asked(self, answer: dict[str, Any]) -> list[Question]:
        """The questions shown for ``answer`` (those whose ``show_if`` holds)."""
        out = []
        for q in self.questions:
            if q.show_if is None or answer.get(q.show_if["key"]) == q.show_if["equals"]:
                out.append(q)
        return out

    def validate_answer(self, answer: Any) -> dict[str, Any]:
        """``answer`` checked against the questions and normalised for storage.

        Raises :class:`AnswerError` for an unknown field, a missing required answer,
        an answer to a question that is not shown, or a value out of range.
        """
        if not isinstance(answer, dict):
            raise AnswerError("(answer)", "expected an object mapping question keys to answers")
        known = {q.key: q for q in self.questions}
        unknown = sorted(set(answer) - set(known))
        if unknown:
            raise AnswerError(unknown[0], f"no such question in task {self.id!r}")
        out: dict[str, Any] = {}
        for q in self.questions:
            shown = q.show_if is None or out.get(q.show_if["key"]) == q.show_if["equals"]
            value = answer.get(q.key)
            if value is None or (q.kind == "text" and isinstance(value, str) and not value.strip()):
                if shown and q.required and q.kind != "multi":
                    raise AnswerError(q.key, "an answer is required")
                if shown and q.kind == "multi":
                    out[q.key] = []
                continue
            if not shown:
                raise AnswerError(q.key, f"not asked unless {q.show_if['key']!r} is {q.show_if['equals']!r}")
            out[q.key] = q.check(value)
        return out

    def correct(self, answer: dict[str, Any]) -> dict[str, bool]:
        """Per keyed question, whether ``answer`` matches the key."""
        return {k: answer.get(k) == v for k, v in self.key.items()}


class Study(_Record):
    """One study of a run: its tasks and how they are handed out.

    Attributes:
        name: unique within the run (a URL- and file-safe slug).
        kind: which generator made it (``simulation``, ``spurious``,
            ``misclassification``, ``description``, ``failure_review``, or a user's own).
        title: shown at the top of every page.
        instructions: paragraphs shown before the first task.
        conditions: the experimental conditions (attention checks excluded).
        tasks: every task, attention checks included.
        replication: how many annotators answer each (non-check) task.
        seed: the seed of the generator, the assignment and the task order.
        source: what the tasks were made from (run directory, stage versions, settings).
    """

    name: str
    kind: str
    title: str
    instructions: list[str]
    conditions: list[str]
    tasks: list[Task]
    replication: int = 1
    seed: int = 0
    source: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "Study":
        import re

        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", self.name):
            raise ValueError(f"study name {self.name!r} must be a lowercase slug (letters, digits, '-', '_')")
        ids = [t.id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"study {self.name!r}: task ids must be unique")
        for t in self.tasks:
            if t.study != self.name:
                raise ValueError(f"task {t.id!r} belongs to study {t.study!r}, not {self.name!r}")
            if not t.attention_check and t.condition not in self.conditions:
                raise ValueError(f"task {t.id!r}: condition {t.condition!r} is not one of {self.conditions}")
        if self.replication < 1:
            raise ValueError(f"study {self.name!r}: replication must be at least 1")
        return self

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    @property
    def main_tasks(self) -> list[Task]:
        return [t for t in self.tasks if not t.attention_check]

    @property
    def checks(self) -> list[Task]:
        return [t for t in self.tasks if t.attention_check]
