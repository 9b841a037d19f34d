"""What the task generators read from a finished run, and the pictures they draw from it.

:class:`RunSource` opens a run's artifacts lazily and caches them for one ``study
create``: the data splits, the sparse and the dense decision layer, every model
role's features, labels and predictions, backbones, the interpret stage's evidence
and the failure trees. :class:`FeatureVisuals` turns a (model role, feature) into the
pictures studies show (most-activating images, CAM heatmaps, feature attacks,
feature visualisations), reusing the interpret stage's arrays where they exist.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.run import RunDirectory, read_json


def softmax(logits: np.ndarray) -> np.ndarray:
    """(N, K) row-wise softmax of (N, K) logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class RunSource:
    """Read-only, cached access to a finished run for the task generators.

    Args:
        run: the run directory (its ``evaluate`` stage must be done; the studies that
            need ``interpret`` or ``failures`` say so when those are missing).
        device: where backbones run (feature attacks and visualisations).
        progress: show progress bars in long steps.
    """

    def __init__(self, run: RunDirectory, device: torch.device | str = "cpu", progress: bool = False):
        self.run = run
        self.device = torch.device(device)
        self.progress = progress
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self._backbones: dict[str, Any] = {}

    # -- data ---------------------------------------------------------------------------
    @cached_property
    def splits(self):
        from debuggable.pipeline.data_stage import build_data

        return build_data(self.run.config)

    @property
    def class_names(self) -> list[str]:
        return list(self.splits.class_names)

    @property
    def modality(self) -> str:
        return self.splits.modality

    def images(self, split: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), C, H, W) float32 images in [0, 1] of ``split``."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.splits[split].batch(rows)[0].numpy().astype(np.float32)

    @cached_property
    def ground_truth(self) -> dict[str, Any]:
        path = self.run.path / "data" / "ground_truth.json"
        return read_json(path) if path.is_file() else {}

    def patched_rows(self, split: str) -> set[int]:
        """Rows of ``split`` carrying a planted spurious patch (empty without one)."""
        truth = self.ground_truth.get("spurious_patch", {})
        return set(int(i) for i in truth.get("splits", {}).get(split, {}).get("indices", []))

    # -- layers -------------------------------------------------------------------------
    def _require(self, stage: str, for_what: str) -> None:
        if self.run.summary(stage) is None:
            raise DebuggableError(
                f"{for_what} needs the {stage!r} stage of {str(self.run.path)!r}; run `debuggable {stage} "
                f"{self.run.path}` first."
            )

    @cached_property
    def sparse_layer(self):
        from debuggable.layer import SparseDecisionLayer

        self._require("evaluate", "the studies")
        return SparseDecisionLayer.load(self.run.path / "layer")

    @cached_property
    def dense_layer(self):
        """The least regularised path point: the evaluate stage's "dense" layer."""
        from debuggable.layer import SparseDecisionLayer
        from debuggable.pipeline.fit_stage import load_path

        path = load_path(self.run)
        s = self.sparse_layer
        return SparseDecisionLayer.from_path(path, -1, mean=path.feature_mean, std=path.feature_std,
                                             class_names=s.class_names, selection={"rule": "dense"})

    def layer(self, condition: str):
        if condition == "sparse":
            return self.sparse_layer
        if condition == "dense":
            return self.dense_layer
        raise DebuggableError(f"condition {condition!r}: expected 'sparse' or 'dense'.")

    @property
    def layer_role(self) -> str:
        return self.run.config.glm.store

    # -- stores -------------------------------------------------------------------------
    def roles(self) -> list[str]:
        from debuggable.pipeline.roles import model_roles

        return list(model_roles(self.run.config))

    def _split_reader(self, role: str, split: str):
        from debuggable.pipeline.extract_stage import open_store

        store = open_store(self.run, role)
        if split not in store.splits():
            raise DebuggableError(f"the {role!r} feature store has no split {split!r}; expected one of {store.splits()}.")
        return store.split(split)

    def features(self, role: str, split: str) -> np.ndarray:
        """(N, D) float32 features of ``role`` on ``split`` (loaded once)."""
        key = (role, split)
        if key not in self._features:
            self._features[key] = np.asarray(self._split_reader(role, split).to_numpy("features"), dtype=np.float32)
        return self._features[key]

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.splits[split].labels, dtype=np.int64)

    def spatial(self, role: str, split: str, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), D, h, w) pre-pooling maps when the store kept them, else None."""
        reader = self._split_reader(role, split)
        if "spatial" not in reader.arrays:
            return None
        return np.asarray(reader.read("spatial", np.asarray(rows, dtype=np.int64)), dtype=np.float32)

    def backbone(self, role: str):
        if role not in self._backbones:
            from debuggable.pipeline.extract_stage import make_backbone

            self._backbones[role] = make_backbone(self.run, role).to(self.device).eval()
        return self._backbones[role]

    # -- other stages -------------------------------------------------------------------
    @cached_property
    def evidence_arrays(self) -> dict[str, np.ndarray]:
        """The interpret stage's ``evidence.npz`` (empty when the stage did not run)."""
        path = self.run.path / "evidence" / "evidence.npz"
        if self.run.summary("interpret") is None or not path.is_file():
            return {}
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    @cached_property
    def failure_trees(self) -> dict[str, Any]:
        self._require("failures", "this study")
        return read_json(self.run.path / "failures" / "trees.json")

    def failure_split(self) -> tuple[str, str, str]:
        """(features role, predictions role, split) of the failure analysis."""
        cfg = self.run.config.failures
        return cfg.store, cfg.predictions, cfg.split

    def predictions(self, role: str, split: str) -> np.ndarray:
        """(N,) the model's predictions on ``split`` as stored by extraction."""
        reader = self._split_reader(role, split)
        for name in ("preds", "predictions"):
            if name in reader.arrays:
                return np.asarray(reader.read(name), dtype=np.int64)
        if "logits" in reader.arrays:
            return np.asarray(reader.read("logits")).argmax(axis=1)
        raise DebuggableError(f"the {role!r} store of split {split!r} holds no predictions.")


