"""A run's studies on disk: ``RUN/studies/``.

Layout::

    studies/
      index.json               the study names, in order, and the database URL (null: SQLite here)
      secret.key               the token secret (mode 0600)
      studies.db               the default SQLite database (WAL)
      simulated.json           the simulated annotators' policies, when any answered
      scores.json              the scores (``debuggable study score``), figures/ their word clouds
      <name>/study.json        the study without its tasks
      <name>/tasks.jsonl       one task record per line
      <name>/assignments.json  {annotator_id: [task_id, ...]} in the order each sees them
      <name>/img/*.png         every image the tasks show (the web app serves nothing else)

Every file is written atomically (see :mod:`debuggable.run.atomic`); a study is
complete once its ``study.json`` exists, which is written last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from debuggable.errors import DebuggableError
from debuggable.run import atomic_write_json, atomic_write_text, read_json
from debuggable.studies.schema import Study, Task
from debuggable.studies.tokens import TokenSigner, load_or_create_secret

STUDIES_DIR = "studies"
INDEX_FILE = "index.json"
SECRET_FILE = "secret.key"
SQLITE_FILE = "studies.db"
SCORES_FILE = "scores.json"
FIGURES_DIR = "figures"
#: Which annotators are simulated (``debuggable study simulate``, the demo) and with which policy.
SIMULATED_FILE = "simulated.json"


def save_study(root: str | os.PathLike, study: Study, assignments: dict[str, list[str]]) -> Path:
    """Write ``study`` and its assignment under ``root/<name>/`` (images must already be in ``img/``)."""
    directory = Path(root) / study.name
    missing = sorted({src for t in study.tasks for src in t.images() if not (directory / src).is_file()})
    if missing:
        raise DebuggableError(f"study {study.name!r}: image {missing[0]!r} does not exist under {str(directory)!r}.")
    known = {t.id for t in study.tasks}
    for annotator, ids in assignments.items():
        bad = [i for i in ids if i not in known]
        if bad:
            raise DebuggableError(f"assignment of {annotator!r} names unknown task {bad[0]!r}.")
    lines = "".join(json.dumps(t.model_dump(mode="json"), sort_keys=True) + "\n" for t in study.tasks)
    atomic_write_text(directory / "tasks.jsonl", lines)
    atomic_write_json(directory / "assignments.json", assignments)
    atomic_write_json(directory / "study.json", study.model_dump(mode="json", exclude={"tasks"}))
    return directory


def load_study(root: str | os.PathLike, name: str) -> Study:
    """The study ``name`` under ``root``, tasks included."""
    directory = Path(root) / name
    if not (directory / "study.json").is_file():
        raise DebuggableError(f"{str(directory)!r} holds no finished study (no study.json); run `debuggable study create`.")
    header = read_json(directory / "study.json")
    tasks = []
    with open(directory / "tasks.jsonl", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    tasks.append(Task.model_validate_json(line))
                except ValueError as exc:
                    raise DebuggableError(f"{str(directory / 'tasks.jsonl')!r} line {n} is not a task record ({exc}).") from None
    return Study.model_validate({**header, "tasks": tasks})


class StudySet:
    """Every study of one run: the object the web app, the CLI and scoring share.

    Args:
        root: the ``studies/`` directory.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        index_path = self.root / INDEX_FILE
        if not index_path.is_file():
            raise DebuggableError(
                f"{str(self.root)!r} holds no studies (no {INDEX_FILE}); run `debuggable study create RUN` first."
            )
        self.index: dict[str, Any] = read_json(index_path)
        self.studies: dict[str, Study] = {name: load_study(self.root, name) for name in self.index["studies"]}
        self.assignments: dict[str, dict[str, list[str]]] = {
            name: read_json(self.root / name / "assignments.json") for name in self.studies
        }
        self.signer = TokenSigner(load_or_create_secret(self.root / SECRET_FILE))
        self._task_index = {t.id: t for s in self.studies.values() for t in s.tasks}
        self._annotator_study = {a: name for name, assigned in self.assignments.items() for a in assigned}
        self._images = {name: {src for t in s.tasks for src in t.images()} for name, s in self.studies.items()}

    @staticmethod
    def write_index(root: str | os.PathLike, names: list[str], database: str | None) -> None:
        atomic_write_json(Path(root) / INDEX_FILE, {"studies": list(names), "database": database})

    @property
    def database_url(self) -> str:
        """The database's SQLAlchemy URL (default: SQLite in ``studies/studies.db``)."""
        return self.index.get("database") or f"sqlite:///{(self.root / SQLITE_FILE).resolve()}"

    def task(self, task_id: str) -> Task | None:
        return self._task_index.get(task_id)

    def study_of(self, annotator_id: str) -> Study | None:
        name = self._annotator_study.get(annotator_id)
        return self.studies[name] if name is not None else None

    def image_path(self, study: str, src: str) -> Path | None:
        """The file behind ``src`` of ``study``, or None unless it is one of the study's task images."""
        if src not in self._images.get(study, ()):
            return None
        path = (self.root / study / src).resolve()
        if not path.is_relative_to((self.root / study / "img").resolve()) or not path.is_file():
            return None
        return path
