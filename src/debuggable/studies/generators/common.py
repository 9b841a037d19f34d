"""Pieces every task generator uses: image files, feature panels, attention checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from debuggable.studies.images import heatmap_overlay, save_png
from debuggable.studies.schema import Block, Image, Option, Question, Task

LETTERS = "ABCDEFGHIJ"


class StudyImages:
    """Writes a study's image files once each, under ``directory/img/``.

    Args:
        directory: the study's directory.
        size: the longer side (pixels) small images are upscaled to.
    """

    def __init__(self, directory: str | Path, *, size: int = 112):
        self.directory = Path(directory)
        self.size = size
        self._written: dict[str, str] = {}

    def add(self, name: str, image: np.ndarray, *, caption: str = "", alt: str = "", label: str | None = None,
            size: int | None = None) -> Image:
        """The :class:`Image` of ``image`` (C, H, W or H, W in [0, 1]) saved as ``img/<name>.png``
        (written the first time a name is used), upscaled to ``size`` (default the writer's)."""
        if name not in self._written:
            self._written[name] = save_png(image, self.directory, name, size=size or self.size)
        return Image(src=self._written[name], caption=caption, alt=alt or caption or name, label=label)

    def heatmap(self, name: str, image: np.ndarray, heat: np.ndarray, **kwargs) -> Image:
        """``image`` with the heatmap ``heat`` (H, W) blended over it."""
        return self.add(name, heatmap_overlay(image, heat), **kwargs)


def choice(key: str, prompt: str, values: list[str], labels: list[str] | None = None, *,
           keys: list[str] | None = None, **kwargs) -> Question:
    """A ``choice`` question; options keyed 1, 2, ... unless ``keys`` are given."""
    labels = labels or values
    keys = keys or [None] * len(values)
    return Question(key=key, kind="choice", prompt=prompt,
                    options=[Option(value=v, label=lab, key=k) for v, lab, k in zip(values, labels, keys)], **kwargs)


def yes_no(key: str, prompt: str, **kwargs) -> Question:
    return choice(key, prompt, ["yes", "no"], ["Yes", "No"], keys=["y", "n"], **kwargs)


def likert(key: str, prompt: str, low_label: str, high_label: str, **kwargs) -> Question:
    return Question(key=key, kind="likert", prompt=prompt, low=1, high=5, low_label=low_label,
                    high_label=high_label, **kwargs)


def text(key: str, prompt: str, *, words: int | None = None, max_chars: int = 300, **kwargs) -> Question:
    return Question(key=key, kind="text", prompt=prompt, words=words, max_chars=max_chars, **kwargs)


def attention_checks(study: str, images: list[Image], n: int, rng: np.random.Generator, *, first_id: int) -> list[Task]:
    """``n`` instructed-response checks laid out like the study's tasks.

    Each shows three of ``images`` as A, B, C and asks for one named letter, whatever
    the pictures show: an annotator who reads the page answers it; one who clicks
    through does so by chance (one in three).
    """
    out = []
    for i in range(n):
        pick = rng.choice(len(images), size=3, replace=len(images) < 3)
        target = LETTERS[int(rng.integers(3))]
        shown = [Image(src=images[p].src, caption=f"Image {c}", alt=f"image {c}", label=c)
                 for p, c in zip(pick, LETTERS[:3])]
        out.append(Task(
            id=f"{study}/{first_id + i:04d}", study=study, condition="attention", attention_check=True,
            blocks=[Block(kind="text", title="Attention check",
                          text=f"This task checks that the instructions are read. Whatever the images show, "
                               f"choose image {target}."),
                    Block(kind="images", images=shown, columns=3)],
            questions=[choice("pick", f"Choose image {target}.", list(LETTERS[:3]),
                              [f"Image {c}" for c in LETTERS[:3]])],
            key={"pick": target},
        ))
    return out


def weight_text(w: float) -> str:
    return f"{w:+.2f}"


def feature_panel(visuals, writer: StudyImages, feature: int, title: str, *, n_images: int,
                  data: dict | None = None, exclude_rows: set[int] | None = None) -> Block:
    """A feature shown as its visualisation and its ``n_images`` most-activating images.

    Args:
        visuals: the :class:`~debuggable.studies.source.FeatureVisuals` of the feature's model.
        writer: where the image files go.
        feature: j.
        title: the panel's heading (what the annotator calls it, e.g. "Pattern 2").
        n_images: most-activating images shown next to the visualisation.
        data: what the block stands for (recorded, not shown).
        exclude_rows: rows of the visuals' split never shown here (e.g. the task's own
            candidate images, when they come from the same split).
    """
    role, split = visuals.role, visuals.split
    vis = visuals.visualisations([feature])[feature]
    images = [writer.add(f"vis_{role}_{feature}", vis, caption="visualisation",
                         alt=f"feature visualisation of {title}")]
    if n_images:
        rows, values = visuals.top_rows(feature, k=n_images + len(exclude_rows or ()))
        keep = [(int(r), float(v)) for r, v in zip(rows, values) if int(r) not in (exclude_rows or set())][:n_images]
        pix = visuals.source.images(split, np.array([r for r, _ in keep], dtype=np.int64))
        for (r, _), img in zip(keep, pix):
            images.append(writer.add(f"{split}_{r}", img, caption="", alt=f"an image that activates {title}"))
        shown_rows = [r for r, _ in keep]
    else:
        shown_rows = []
    record = {"feature": int(feature), "role": role, "split": split, "top_rows": shown_rows}
    record.update(data or {})
    return Block(kind="images", title=title, images=images, columns=len(images), data=record)


def balance(tasks: list[Task], conditions: list[str], rng: np.random.Generator) -> list[Task]:
    """``tasks`` with every condition cut (at random) to the smallest condition's count,
    in their original order."""
    by = {c: [i for i, t in enumerate(tasks) if t.condition == c] for c in conditions}
    n = min(len(v) for v in by.values())
    keep: set[int] = set()
    for idx in by.values():
        keep.update(int(i) for i in (rng.choice(idx, size=n, replace=False) if len(idx) > n else idx))
    return [t for i, t in enumerate(tasks) if i in keep]