class FeatureVisuals:
    """The pictures of one model role's features, computed once per feature.

    Args:
        source: the run.
        role: the model role (``inspected``, ``robust``).
        split: the split the most-activating images come from.
        k: most-activating images per feature.
        attack: the feature attack's ``(eps, steps, step_size)`` (L2, pixel units;
            default: the interpret stage's settings).
    """

    def __init__(self, source: RunSource, role: str, split: str, *, k: int = 6,
                 attack: tuple[float, int, float] | None = None):
        self.source = source
        self.role = role
        self.split = split
        self.k = k
        self._attack = attack
        self._vis: dict[int, np.ndarray] = {}
        self._top: dict[tuple[int, tuple[int, ...] | None], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def _interpret_cfg(self):
        from debuggable.run import InterpretConfig

        return self.source.run.config.interpret or InterpretConfig()

    def top_rows(self, feature: int, rows: np.ndarray | None = None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, activations) of the ``k`` most-activating examples of ``feature``,
        among ``rows`` of the split when given (most activating first)."""
        from debuggable.interpret import most_activating

        k = self.k if k is None else k
        key = (int(feature), None if rows is None else tuple(int(r) for r in rows), k)
        if key not in self._top:
            x = self.source.features(self.role, self.split)
            if rows is None:
                act = most_activating(x, int(feature), k)
                self._top[key] = (act.indices.astype(np.int64), act.values)
            else:
                rows = np.asarray(rows, dtype=np.int64)
                act = most_activating(x[rows], int(feature), min(k, rows.size))
                self._top[key] = (rows[act.indices], act.values)
        return self._top[key]

    def heatmaps(self, feature: int, rows: np.ndarray) -> np.ndarray | None:
        """(len(rows), H, W) CAM heatmaps in [0, 1], or None when the model has no spatial map."""
        from debuggable.interpret import backbone_cam, feature_cam

        imgs = self.source.images(self.split, rows)
        size = imgs.shape[2:]
        maps = self.source.spatial(self.role, self.split, rows)
        if maps is not None:
            return feature_cam(maps, int(feature), size)
        bb = self.source.backbone(self.role)
        if getattr(bb, "has_spatial", False):
            return backbone_cam(bb, torch.from_numpy(imgs), int(feature), device=self.source.device)
        return None

    def attack(self, feature: int, rows: np.ndarray) -> np.ndarray:
        """(len(rows), C, H, W) the images after the feature attack (the interpret stage's budget)."""
        from debuggable.interpret import feature_attack

        cfg = self._interpret_cfg
        eps, steps, step = self._attack or (cfg.attack_eps, cfg.attack_steps, cfg.attack_step_size)
        imgs = torch.from_numpy(self.source.images(self.split, rows))
        return feature_attack(self.source.backbone(self.role), imgs, int(feature), eps=eps, steps=steps,
                              step_size=step, device=self.source.device).numpy()

    def visualisations(self, features: list[int]) -> dict[int, np.ndarray]:
        """{j: (C, H, W)} feature visualisations from noise (the interpret stage's when it made them)."""
        from debuggable.interpret import feature_visualisation

        stored = self.source.evidence_arrays if self.role == self.source.run.config.glm.store else {}
        todo = []
        for j in dict.fromkeys(int(f) for f in features):
            if j in self._vis:
                continue
            if f"visualisation_{j}" in stored:
                self._vis[j] = stored[f"visualisation_{j}"]
            else:
                todo.append(j)
        if todo:
            cfg = self._interpret_cfg
            shape = tuple(self.source.splits[self.split].image_shape)
            seed = self.source.run.config.seed
            out = feature_visualisation(self.source.backbone(self.role), todo, shape=shape,
                                        steps=max(cfg.vis_steps, 1), seed=seed, device=self.source.device).numpy()
            for j, img in zip(todo, out):
                self._vis[j] = img
        return {int(j): self._vis[int(j)] for j in features}


def study_sources(run: RunDirectory) -> dict[str, Any]:
    """What a study was made from: the run directory and its stages' finish times."""
    stages = {name: rec.get("finished") for name, rec in run.manifest["stages"].items() if rec.get("status") == "done"}
    return {"run": str(Path(run.path).resolve()), "stages": stages}
