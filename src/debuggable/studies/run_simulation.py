"""Answer a run's studies with simulated annotators through the web app, then score them.

Used by the demo (``[studies.simulate]``) and by ``debuggable study simulate``. The
plan (which annotator follows which policy) is written to ``studies/simulated.json``
before any answer, so the scores can say what each policy must reach.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from debuggable.errors import DebuggableError
from debuggable.run import RunDirectory, atomic_write_json
from debuggable.run.config import SimulatedAnnotatorsConfig
from debuggable.studies.files import SIMULATED_FILE, STUDIES_DIR, StudySet
from debuggable.studies.score import headline, score_run
from debuggable.studies.simulate import background_server, policy_plan, run_simulated_annotators


def simulate_and_score(run: RunDirectory, sim: SimulatedAnnotatorsConfig, *, database=None,
                       log: Callable[[str], None] = print, rebuild_report: bool = False) -> dict[str, Any]:
    """Serve ``run``'s studies on a loopback port, answer them with the policies of
    ``sim``, score them; returns the counts, the time taken and the scores' headline.

    Raises:
        DebuggableError: the database holds answers of annotators outside the plan
            (a real study is never mixed with simulated answers).
    """
    from debuggable.studies.db import StudyDatabase

    studies = StudySet(run.path / STUDIES_DIR)
    if not studies.studies:
        raise DebuggableError(f"{str(studies.root)!r} holds no study to answer; run `debuggable study create` first.")
    counts = {"oracle": sim.oracle, "noisy": sim.noisy, "random": sim.random, "reader": sim.reader}
    plan: dict[str, str] = {}
    for name, assigned in studies.assignments.items():
        plan.update(policy_plan(sorted(assigned), counts))
    own = database is None
    db = database or StudyDatabase(studies.database_url)
    try:
        if own:
            db.migrate()
        db.import_studies(studies)
        foreign = sorted({a["annotator_id"] for a in db.answers()} - set(plan))
        if foreign:
            raise DebuggableError(
                f"the study database already holds answers of {len(foreign)} annotators who are not simulated "
                f"(e.g. {foreign[0]!r}); simulated answers are never mixed into a real study.")
        atomic_write_json(studies.root / SIMULATED_FILE, {
            "annotators": plan, "noisy_accuracy": sim.noisy_accuracy,
            "note": "simulated annotators (debuggable.studies.simulate): not people"})
        t0 = time.perf_counter()
        with background_server(studies, db) as url:
            done = run_simulated_annotators(studies, url, plan, noisy_accuracy=sim.noisy_accuracy,
                                            seed=run.config.seed)
        seconds = time.perf_counter() - t0
        answered = sum(v["answered"] for v in done.values())
        log(f"[studies] {len(plan)} simulated annotators answered {answered} tasks over HTTP in {seconds:.1f} s")
        scores = score_run(run, database=db, rebuild_report=rebuild_report)
    finally:
        if own:
            db.close()
    for line in headline(scores):
        log(f"[studies] {line}")
    return {"annotators": {p: sum(v == p for v in plan.values()) for p in counts}, "answers": answered,
            "seconds": round(seconds, 2), "scores": scores}
