"""The studies' database: every task served and every answer given.

:class:`StudyDatabase` wraps one SQLAlchemy engine. The default is the SQLite file in
the run's ``studies/`` directory; any SQLAlchemy URL works otherwise (a shared
PostgreSQL server: ``postgresql+psycopg://user:password@host/dbname``).

Tables (created and upgraded by the Alembic migrations shipped in
``studies/migrations/``, see :meth:`StudyDatabase.migrate`):

* ``studies``: name, kind, title and a fingerprint of its tasks and assignments;
* ``tasks``: every task's full record as JSON, with its condition and whether it is
  an attention check;
* ``annotators``: id and study;
* ``assignments``: (annotator, position) -> task, 1-based positions in the order the
  annotator sees them; a task at most once per annotator;
* ``answers``: (annotator, task) -> the normalised answer, its position, the time the
  annotator took and when it arrived; ``UNIQUE(annotator, task)`` and a foreign key to
  the assignment, so an answer exists only for an assigned task and at most once.

Durability: :meth:`StudyDatabase.record_answer` commits before it returns, and the
web app acknowledges an answer only after that. On SQLite the journal is a WAL with
``synchronous=FULL``: every commit is fsynced, so an acknowledged answer survives a
killed server and a power cut. Answers are final: the first write wins and a repeat
(a double click, a retried request) is recognised and stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from debuggable.errors import DebuggableError
from debuggable.studies.schema import Task

if TYPE_CHECKING:
    from debuggable.studies.files import StudySet

#: Alembic's bookkeeping table (named so a shared database can hold other apps' too).
VERSION_TABLE = "studies_alembic_version"
#: Seconds a SQLite writer waits for another's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    __tablename__ = "studies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    study: Mapped[str] = mapped_column(String(64), ForeignKey("studies.name"), index=True)
    condition: Mapped[str] = mapped_column(String(100))
    attention_check: Mapped[bool] = mapped_column(Boolean)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class AnnotatorRow(Base):
    __tablename__ = "annotators"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    study: Mapped[str] = mapped_column(String(64), ForeignKey("studies.name"), index=True)


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("annotator", "task", name="uq_assignments_annotator_task"),
        UniqueConstraint("annotator", "position", "task", name="uq_assignments_annotator_position_task"),
    )

    annotator: Mapped[str] = mapped_column(String(200), ForeignKey("annotators.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200), ForeignKey("tasks.id"), index=True)


class AnswerRow(Base):
    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("annotator", "task", name="uq_answers_annotator_task"),
        ForeignKeyConstraint(["annotator", "position", "task"],
                             ["assignments.annotator", "assignments.position", "assignments.task"],
                             name="fk_answers_assignment"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    annotator: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(200), index=True)
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _utc_iso(moment: datetime) -> str:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def study_fingerprint(tasks: list[Task], assignments: dict[str, list[str]]) -> str:
    """SHA-256 over a study's task records and assignment: equal iff nothing served changed."""
    blob = json.dumps({"tasks": [t.model_dump(mode="json") for t in tasks], "assignments": assignments},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DebuggableError(
            f"database URL {url!r}: expected a SQLAlchemy URL such as 'sqlite:////path/studies.db' "
            "or 'postgresql+psycopg://user:password@host/dbname'."
        ) from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise DebuggableError(
                f"database URL {parsed.render_as_string(hide_password=True)!r}: SQLAlchemy knows no database "
                f"{parsed.drivername!r}; expected e.g. 'sqlite:///...' or 'postgresql+psycopg://...'."
            ) from None
        except ModuleNotFoundError as exc:
            raise DebuggableError(
                f"database URL {parsed.render_as_string(hide_password=True)!r} needs the driver {exc.name!r}; "
                "install it (for PostgreSQL: pip install 'debuggable[postgres]')."
            ) from None
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # Take transaction control from pysqlite so writes can BEGIN IMMEDIATE (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection):
        # A writer takes the write lock at BEGIN, waiting up to busy_timeout for it; a
        # deferred transaction that read first could instead fail at once with
        # SQLITE_BUSY when another writer committed in between.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class StudyDatabase:
    """Storage of a run's studies and their answers.

    Args:
        url: a SQLAlchemy URL (``StudySet.database_url`` gives the run's).
    """

    def __init__(self, url: str):
        self.url = str(url)
        self.engine = _engine(self.url)
        # SQLite has one writer at a time; waiting writers of this process queue on a
        # lock here instead of in SQLite's busy handler, which polls with growing sleeps
        # (up to 100 ms) and so turns a few ms of queueing into seconds of tail latency.
        # Other processes still wait through busy_timeout.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"StudyDatabase({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction, committed on leaving (rolled back on an exception)."""
        with self._write_lock if write else contextlib.nullcontext():
            with self.engine.connect() as conn:
                conn = conn.execution_options(write=write)
                with Session(bind=conn, expire_on_commit=False) as session:
                    with session.begin():
                        yield session

    # -- schema -------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the tables to the newest migration (safe to call every start)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The database's migration revision (None before :meth:`migrate`)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    # -- import -------------------------------------------------------------------------

    def import_studies(self, study_set: "StudySet") -> dict[str, str]:
        """Copy every study of ``study_set`` into the database.

        Idempotent: a study already there with the same tasks and assignments is left
        alone. A study whose tasks or assignments changed is replaced when it has no
        answers yet and refused (:class:`DebuggableError`) when it has; nothing is
        written unless every study can be imported.

        Returns:
            ``{study: "added" | "unchanged" | "replaced"}``.
        """
        plans = {}
        for name, study in study_set.studies.items():
            assignments = study_set.assignments[name]
            known = {t.id for t in study.tasks}
            for annotator, ids in assignments.items():
                if len(set(ids)) != len(ids):
                    twice = next(i for i in ids if ids.count(i) > 1)
                    raise DebuggableError(
                        f"study {name!r}: annotator {annotator!r} is assigned task {twice!r} twice; "
                        "expected each task at most once per annotator (fewer checks_per_annotator than checks)."
                    )
                unknown = [i for i in ids if i not in known]
                if unknown:
                    raise DebuggableError(f"study {name!r}: annotator {annotator!r} is assigned unknown task {unknown[0]!r}.")
            plans[name] = study_fingerprint(study.tasks, assignments)
        out: dict[str, str] = {}
        with self._session(write=True) as s:
            existing = {r.name: r for r in s.scalars(select(StudyRow).where(StudyRow.name.in_(list(plans))))}
            for name, fingerprint in plans.items():
                row = existing.get(name)
                if row is not None and row.fingerprint == fingerprint:
                    out[name] = "unchanged"
                    continue
                if row is not None:
                    n = s.scalar(select(func.count()).select_from(AnswerRow).join(TaskRow, AnswerRow.task == TaskRow.id)
                                 .where(TaskRow.study == name))
                    if n:
                        raise DebuggableError(
                            f"study {name!r}: its tasks or assignments differ from the ones in the database, "
                            f"which already holds {n} answers to them; serve the new study with a new database "
                            "(--database) or export and remove the old one first."
                        )
                    self._delete_study(s, name)
                    out[name] = "replaced"
                else:
                    out[name] = "added"
            for name, status in out.items():
                if status != "unchanged":
                    self._insert_study(s, study_set, name, plans[name])
        return out

    @staticmethod
    def _delete_study(s: Session, name: str) -> None:
        annotators = select(AnnotatorRow.id).where(AnnotatorRow.study == name)
        s.execute(delete(AssignmentRow).where(AssignmentRow.annotator.in_(annotators)))
        s.execute(delete(AnnotatorRow).where(AnnotatorRow.study == name))
        s.execute(delete(TaskRow).where(TaskRow.study == name))
        s.execute(delete(StudyRow).where(StudyRow.name == name))
        s.flush()

    @staticmethod
    def _insert_study(s: Session, study_set: "StudySet", name: str, fingerprint: str) -> None:
        study = study_set.studies[name]
        s.add(StudyRow(name=name, kind=study.kind, title=study.title, fingerprint=fingerprint,
                       imported_at=datetime.now(timezone.utc)))
        s.flush()
        s.add_all([TaskRow(id=t.id, study=name, condition=t.condition, attention_check=t.attention_check,
                           record=t.model_dump(mode="json")) for t in study.tasks])
        assignments = study_set.assignments[name]
        s.add_all([AnnotatorRow(id=a, study=name) for a in assignments])
        s.flush()
        s.add_all([AssignmentRow(annotator=a, position=i + 1, task=task_id)
                   for a, ids in assignments.items() for i, task_id in enumerate(ids)])

    # -- answers ------------------------------------------------------------------------

    def record_answer(self, annotator_id: str, position: int, task_id: str, answer: dict[str, Any],
                      elapsed_ms: int | None) -> bool:
        """Store ``answer`` (already validated with :meth:`Task.validate_answer`).

        The transaction is committed before this returns. Answers are final: when the
        annotator already answered ``task_id``, nothing is written and False is
        returned (a double submit stores one row, whatever the second one says).

        Raises:
            DebuggableError: ``task_id`` is not the task at ``position`` of the
                annotator's list (or the annotator is unknown).

        Returns:
            True when this call stored the answer.
        """
        if not isinstance(answer, dict):
            raise DebuggableError(f"answer: expected a dict, got {type(answer).__name__}.")
        if elapsed_ms is not None and (isinstance(elapsed_ms, bool) or not isinstance(elapsed_ms, int) or elapsed_ms < 0):
            raise DebuggableError(f"elapsed_ms: expected a non-negative integer or None, got {elapsed_ms!r}.")
        with self._session(write=True) as s:
            assigned = s.scalar(select(AssignmentRow.task).where(AssignmentRow.annotator == annotator_id,
                                                                 AssignmentRow.position == position))
            if assigned is None or assigned != task_id:
                raise DebuggableError(
                    f"task {task_id!r} is not at position {position} of annotator {annotator_id!r}'s list"
                    + (f" (that is {assigned!r})." if assigned is not None else " (no such position).")
                )
            values = dict(annotator=annotator_id, task=task_id, position=position, answer=answer,
                          elapsed_ms=elapsed_ms, submitted_at=datetime.now(timezone.utc))
            dialect = s.get_bind().dialect.name
            if dialect in ("sqlite", "postgresql"):
                if dialect == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert
                else:
                    from sqlalchemy.dialects.postgresql import insert
                stmt = (insert(AnswerRow.__table__).values(**values)
                        .on_conflict_do_nothing(index_elements=["annotator", "task"]).returning(AnswerRow.id))
                return s.execute(stmt).scalar() is not None
            # Other databases: a unique violation is the repeat.
            try:
                with s.begin_nested():
                    s.add(AnswerRow(**values))
                return True
            except IntegrityError:
                return False

    def answers(self, study: str | None = None) -> list[dict[str, Any]]:
        """Every stored answer (of ``study`` only, when given), in order of arrival.

        Returns:
            One dict per answer: ``study, task_id, annotator_id, position, condition,
            attention_check, answer, elapsed_ms, submitted_at`` (ISO 8601, UTC).
        """
        q = (select(TaskRow.study, AnswerRow.task, AnswerRow.annotator, AnswerRow.position, TaskRow.condition,
                    TaskRow.attention_check, AnswerRow.answer, AnswerRow.elapsed_ms, AnswerRow.submitted_at)
             .join(TaskRow, AnswerRow.task == TaskRow.id).order_by(AnswerRow.id))
        if study is not None:
            q = q.where(TaskRow.study == study)
        with self._session() as s:
            rows = s.execute(q).all()
        return [dict(study=r[0], task_id=r[1], annotator_id=r[2], position=r[3], condition=r[4],
                     attention_check=bool(r[5]), answer=r[6], elapsed_ms=r[7], submitted_at=_utc_iso(r[8]))
                for r in rows]

    def answer_at(self, annotator_id: str, position: int) -> dict[str, Any] | None:
        """The stored answer at ``position`` of the annotator's list, or None."""
        with self._session() as s:
            return s.scalar(select(AnswerRow.answer).where(AnswerRow.annotator == annotator_id,
                                                           AnswerRow.position == position))

    def answered_positions(self, annotator_id: str) -> set[int]:
        """The positions (1-based) the annotator has answered."""
        with self._session() as s:
            return set(s.scalars(select(AnswerRow.position).where(AnswerRow.annotator == annotator_id)))

    def next_position(self, annotator_id: str) -> int | None:
        """The first unanswered position (1-based) of the annotator's list; None when all are answered.

        Raises:
            DebuggableError: the annotator is not in the database.
        """
        with self._session() as s:
            positions = list(s.scalars(select(AssignmentRow.position).where(AssignmentRow.annotator == annotator_id)
                                       .order_by(AssignmentRow.position)))
            if not positions:
                raise DebuggableError(f"annotator {annotator_id!r} is not in the database; import the studies first.")
            done = set(s.scalars(select(AnswerRow.position).where(AnswerRow.annotator == annotator_id)))
        return next((p for p in positions if p not in done), None)

    def counts(self) -> dict[str, int]:
        """Row counts of every table (for status lines and checks)."""
        with self._session() as s:
            return {row.__tablename__: s.scalar(select(func.count()).select_from(row))
                    for row in (StudyRow, TaskRow, AnnotatorRow, AssignmentRow, AnswerRow)}

    # -- progress -----------------------------------------------------------------------

    def _assignment_rows(self) -> list[tuple]:
        q = (select(TaskRow.study, TaskRow.condition, AssignmentRow.annotator, AssignmentRow.task,
                    AnswerRow.id.is_not(None))
             .join(TaskRow, AssignmentRow.task == TaskRow.id)
             .outerjoin(AnswerRow, (AnswerRow.annotator == AssignmentRow.annotator) & (AnswerRow.task == AssignmentRow.task))
             .order_by(TaskRow.study, AssignmentRow.annotator, AssignmentRow.position))
        with self._session() as s:
            return [tuple(r) for r in s.execute(q).all()]

    def progress(self) -> list[dict[str, Any]]:
        """Progress per study and condition (attention checks under their own condition).

        Returns:
            One dict per (study, condition), sorted: ``study, condition, tasks``
            (distinct tasks), ``assigned`` (assignment rows), ``answered`` (answers),
            ``annotators`` (annotators with at least one task of the condition),
            ``started`` (of those, with at least one answer in it) and ``finished``
            (of those, with every task of the condition answered).
        """
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for study, condition, annotator, task, answered in self._assignment_rows():
            g = groups.setdefault((study, condition), {"tasks": set(), "assigned": 0, "answered": 0, "per": {}})
            g["tasks"].add(task)
            g["assigned"] += 1
            g["answered"] += bool(answered)
            done, total = g["per"].get(annotator, (0, 0))
            g["per"][annotator] = (done + bool(answered), total + 1)
        out = []
        for (study, condition), g in sorted(groups.items()):
            per = g["per"].values()
            out.append(dict(study=study, condition=condition, tasks=len(g["tasks"]), assigned=g["assigned"],
                            answered=g["answered"], annotators=len(g["per"]),
                            started=sum(1 for d, _ in per if d > 0), finished=sum(1 for d, t in per if d == t)))
        return out

    def annotator_progress(self, study: str | None = None) -> list[dict[str, Any]]:
        """Per annotator: ``study, annotator_id, answered, total, checks`` (attention checks
        answered) and ``checks_passed`` (answered with every keyed question right), sorted."""
        with self._session() as s:
            q = (select(AnnotatorRow.study, AnnotatorRow.id, func.count(AssignmentRow.position))
                 .join(AssignmentRow, AssignmentRow.annotator == AnnotatorRow.id)
                 .group_by(AnnotatorRow.study, AnnotatorRow.id).order_by(AnnotatorRow.study, AnnotatorRow.id))
            if study is not None:
                q = q.where(AnnotatorRow.study == study)
            totals = s.execute(q).all()
            a = (select(AnswerRow.annotator, TaskRow.attention_check, TaskRow.record, AnswerRow.answer)
                 .join(TaskRow, AnswerRow.task == TaskRow.id))
            if study is not None:
                a = a.where(TaskRow.study == study)
            answers = s.execute(a).all()
        stats: dict[str, list[int]] = {}
        for annotator, check, record, answer in answers:
            st = stats.setdefault(annotator, [0, 0, 0])
            st[0] += 1
            if check:
                st[1] += 1
                key = record.get("key") or {}
                st[2] += all(answer.get(k) == v for k, v in key.items())
        return [dict(study=st_name, annotator_id=a_id, answered=stats.get(a_id, [0])[0], total=total,
                     checks=stats.get(a_id, [0, 0])[1], checks_passed=stats.get(a_id, [0, 0, 0])[2])
                for st_name, a_id, total in totals]

    def task_records(self, study: str | None = None) -> dict[str, dict[str, Any]]:
        """``{task_id: full task record}`` as imported (of ``study`` only, when given)."""
        q = select(TaskRow.id, TaskRow.record)
        if study is not None:
            q = q.where(TaskRow.study == study)
        with self._session() as s:
            return {i: r for i, r in s.execute(q).all()}
