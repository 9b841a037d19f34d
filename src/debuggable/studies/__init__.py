"""Human studies: task generators, the annotation web app, its database, scoring.

* :mod:`~debuggable.studies.schema`: what a task and a study are (shown blocks,
  questions, answer keys) and how answers are validated;
* :mod:`~debuggable.studies.assign`: balanced, replicated, seeded assignment;
* :mod:`~debuggable.studies.tokens`: unguessable annotator and admin links;
* :mod:`~debuggable.studies.files`: a run's ``studies/`` directory;
* :mod:`~debuggable.studies.db`: the database of tasks and answers (SQLite or any
  SQLAlchemy URL, Alembic migrations);
* :mod:`~debuggable.studies.app`: the annotation web app (FastAPI, Jinja2) and its JSON API;
* :mod:`~debuggable.studies.server`: serving a run's studies with uvicorn;
* :mod:`~debuggable.studies.export`: answers with their task records, crowd links.

The web app, database and server modules are imported on use (``from
debuggable.studies.db import StudyDatabase``), so task generation does not load them.
"""

from debuggable.studies.assign import annotator_ids, assign_tasks
from debuggable.studies.files import StudySet, load_study, save_study
from debuggable.studies.schema import AnswerError, Block, Image, Option, Question, Study, Task
from debuggable.studies.tokens import TokenSigner, load_or_create_secret

__all__ = [
    "AnswerError",
    "Block",
    "Image",
    "Option",
    "Question",
    "Study",
    "StudySet",
    "Task",
    "TokenSigner",
    "annotator_ids",
    "assign_tasks",
    "load_or_create_secret",
    "load_study",
    "save_study",
]
