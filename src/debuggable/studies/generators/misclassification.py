"""The misclassification study (001 Sec. 4.3; 000 "Identifying reasons for misclassification").

A misclassified image is shown with two patterns, classes hidden: the most activated
feature of its true class and the *problematic* feature of the predicted class (the
one whose removal alone fixes the error), or, as the control, a randomly chosen used
feature in its place. Annotators say which patterns they see in the image and which
matches better. The paper: the predicted class's feature is seen in about 70% of the
images and judged the better match in 60%; a random feature is seen in 16%.
"""

from __future__ import annotations

import numpy as np

from debuggable.debug import problematic_features
from debuggable.errors import DebuggableError
from debuggable.run.config import MisclassificationStudyConfig
from debuggable.studies.generators.common import StudyImages, attention_checks, choice, feature_panel
from debuggable.studies.schema import Block, Option, Question, Study, Task
from debuggable.studies.source import FeatureVisuals, RunSource

KIND = "misclassification"
CONDITIONS = ["problematic", "random"]

INSTRUCTIONS = [
    "Each task shows one picture and two visual patterns, A and B. Each pattern is shown as a synthesised "
    "picture of it and some real pictures that contain it strongly.",
    "Say which of the patterns you can see in the picture (one, both or neither), then which of the two "
    "matches the picture better.",
    "Keys: a / b tick the patterns you see; 1, 2 choose the better match; Enter goes to the next task.",
]


def misclassification_study(source: RunSource, directory, cfg: MisclassificationStudyConfig, *, name: str = KIND,
                            seed: int = 0, replication: int = 1, checks: int = 4) -> Study:
    """Up to ``cfg.tasks`` errors per condition; each error appears in one condition only,
    the conditions alternating over a seeded order of the explained errors."""
    if source.modality != "image":
        raise DebuggableError("the misclassification study shows images; this run's data are not images.")
    rng = np.random.default_rng(seed)
    writer = StudyImages(directory)
    role = source.layer_role
    layer = source.sparse_layer
    x = source.features(role, cfg.split)
    y = source.labels(cfg.split)
    res = problematic_features(layer, x, y, device=source.device)
    # Standardised activations: how strongly each shown feature fires on the image (for
    # the scoring, and for the simulated oracle that reads the model).
    z = (x - layer.mean[None, :]) / np.where(layer.std > 0, layer.std, 1.0)[None, :]
    names = source.class_names
    ok = np.flatnonzero((res.feature >= 0) & (res.feature != res.top_feature_true))
    if ok.size < 2:
        raise DebuggableError(
            f"the misclassification study needs at least two errors of the sparse layer on {cfg.split!r} that one "
            f"feature explains; this run has {ok.size}.")
    order = ok[rng.permutation(ok.size)]
    n = min(cfg.tasks, order.size // 2)
    used = [int(j) for j in res.used_features]
    visuals = FeatureVisuals(source, role, cfg.split, k=max(cfg.feature_images, 1))
    tasks: list[Task] = []
    for number, i in enumerate(order[: 2 * n], 1):
        condition = CONDITIONS[(number - 1) % 2]
        row = int(res.rows[i])
        true_f, pred_f = int(res.top_feature_true[i]), int(res.feature[i])
        if condition == "random":
            others = [j for j in used if j not in (true_f, pred_f)]
            if not others:
                raise DebuggableError("the misclassification study's control needs a third used feature; the sparse "
                                      "layer uses only two.")
            second = int(rng.choice(others))
            second_role = "random"
        else:
            second, second_role = pred_f, "predicted"
        roles = [("true", true_f), (second_role, second)]
        if rng.random() < 0.5:
            roles.reverse()
        image = source.images(cfg.split, np.array([row]))[0]
        blocks = [Block(kind="images", title="The picture", images=[writer.add(f"{cfg.split}_{row}_large", image,
                                                                              alt="the picture", size=256)],
                        columns=1, data={"row": row, "split": cfg.split})]
        for letter, (r, j) in zip("AB", roles):
            blocks.append(feature_panel(visuals, writer, j, f"Pattern {letter}", n_images=cfg.feature_images,
                                        exclude_rows={row}, data={"option": letter}))
        questions = [
            Question(key="present", kind="multi", prompt="Which patterns can you see in the picture?",
                     options=[Option(value="A", label="Pattern A", key="a"), Option(value="B", label="Pattern B", key="b")],
                     required=False),
            choice("better", "Which pattern matches the picture better?", ["A", "B"], ["Pattern A", "Pattern B"]),
        ]
        tasks.append(Task(
            id=f"{name}/{number:04d}", study=name, condition=condition, blocks=blocks, questions=questions,
            meta={"row": row, "label": int(res.labels[i]), "label_name": names[int(res.labels[i])],
                  "predicted": int(res.predicted[i]), "predicted_name": names[int(res.predicted[i])],
                  "options": {letter: {"role": r, "feature": int(j), "activation_z": float(z[row, j])}
                              for letter, (r, j) in zip("AB", roles)},
                  "problematic_feature": pred_f, "top_feature_true": true_f, "fixes": int(res.fixes[i])},
        ))
    pool = [b.images[0] for t in tasks for b in t.blocks if b.title == "The picture"]
    tasks += attention_checks(name, pool, checks, rng, first_id=len(tasks) + 1)
    return Study(name=name, kind=KIND, title="Which pattern do you see in the picture?", instructions=INSTRUCTIONS,
                 conditions=CONDITIONS, tasks=tasks, replication=replication, seed=seed,
                 source={"settings": cfg.model_dump(mode="json"), "errors": res.num_errors,
                         "explained": int(res.explained.sum()), "random_fix_rate": res.random_fix_rate})
