"""``debuggable study create``: every configured study of a finished run, on disk and in the database.

For each kind in ``[studies] kinds`` the generator writes the study's images and
tasks into ``studies/<kind>/``, the tasks are assigned to the annotators, and the
whole set is imported into the database (created and migrated when new). A study
that cannot be made from this run (e.g. text data, no failure trees) is skipped with
its reason; regenerating studies whose database already holds answers is refused,
so no answer is ever orphaned.
"""

from __future__ import annotations

import shutil
import zlib
from typing import Any, Callable

from debuggable.errors import DebuggableError
from debuggable.run import RunDirectory, StudiesConfig
from debuggable.studies.assign import assign_tasks
from debuggable.run import read_json
from debuggable.studies.files import (
    FIGURES_DIR,
    SCORES_FILE,
    SECRET_FILE,
    SIMULATED_FILE,
    SQLITE_FILE,
    STUDIES_DIR,
    StudySet,
    save_study,
)
from debuggable.studies.tokens import load_or_create_secret

#: Studies that show the failure analysis.
NEEDS_FAILURES = ("description", "failure_review")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and summaries)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show nothing of it
        return "(unparsable URL)"


def study_seed(run_seed: int, kind: str) -> int:
    """A seed per study, stable across runs and independent of which other studies are made."""
    return int(run_seed) * 1000 + zlib.crc32(kind.encode()) % 1000


def existing_answers(run: RunDirectory, cfg: StudiesConfig) -> tuple[int, int]:
    """``(answers, simulated)``: how many answers the run's study database already holds,
    and how many of them come from the simulated annotators of ``studies/simulated.json``."""
    from debuggable.studies.db import StudyDatabase

    root = run.path / STUDIES_DIR
    if not (root / "index.json").is_file():
        return 0, 0
    try:
        studies = StudySet(root)
    except DebuggableError:
        return 0, 0
    url = cfg.database or studies.database_url
    if cfg.database is None and not (root / SQLITE_FILE).is_file():
        return 0, 0
    sim_path = root / SIMULATED_FILE
    simulated = set(read_json(sim_path).get("annotators", {})) if sim_path.is_file() else set()
    db = StudyDatabase(url)
    try:
        db.migrate()
        answers = db.answers()
    finally:
        db.close()
    return len(answers), sum(a["annotator_id"] in simulated for a in answers)


def create_studies(run: RunDirectory, *, device, log: Callable[[str], None] = print, progress: bool = False
                   ) -> dict[str, Any]:
    """Make every configured study of ``run``; returns the stage summary.

    Raises:
        DebuggableError: the database already holds answers (they would be orphaned).
    """
    from tqdm.auto import tqdm

    from debuggable._threads import one_cpu_thread
    from debuggable.studies.db import StudyDatabase
    from debuggable.studies.generators import GENERATORS
    from debuggable.studies.source import RunSource, study_sources

    cfg = run.config.studies
    root = run.path / STUDIES_DIR
    answered, simulated = existing_answers(run, cfg)
    if answered and (answered > simulated or cfg.database is not None):
        raise DebuggableError(
            f"{str(root)!r} already holds {answered} answers; making the studies again would orphan them. Export "
            "them (`debuggable study export RUN`), then move studies/ aside or set [studies] database to a new "
            "database."
        )
    if answered:  # only simulated annotators' answers, in the run's own SQLite file: start afresh
        log(f"[studies] discarding {answered} answers of simulated annotators")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in (SCORES_FILE, SIMULATED_FILE):  # they describe the studies about to be replaced
        (root / stale).unlink(missing_ok=True)
    shutil.rmtree(root / FIGURES_DIR, ignore_errors=True)
    source = RunSource(run, device=device, progress=progress)
    made, skipped = [], {}
    summary_studies: dict[str, Any] = {}
    checks = max(4, 2 * cfg.checks_per_annotator)
    from debuggable.pipeline.registry import failures_applies

    with one_cpu_thread(source.device):
        for kind in tqdm(cfg.kinds, desc="studies", disable=not progress, leave=False):
            directory = root / kind
            if directory.exists():
                shutil.rmtree(directory)  # no answers refer to it (checked above)
            if kind in NEEDS_FAILURES and not failures_applies(run):
                skipped[kind] = ("it shows the failure analysis, which this run does not make (it needs a "
                                 "[robust_model] and [failures] enabled)")
                log(f"[studies] {kind}: skipped ({skipped[kind]})")
                continue
            try:
                study = GENERATORS[kind](source, directory, getattr(cfg, kind), name=kind,
                                         seed=study_seed(run.config.seed, kind), replication=cfg.replication,
                                         checks=checks)
            except DebuggableError as exc:
                if directory.exists():
                    shutil.rmtree(directory)
                skipped[kind] = str(exc)
                log(f"[studies] {kind}: skipped ({exc})")
                continue
            study = study.model_copy(update={"source": {**study.source, **study_sources(run)}})
            assignments = assign_tasks(study, cfg.annotators, checks_per_annotator=cfg.checks_per_annotator)
            save_study(root, study, assignments)
            made.append(kind)
            per_condition = {c: sum(t.condition == c for t in study.main_tasks) for c in study.conditions}
            lengths = [len(v) for v in assignments.values()]
            summary_studies[kind] = {
                "title": study.title, "tasks": len(study.main_tasks), "attention_checks": len(study.checks),
                "conditions": per_condition, "annotators": cfg.annotators, "replication": cfg.replication,
                "tasks_per_annotator": [min(lengths), max(lengths)],
                "images": len({src for t in study.tasks for src in t.images()}),
            }
            log(f"[studies] {kind}: {len(study.main_tasks)} tasks ("
                + ", ".join(f"{c} {n}" for c, n in per_condition.items())
                + f") + {len(study.checks)} attention checks for {cfg.annotators} annotators, "
                  f"{cfg.replication} answers per task")
    StudySet.write_index(root, made, cfg.database)
    if not made:
        log("[studies] no study could be made from this run")
        return {"studies": {}, "skipped": skipped, "database": None, "min_check_accuracy": cfg.min_check_accuracy}
    load_or_create_secret(root / SECRET_FILE)
    studies = StudySet(root)
    db = StudyDatabase(studies.database_url)
    try:
        db.migrate()
        db.import_studies(studies)
    finally:
        db.close()
    return {"studies": summary_studies, "skipped": skipped, "database": redact_url(studies.database_url),
            "min_check_accuracy": cfg.min_check_accuracy}
