"""The feature-description study (002 Sec. 8 and Appendix G, the questionnaire of its Fig. 65).

For a robust feature with high mutual information on a group's failures, annotators
see its most-activating images (section A), their heatmaps (B) and feature attacks
(C), and give a 3-word and a 15-word description, how easy the feature was to
understand and how confident they are (Likert 1-5), and which section helped most.
The paper: average ease and confidence about 3; section B most useful in 43% of
answers, C in 18%, both in 32%, none in 7%.
"""

from __future__ import annotations

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.run.config import DescriptionStudyConfig
from debuggable.studies.generators.barlow import BarlowContext, require_groups, spread_by_error
from debuggable.studies.generators.common import StudyImages, attention_checks, choice, likert, text
from debuggable.studies.schema import Block, Study, Task
from debuggable.studies.source import RunSource

KIND = "description"

INSTRUCTIONS = [
    "Each task shows one internal feature of a computer model that looks at pictures, in three ways: "
    "A, the pictures that activate it most; B, heatmaps of where in those pictures it fires; C, the pictures "
    "changed slightly to make the feature fire more strongly (what gets amplified is what the feature looks for).",
    "Describe the feature in about 3 words, then in about 15 words, say how easy it was to understand and how "
    "confident you are, and which section helped you most.",
    "Keys: Tab moves between fields; 1-5 pick a rating; Enter goes to the next task.",
]

SECTIONS = (["B", "C", "both", "none"], ["Section B (heatmaps)", "Section C (feature attack)", "Both B and C",
                                         "Neither"])


def description_study(source: RunSource, directory, cfg: DescriptionStudyConfig, *, name: str = KIND, seed: int = 0,
                      replication: int = 1, checks: int = 4) -> Study:
    """Tasks for ``cfg.features`` features of ``cfg.groups`` groups per grouping (the
    groupings are the conditions); a grouping with fewer groups is cut to the other's
    task count so the conditions stay balanced."""
    if source.modality != "image":
        raise DebuggableError("the feature-description study shows images; this run's data are not images.")
    ctx = BarlowContext(source)
    require_groups(ctx, "feature-description")
    rng = np.random.default_rng(seed)
    writer = StudyImages(directory)
    conditions = ctx.groupings()
    plans = {g: [(fg, j, mi) for fg in spread_by_error(ctx.of(g), cfg.groups)
                 for j, mi in fg.ranked_features()[: cfg.features]] for g in conditions}
    n = min(len(p) for p in plans.values())
    tasks: list[Task] = []
    number = 0
    for condition in conditions:
        for fg, j, mi in plans[condition][:n]:
            number += 1
            views, rows = ctx.feature_views(writer, fg, j, cfg.images)
            intro = Block(kind="text", text=f"Feature {j} of the model, on pictures the model "
                                            f"{'labels' if fg.grouping == 'prediction' else 'should label'} as one category.")
            questions = [
                text("short", "Describe the feature in about 3 words.", words=3, max_chars=60),
                text("long", "Describe the feature in about 15 words.", words=15, max_chars=300),
                likert("ease", "How easy was it to understand what the feature looks for?", "very hard", "very easy"),
                likert("confidence", "How confident are you in your description?", "not at all", "very"),
                choice("helpful", "Which section helped you most?", *SECTIONS),
            ]
            tasks.append(Task(
                id=f"{name}/{number:04d}", study=name, condition=condition, blocks=[intro, *views],
                questions=questions,
                meta={"group": fg.name, "class": fg.cls, "class_name": source.class_names[fg.cls], "feature": int(j),
                      "mutual_information": mi, "ber": fg.ber, "rows": rows,
                      "sections": [b.data.get("section") for b in views]},
            ))
    pool = [im for t in tasks for b in t.blocks[1:2] for im in b.images]
    tasks += attention_checks(name, pool, checks, rng, first_id=number + 1)
    return Study(name=name, kind=KIND, title="What does this feature look for?", instructions=INSTRUCTIONS,
                 conditions=conditions, tasks=tasks, replication=replication, seed=seed,
                 source={"settings": cfg.model_dump(mode="json"), "tasks_per_condition": n,
                         "store": ctx.role, "split": ctx.split})
