"""Stage ``studies``: the human studies of a finished run (``debuggable.studies``).

Writes ``studies/`` (see :mod:`debuggable.studies.files`): one directory per study
with its tasks, images and assignment, the token secret, the index and, by default,
the SQLite database the answers go to. With ``[studies.simulate]`` (the demo), the
studies are then answered by simulated annotators through the web app's HTTP API on
the loopback interface and scored, so the report shows a scored study.
"""

from __future__ import annotations

from typing import Any

from debuggable.errors import DebuggableError
from debuggable.pipeline.stage import StageContext
from debuggable.run import RunDirectory


def check_studies_config(config) -> None:
    """Validate ``[studies]`` against the rest of the config (before anything is written)."""
    cfg = config.studies
    if cfg is None or not cfg.enabled:
        return
    if not cfg.kinds:
        raise DebuggableError("studies.kinds is empty; expected at least one study kind, or studies.enabled = false.")
    if len(set(cfg.kinds)) != len(cfg.kinds):
        raise DebuggableError(f"studies.kinds {cfg.kinds} names a study twice; expected each kind at most once.")
    if cfg.replication > cfg.annotators:
        raise DebuggableError(f"studies.replication {cfg.replication} needs at least as many annotators; "
                              f"studies.annotators is {cfg.annotators}.")
    splits = {"studies.simulation.candidate_split": cfg.simulation.candidate_split,
              "studies.simulation.evidence_split": cfg.simulation.evidence_split,
              "studies.spurious.split": cfg.spurious.split,
              "studies.misclassification.split": cfg.misclassification.split}
    for name, split in splits.items():
        kind = name.split(".")[1]
        if kind in cfg.kinds and split not in config.extract.splits:
            raise DebuggableError(f"{name} {split!r} is not extracted; expected one of {config.extract.splits}.")
    failures = config.failures
    if "failure_review" in cfg.kinds and failures is not None and cfg.failure_review.depth not in failures.depths:
        raise DebuggableError(f"studies.failure_review.depth {cfg.failure_review.depth} is not among failures.depths "
                              f"{failures.depths}; expected one of them.")
    if cfg.database is not None:
        from sqlalchemy.engine import make_url

        try:
            make_url(cfg.database)
        except Exception:
            raise DebuggableError("studies.database is not an SQLAlchemy URL; expected e.g. "
                                  "'postgresql+psycopg://user@host/db' or 'sqlite:////path/to/studies.db'.") from None
    if cfg.simulate is not None:
        total = cfg.simulate.oracle + cfg.simulate.noisy + cfg.simulate.random + cfg.simulate.reader
        if total > cfg.annotators:
            raise DebuggableError(f"studies.simulate asks for {total} simulated annotators but studies.annotators "
                                  f"is {cfg.annotators}; expected at most that many.")


def run_studies_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    from debuggable.studies.create import create_studies

    summary = create_studies(run, device=ctx.device, log=ctx.log, progress=ctx.progress)
    outputs = [f"studies/{name}" for name in summary["studies"]]
    sim = run.config.studies.simulate
    if sim is not None:
        from debuggable.studies.run_simulation import simulate_and_score

        result = simulate_and_score(run, sim, log=ctx.log)
        result.pop("scores")  # in studies/scores.json
        summary["simulated"] = result
        outputs.append("studies/scores.json")
    return summary, outputs
