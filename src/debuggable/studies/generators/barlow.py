"""What the two Barlow studies share: the failure analysis's groups, trees and the
robust features' three views (most-activating images, heatmaps, feature attacks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.studies.generators.common import StudyImages
from debuggable.studies.schema import Block
from debuggable.studies.source import FeatureVisuals, RunSource


@dataclass
class FailureGroup:
    """One group of the failure analysis with its trees.

    Attributes:
        name: e.g. ``label=giraffe``.
        grouping: ``label`` or ``prediction``.
        cls: the class.
        rows: rows of the analysed split in the group.
        trees: ``{depth: tree record}`` from ``failures/trees.json``.
    """

    name: str
    grouping: str
    cls: int
    rows: np.ndarray
    trees: dict[int, dict[str, Any]]

    @property
    def ber(self) -> float:
        return float(next(iter(self.trees.values()))["ber"])

    def ranked_features(self) -> list[tuple[int, float]]:
        """The group's features by mutual information with failure, highest first."""
        t = next(iter(self.trees.values()))
        return [(int(j), float(mi)) for j, mi in zip(t["selected_features"], t["mutual_information"])]


class BarlowContext:
    """The failure analysis of a run, ready for the Barlow study generators."""

    def __init__(self, source: RunSource):
        self.source = source
        trees = source.failure_trees
        self.role, self.pred_role, self.split = source.failure_split()
        self.labels = source.labels(self.split)
        self.preds = source.predictions(self.pred_role, self.split)
        self.features = source.features(self.role, self.split)
        groups: dict[str, FailureGroup] = {}
        for t in trees["trees"]:
            g = t["group"]
            if g.get("grouping") not in ("label", "prediction") or g.get("class") is None:
                continue  # user-defined groups have no class to name
            key = self.labels if g["grouping"] == "label" else self.preds
            fg = groups.setdefault(g["name"], FailureGroup(g["name"], g["grouping"], int(g["class"]),
                                                            np.flatnonzero(key == int(g["class"])), {}))
            fg.trees[int(t["depth"])] = t
        self.groups = groups
        cfg = source.run.config.failures
        self.visuals = FeatureVisuals(source, self.role, self.split,
                                      attack=(cfg.attack_eps, cfg.attack_steps, cfg.attack_step_size))

    def groupings(self) -> list[str]:
        return [g for g in ("label", "prediction") if any(fg.grouping == g for fg in self.groups.values())]

    def of(self, grouping: str) -> list[FailureGroup]:
        return [fg for fg in self.groups.values() if fg.grouping == grouping]

    def feature_views(self, writer: StudyImages, group: FailureGroup, feature: int, n: int
                      ) -> tuple[list[Block], list[int]]:
        """Sections A (most-activating images of the group), B (their CAM heatmaps) and
        C (their feature attacks) for a robust feature; returns the blocks and the rows."""
        rows, values = self.visuals.top_rows(feature, rows=group.rows, k=n)
        images = self.source.images(self.split, rows)
        prefix = f"{self.split}_{self.role}_{feature}"
        a = [writer.add(f"{self.split}_{r}", im, alt="a most-activating image") for r, im in zip(rows, images)]
        heat = self.visuals.heatmaps(feature, rows)
        data = {"feature": int(feature), "role": self.role, "rows": [int(r) for r in rows],
                "activations": [float(v) for v in values]}
        blocks = [Block(kind="images", title="Section A: the images that activate the feature most", images=a,
                        columns=min(len(a), 6), data={**data, "section": "A"})]
        if heat is not None:
            b = [writer.heatmap(f"{prefix}_cam_{r}", im, h, alt="heatmap") for r, im, h in zip(rows, images, heat)]
            blocks.append(Block(kind="images", title="Section B: heatmaps (where the feature fires, red = most)",
                                images=b, columns=min(len(b), 6), data={**data, "section": "B"}))
        attacked = self.visuals.attack(feature, rows)
        c = [writer.add(f"{prefix}_attack_{r}", im, alt="feature attack") for r, im in zip(rows, attacked)]
        blocks.append(Block(kind="images", title="Section C: feature attack (the images changed to strengthen "
                                                 "the feature)", images=c, columns=min(len(c), 6),
                            data={**data, "section": "C"}))
        return blocks, [int(r) for r in rows]


def spread_by_error(groups: list[FailureGroup], n: int) -> list[FailureGroup]:
    """``n`` groups taken from the highest, the middle and the lowest base error rate in
    turn (002 Sec. 8 picks the top, middle and bottom classes by error rate)."""
    ranked = sorted(groups, key=lambda g: (-g.ber, g.name))
    out: list[FailureGroup] = []
    lo, hi = 0, len(ranked) - 1
    turn = 0
    while len(out) < min(n, len(ranked)):
        if turn % 3 == 0:
            g = ranked[lo]
            lo += 1
        elif turn % 3 == 1:
            g = ranked[(lo + hi) // 2]
        else:
            g = ranked[hi]
            hi -= 1
        if g not in out:
            out.append(g)
        turn += 1
        if lo > hi and len(out) < n:
            out += [g for g in ranked if g not in out][: n - len(out)]
            break
    return out


def require_groups(ctx: BarlowContext, study: str) -> None:
    if not ctx.groups:
        raise DebuggableError(f"the {study} study needs failure trees of label or prediction groups; the failure "
                              "analysis of this run made none (see failures/summary.json 'skipped').")
