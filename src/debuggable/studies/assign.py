"""Handing a study's tasks out to annotators.

:func:`assign_tasks` gives every main task to ``replication`` different annotators,
balances every condition across annotators (each annotator's count of a condition
differs from any other's by at most one), adds attention checks to every list and
shuffles each annotator's order, all from one seed, so the same study and seed give
the same assignment.
"""

from __future__ import annotations

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.studies.schema import Study


def annotator_ids(study: str, n: int) -> list[str]:
    """The annotator ids of a study: ``<study>-001`` ... (unique across a run's studies)."""
    return [f"{study}-{i + 1:03d}" for i in range(n)]


def assign_tasks(study: Study, annotators: int, *, checks_per_annotator: int = 2, seed: int | None = None
                 ) -> dict[str, list[str]]:
    """Each annotator's ordered task ids.

    Args:
        study: the study; ``study.replication`` (R) annotators answer each main task.
        annotators: how many annotators (N >= R).
        checks_per_annotator: attention checks mixed into every list (drawn in turn
            from the study's check tasks; 0 for none).
        seed: the shuffling seed (default: the study's).

    Returns:
        ``{annotator_id: [task_id, ...]}`` in the order the annotator sees them. Every
        main task appears in exactly R lists, never twice in one list; per condition,
        list lengths differ by at most one across annotators, and so do totals.
    """
    r = study.replication
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise DebuggableError(f"annotators: expected a positive integer, got {annotators!r}.")
    if annotators < r:
        raise DebuggableError(
            f"annotators: {annotators} cannot give each task to {r} different annotators; expected at least {r}."
        )
    checks = study.checks
    if checks_per_annotator < 0:
        raise DebuggableError(f"checks_per_annotator: expected 0 or more, got {checks_per_annotator}.")
    if checks_per_annotator and not checks:
        raise DebuggableError(f"study {study.name!r} has no attention checks; expected checks_per_annotator = 0.")
    rng = np.random.default_rng(study.seed if seed is None else seed)
    ids = annotator_ids(study.name, annotators)
    lists: list[list[str]] = [[] for _ in ids]
    slot = 0
    for condition in study.conditions:
        tasks = [t.id for t in study.main_tasks if t.condition == condition]
        tasks = [tasks[i] for i in rng.permutation(len(tasks))]
        # Task-major slots: a task's R copies land on R consecutive annotators (distinct
        # since R <= N); continuing the slot across conditions balances the totals too.
        for task_id in tasks:
            for _ in range(r):
                lists[slot % annotators].append(task_id)
                slot += 1
    check_ids = [t.id for t in checks]
    check_order = [check_ids[i] for i in rng.permutation(len(check_ids))] if check_ids else []
    next_check = 0
    for items in lists:
        for _ in range(checks_per_annotator):
            # Cycle through the checks; a list never holds the same check twice when
            # there are enough of them.
            items.append(check_order[next_check % len(check_order)])
            next_check += 1
    out = {}
    for annotator, items in zip(ids, lists):
        out[annotator] = [items[i] for i in rng.permutation(len(items))]
    return out
