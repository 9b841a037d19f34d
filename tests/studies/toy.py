"""A small study built without a run directory, for the app, storage and scoring tests.

:func:`make_toy_studies` writes ``root`` as ``debuggable study create`` would: two
studies with every question kind (choice with a key, multi, Likert, text shown only
for one choice), two conditions, attention checks, images, assignments and index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from debuggable.studies import Block, Image, Option, Question, Study, StudySet, Task, assign_tasks, save_study
from debuggable.studies.images import save_png


def _questions(n_options: int = 3) -> list[Question]:
    letters = "ABCDEFGH"[:n_options]
    return [
        Question(key="pick", kind="choice", prompt="Which image is brightest?",
                 options=[Option(value=c, label=f"Image {c}") for c in letters]),
        Question(key="seen", kind="multi", prompt="Which images show a square?",
                 options=[Option(value=c, label=f"Image {c}", key=c.lower()) for c in letters], required=False),
        Question(key="ease", kind="likert", prompt="How easy was it?", low=1, high=5,
                 low_label="very hard", high_label="very easy"),
        Question(key="pattern", kind="choice", prompt="Is there a shared pattern?",
                 options=[Option(value="yes", label="Yes", key="y"), Option(value="no", label="No", key="n")]),
        Question(key="describe", kind="text", prompt="Describe the pattern.", max_chars=200, words=15,
                 show_if={"key": "pattern", "equals": "yes"}),
    ]


def make_toy_study(root: Path, name: str = "toy", *, tasks_per_condition: int = 6, annotators: int = 4,
                   replication: int = 2, checks: int = 2, seed: int = 0) -> tuple[Study, dict[str, list[str]]]:
    rng = np.random.default_rng(seed)
    directory = Path(root) / name
    tasks = []
    n = 0
    for condition in ("a", "b"):
        for _ in range(tasks_per_condition):
            n += 1
            levels = rng.permutation(3) / 2.0
            images = [Image(src=save_png(np.full((8, 8), lv), directory, f"t{n}_{c}"), caption=f"Image {c}", label=c)
                      for c, lv in zip("ABC", levels)]
            tasks.append(Task(
                id=f"{name}/{n:04d}", study=name, condition=condition,
                blocks=[Block(kind="text", text=f"Task {n}: <b>not bold</b>"),
                        Block(kind="images", title="Candidates", images=images, data={"levels": levels.tolist()})],
                questions=_questions(), key={"pick": "ABC"[int(np.argmax(levels))]},
                meta={"levels": levels.tolist()},
            ))
    for i in range(checks):
        n += 1
        images = [Image(src=save_png(np.full((8, 8), 0.5), directory, f"check{i}_{c}"), caption=f"Image {c}", label=c)
                  for c in "ABC"]
        tasks.append(Task(
            id=f"{name}/{n:04d}", study=name, condition="attention", attention_check=True,
            blocks=[Block(kind="text", text="Attention check: please choose image B."),
                    Block(kind="images", images=images)],
            questions=[Question(key="pick", kind="choice", prompt="Choose image B.",
                                options=[Option(value=c, label=f"Image {c}") for c in "ABC"])],
            key={"pick": "B"},
        ))
    study = Study(name=name, kind="toy", title=f"Toy study {name}", instructions=["Look, then answer."],
                  conditions=["a", "b"], tasks=tasks, replication=replication, seed=seed)
    assignments = assign_tasks(study, annotators, checks_per_annotator=min(checks, 2))
    save_study(root, study, assignments)
    return study, assignments


def make_toy_studies(root: Path, **kwargs) -> StudySet:
    """Two toy studies (``toy`` and ``toy2``) under ``root`` (a ``studies/`` directory)."""
    root = Path(root)
    make_toy_study(root, "toy", **kwargs)
    make_toy_study(root, "toy2", seed=1, **kwargs)
    StudySet.write_index(root, ["toy", "toy2"], None)
    return StudySet(root)
