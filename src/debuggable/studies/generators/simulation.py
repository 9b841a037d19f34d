"""The simulation study (001 Sec. 3.3; 000 "The simulatibility study").

Can a person predict what the model does from the features its decision layer uses?
A target class is drawn and kept hidden; the annotator sees some of the features the
layer (dense or sparse) uses for it, with their weights, and picks which of three
validation images the model scores highest for that class. Images are chosen with
varied, non-trivial target-class probability. Chance is one in three; the paper
reports 63.0 +- 3.0% (sparse) vs 35.6 +- 3.1% (dense).
"""

from __future__ import annotations

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.run.config import SimulationStudyConfig
from debuggable.studies.generators.common import (
    LETTERS,
    StudyImages,
    attention_checks,
    balance,
    choice,
    feature_panel,
    weight_text,
)
from debuggable.studies.schema import Block, Image, Study, Task
from debuggable.studies.source import FeatureVisuals, RunSource, softmax

KIND = "simulation"
CONDITIONS = ["sparse", "dense"]

INSTRUCTIONS = [
    "A computer model sorts pictures into categories. In each task it looks for one category, which we do not "
    "name. To recognise it, the model looks for a few visual patterns: each is shown as a synthesised picture "
    "of the pattern and some real pictures that contain it strongly.",
    "Each pattern has a weight: a large positive weight means that the pattern makes the model more sure the "
    "picture belongs to the category; a negative weight means that it makes the model less sure.",
    "Then you see three pictures. Pick the one you think the model finds most likely to belong to the "
    "category. The pictures may come from any category; only the model's view matters.",
    "Keys: 1, 2, 3 choose a picture; Enter goes to the next task.",
]


