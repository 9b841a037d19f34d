"""The spurious-correlation study (001 Sec. 4.1; 000 "Spurious correlations in ImageNet").

For one feature a decision layer uses for a class, annotators see the feature's
most-activating images from two classes (the class that uses it and the other class
it fires on most), with their class names, and say whether the images share a
pattern, describe it, and, for each class, whether it is part of the object or of its
surroundings (a spurious correlation). Images from two classes are shown because one
class's images share many patterns, only some of which drive the feature.
"""

from __future__ import annotations

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.run.config import SpuriousStudyConfig
from debuggable.studies.generators.common import StudyImages, attention_checks, balance, choice, text, yes_no
from debuggable.studies.schema import Block, Study, Task
from debuggable.studies.source import FeatureVisuals, RunSource

KIND = "spurious"
CONDITIONS = ["sparse", "dense"]

INSTRUCTIONS = [
    "Each task shows pictures from two categories, with the categories' names. A computer model responds "
    "strongly to all of them through one of its internal features.",
    "Say whether the pictures share a common visual pattern. If they do, describe it in a few words, and say "
    "for each category whether the pattern is part of the object itself (for example the animal's stripes) or "
    "of its surroundings (for example the background, a mark on the picture, another object).",
    "Keys: y / n answer the first question; 1, 2 the others; Enter goes to the next task.",
]


def class_pair(x: np.ndarray, labels: np.ndarray, feature: int, cls: int, k: int) -> int | None:
    """The class other than ``cls`` whose ``k`` most-activating examples of ``feature``
    activate it most on average (None when no other class has ``k`` examples)."""
    best, best_score = None, -np.inf
    for c in np.unique(labels):
        if c == cls:
            continue
        vals = x[labels == c, feature]
        if vals.size < k:
            continue
        score = float(np.sort(vals)[-k:].mean())
        if score > best_score:
            best, best_score = int(c), score
    return best


def spurious_study(source: RunSource, directory, cfg: SpuriousStudyConfig, *, name: str = KIND, seed: int = 0,
                   replication: int = 1, checks: int = 4) -> Study:
    """One task per (class, feature) for each layer's ``cfg.per_class`` strongest positive
    features per class; conditions are balanced by keeping as many tasks of each
    layer as the smaller one has, at most ``cfg.tasks`` (chosen at random)."""
    if source.modality != "image":
        raise DebuggableError("the spurious-correlation study shows images; this run's data are not images.")
    rng = np.random.default_rng(seed)
    writer = StudyImages(directory)
    role = source.layer_role
    visuals = FeatureVisuals(source, role, cfg.split, k=cfg.images)
    x = source.features(role, cfg.split)
    labels = source.labels(cfg.split)
    names = source.class_names
    patched = source.patched_rows(cfg.split)
    per_condition: dict[str, list[tuple[int, int, float]]] = {}
    for condition in CONDITIONS:
        layer = source.layer(condition)
        items = []
        for c in range(layer.num_classes):
            positive = [(j, w) for j, w in layer.top_features(c) if w > 0][: cfg.per_class]
            items += [(c, j, w) for j, w in positive]
        per_condition[condition] = items
    n = min(min(len(v) for v in per_condition.values()), cfg.tasks)
    if n == 0:
        raise DebuggableError("the spurious-correlation study found no feature with a positive weight in one of the layers.")
    tasks: list[Task] = []
    number = 0
    for condition in CONDITIONS:
        items = per_condition[condition]
        keep = sorted(rng.choice(len(items), size=n, replace=False).tolist())
        for c, j, w in (items[i] for i in keep):
            other = class_pair(x, labels, j, c, cfg.images)
            if other is None:
                continue
            number += 1
            pair = [c, other] if rng.random() < 0.5 else [other, c]
            blocks, shown_rows = [], {}
            for side, k in zip("AB", pair):
                rows, _ = visuals.top_rows(j, rows=np.flatnonzero(labels == k), k=cfg.images)
                imgs = source.images(cfg.split, rows)
                blocks.append(Block(
                    kind="images", title=f"Category {side}: {names[k]}",
                    images=[writer.add(f"{cfg.split}_{r}", im, caption=names[k], alt=f"a picture of {names[k]}")
                            for r, im in zip(rows, imgs)],
                    columns=len(rows), data={"class": int(k), "rows": [int(r) for r in rows]}))
                shown_rows[side] = [int(r) for r in rows]
            questions = [
                yes_no("shared", "Do these pictures share a common visual pattern?"),
                text("describe", "Describe the shared pattern in a few words.", words=5, max_chars=200,
                     show_if={"key": "shared", "equals": "yes"}),
            ]
            for side, k in zip("AB", pair):
                questions.append(choice(
                    f"where_{side}", f"For {names[k]} (category {side}), the pattern is part of ...",
                    ["object", "surroundings"], [f"the {names[k]} itself", "its surroundings"],
                    show_if={"key": "shared", "equals": "yes"}))
            n_patched = sum(r in patched for rows in shown_rows.values() for r in rows)
            by_side = {side: sum(r in patched for r in rows) / len(rows) for side, rows in shown_rows.items()}
            tasks.append(Task(
                id=f"{name}/{number:04d}", study=name, condition=condition, blocks=blocks, questions=questions,
                meta={"feature": int(j), "weight": float(w), "class": int(c), "class_name": names[c],
                      "pair": [int(k) for k in pair], "pair_names": [names[k] for k in pair], "rows": shown_rows,
                      "planted_patch_images": n_patched, "planted_patch_by_side": by_side,
                      "planted_patch_fraction": n_patched / max(1, sum(len(v) for v in shown_rows.values()))},
            ))
    tasks = balance(tasks, CONDITIONS, rng)
    pool = [im for t in tasks for b in t.blocks for im in b.images]
    tasks += attention_checks(name, pool, checks, rng, first_id=number + 1)
    return Study(name=name, kind=KIND, title="Do these pictures share a pattern?", instructions=INSTRUCTIONS,
                 conditions=CONDITIONS, tasks=tasks, replication=replication, seed=seed,
                 source={"settings": cfg.model_dump(mode="json"), "tasks_per_condition": n})