def pick_candidates(p: np.ndarray, n: int, rng: np.random.Generator, *, min_probability: float, min_gap: float,
                    tries: int = 50) -> np.ndarray | None:
    """Rows of ``n`` images with varied target-class probability ``p`` (N,).

    Candidates have ``p >= min_probability``. Their probability range is cut into
    ``n`` equal intervals and one image is drawn from each, so the chosen ones spread
    over the range (where an interval is empty, the candidates are cut into ``n`` bins
    of equal count instead); a draw is kept when the most likely image leads the next
    by at least ``min_gap``, so the correct answer is clear. Returns None when no draw
    in ``tries`` qualifies.
    """
    rows = np.flatnonzero(p >= min_probability)
    if rows.size < n:
        return None
    rows = rows[np.argsort(p[rows], kind="stable")]
    edges = np.linspace(p[rows[0]], p[rows[-1]], n + 1)
    bins = [rows[(p[rows] >= lo) & ((p[rows] < hi) if i < n - 1 else (p[rows] <= hi))]
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    if any(b.size == 0 for b in bins):
        bins = np.array_split(rows, n)
    for _ in range(tries):
        pick = np.array([b[rng.integers(b.size)] for b in bins])
        top = np.sort(p[pick])[::-1]
        if top[0] - top[1] >= min_gap:
            return pick
    return None


def simulation_study(source: RunSource, directory, cfg: SimulationStudyConfig, *, name: str = KIND, seed: int = 0,
                     replication: int = 1, checks: int = 4) -> Study:
    """The simulation study of ``source``'s run, with its images written under ``directory``.

    Tasks are balanced: ``cfg.tasks`` per condition, target classes in turn (each
    class as often as the others, in a seeded order); a class without ``cfg.images``
    qualifying candidates under a condition's layer is skipped for that condition.
    """
    if source.modality != "image":
        raise DebuggableError("the simulation study shows images; this run's data are not images.")
    rng = np.random.default_rng(seed)
    writer = StudyImages(directory)
    role = source.layer_role
    visuals = FeatureVisuals(source, role, cfg.evidence_split, k=max(cfg.feature_images, 1))
    cand_split = cfg.candidate_split
    x = source.features(role, cand_split)
    labels = source.labels(cand_split)
    names = source.class_names
    tasks: list[Task] = []
    skipped: dict[str, list[str]] = {}
    number = 0
    for condition in CONDITIONS:
        layer = source.layer(condition)
        probs = softmax(layer.decision_function(x))
        classes = [c for c in range(layer.num_classes) if layer.top_features(c)]
        order: list[int] = []
        made = 0
        attempts = 0
        while made < cfg.tasks and attempts < 4 * cfg.tasks + 4 * len(classes):
            if not order:
                order = [classes[i] for i in rng.permutation(len(classes))]
            c = order.pop()
            attempts += 1
            pick = pick_candidates(probs[:, c], cfg.images, rng, min_probability=cfg.min_probability,
                                   min_gap=cfg.min_gap)
            if pick is None:
                skipped.setdefault(condition, []).append(names[c])
                classes = [k for k in classes if k != c]
                order = [k for k in order if k != c]
                if not classes:
                    break
                continue
            top = layer.top_features(c, cfg.top_k)
            n_feat = min(cfg.features, len(top))
            chosen = sorted(rng.choice(len(top), size=n_feat, replace=False).tolist())
            feats = [top[i] for i in chosen]
            number += 1
            made += 1
            pick = pick[rng.permutation(pick.size)]
            letters = list(LETTERS[: pick.size])
            blocks = [Block(kind="text", text=(
                f"The model looks for {n_feat} pattern{'s' if n_feat > 1 else ''} (of the "
                f"{len(top) if len(top) < cfg.top_k else f'{cfg.top_k} strongest'} it uses for this category):"))]
            for i, (j, w) in enumerate(feats, 1):
                blocks.append(feature_panel(visuals, writer, j, f"Pattern {i}: weight {weight_text(w)}",
                                            n_images=cfg.feature_images, data={"weight": w}))
            candidates = source.images(cand_split, pick)
            images = [writer.add(f"{cand_split}_{r}", img, caption=f"Image {c}", alt=f"candidate image {c}", label=c)
                      for r, img, c in zip(pick, candidates, letters)]
            blocks.append(Block(kind="images", title="Which image does the model find most likely to belong to "
                                                     "the category?", images=images, columns=len(images),
                                data={"rows": [int(r) for r in pick], "split": cand_split}))
            p = probs[pick, c]
            js = [j for j, _ in feats]
            shown_z = (x[np.ix_(pick, js)] - layer.mean[js]) / np.where(layer.std[js] > 0, layer.std[js], 1.0)
            tasks.append(Task(
                id=f"{name}/{number:04d}", study=name, condition=condition, blocks=blocks,
                questions=[choice("pick", "The image the model scores highest for the category:", letters,
                                  [f"Image {c}" for c in letters])],
                key={"pick": letters[int(np.argmax(p))]},
                meta={"target_class": int(c), "target_name": names[c], "probabilities": [float(v) for v in p],
                      "rows": [int(r) for r in pick], "labels": [int(v) for v in labels[pick]],
                      "features": [int(j) for j, _ in feats], "weights": [float(w) for _, w in feats],
                      "features_used_by_class": len(layer.top_features(c)),
                      "shown_activation_z": [[float(v) for v in row] for row in shown_z],
                      "correct_is_target_class": bool(labels[pick][int(np.argmax(p))] == c)},
            ))
    tasks = balance(tasks, CONDITIONS, rng)
    if not tasks:
        raise DebuggableError("the simulation study found no class with enough candidate images; lower "
                              "studies.simulation.min_probability or min_gap.")
    pool = [im for t in tasks for b in t.blocks if b.data.get("rows") is not None for im in b.images]
    tasks += attention_checks(name, pool, checks, rng, first_id=number + 1)
    return Study(
        name=name, kind=KIND, title="Which picture would the model choose?", instructions=INSTRUCTIONS,
        conditions=CONDITIONS, tasks=tasks, replication=replication, seed=seed,
        source={"settings": cfg.model_dump(mode="json"), "skipped_classes": skipped,
                "sparse_nnz": source.sparse_layer.nnz, "dense_nnz": source.dense_layer.nnz},
    )
