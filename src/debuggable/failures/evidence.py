"""Visual evidence for a failure mode (Barlow, Sec. 4 and Appendix F).

For each feature on a failure mode's rule: the group's most-activating images, their
CAM heatmaps and feature-attack images (all from :mod:`debuggable.interpret`), and,
for the mode itself, random failures from its leaf. What the person looking at it
should answer: what visual attribute does the feature encode, and is it present or
absent in the failures?
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from debuggable.errors import DebuggableError


def _interpret():
    """The interpret API (most_activating, feature_cam, backbone_cam, feature_attack)."""
    try:
        from debuggable.interpret import backbone_cam, feature_attack, feature_cam, most_activating
    except ImportError:  # the package's __init__ may not re-export everything yet
        from debuggable.interpret.activating import most_activating
        from debuggable.interpret.attack import feature_attack
        from debuggable.interpret.cam import backbone_cam, feature_cam
    return most_activating, feature_cam, backbone_cam, feature_attack


@dataclass
class FailureModeEvidence:
    """The pictures behind one failure mode.

    Attributes:
        features: (F,) original feature indices on the rule, in path order.
        top_rows: (F, k) rows (into the analysed split) of each feature's most-activating
            examples within the group, most activating first.
        top_values: (F, k) their activations.
        top_images: (F, k, C, H, W) those images in [0, 1].
        cams: (F, k, H, W) CAM heatmaps in [0, 1] (zeros when no spatial map exists).
        attacks: (F, k, C, H, W) feature-attack images (copies of ``top_images`` when no
            backbone was given).
        failure_rows: (m,) random failing rows of the leaf.
        failure_images: (m, C, H, W).
        failure_labels, failure_preds: (m,) their labels and predictions.
        has_cam, has_attack: whether heatmaps / attacks were computed.
    """

    features: np.ndarray
    top_rows: np.ndarray
    top_values: np.ndarray
    top_images: np.ndarray
    cams: np.ndarray
    attacks: np.ndarray
    failure_rows: np.ndarray
    failure_images: np.ndarray
    failure_labels: np.ndarray
    failure_preds: np.ndarray
    has_cam: bool
    has_attack: bool

    def save(self, path: str | Path) -> Path:
        """Write the arrays to one ``.npz`` file atomically."""
        from debuggable.run import atomic_write_bytes
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v) for k, v in self.__dict__.items()})
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FailureModeEvidence":
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        d["has_cam"], d["has_attack"] = bool(d["has_cam"]), bool(d["has_attack"])
        return cls(**d)


def failure_mode_evidence(
    mode: dict[str, Any],
    group_rows: np.ndarray,
    leaf_rows: np.ndarray,
    *,
    features,
    labels: np.ndarray,
    preds: np.ndarray,
    images: Callable[[np.ndarray], Any],
    spatial: Callable[[np.ndarray], Any] | None = None,
    backbone=None,
    k: int = 6,
    n_failures: int = 6,
    attack_eps: float = 6.0,
    attack_steps: int = 20,
    attack_step_size: float = 0.5,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> FailureModeEvidence:
    """Evidence for one failure mode (a record of ``FailureAnalysis.failure_modes()``).

    Args:
        mode: the failure mode; its ``features`` (original indices) are visualised.
        group_rows: (n,) rows of the mode's group (the most-activating search space).
        leaf_rows: rows of the mode's leaf (failures are drawn from them).
        features: (N, D) the robust features of the analysed split.
        labels, preds: (N,) labels and predictions of the inspected model.
        images: ``rows -> (len(rows), C, H, W)`` images in [0, 1].
        spatial: ``rows -> (len(rows), D, h, w)`` pre-pooling maps of the robust model,
            or ``None`` (then heatmaps come from ``backbone`` when given).
        backbone: the robust :class:`debuggable.models.Backbone` for feature attacks
            (and heatmaps without ``spatial``); ``None`` skips attacks.
        k: most-activating images per feature.
        n_failures: random failures from the leaf.
        attack_eps, attack_steps, attack_step_size: the feature attack's L2 budget.
        seed: seed for drawing the failures.
        device: where the attack runs.
    """
    most_activating, feature_cam, backbone_cam, feature_attack = _interpret()
    feats = np.asarray(mode["features"], dtype=np.int64)
    if feats.size == 0:
        raise DebuggableError(f"mode: failure mode of {mode.get('group')!r} has no split feature to visualise.")
    group_rows = np.asarray(group_rows, dtype=np.int64)
    k = int(min(k, group_rows.size))
    sub = np.asarray(features[group_rows][:, feats], dtype=np.float32)
    top_rows, top_values, top_images, cams, attacks = [], [], [], [], []
    has_cam = spatial is not None or (backbone is not None and getattr(backbone, "has_spatial", False))
    has_attack = backbone is not None and attack_steps > 0 and attack_eps > 0
    for i, j in enumerate(feats):
        act = most_activating(sub, i, k)
        rows = group_rows[act.indices]
        imgs = np.asarray(images(rows), dtype=np.float32)
        size = (imgs.shape[2], imgs.shape[3])
        if spatial is not None:
            cam = feature_cam(spatial(rows), int(j), size)
        elif has_cam:
            cam = backbone_cam(backbone, torch.from_numpy(imgs), int(j), device=device)
        else:
            cam = np.zeros((len(rows),) + size, dtype=np.float32)
        if has_attack:
            att = feature_attack(backbone, torch.from_numpy(imgs), int(j), eps=attack_eps, steps=attack_steps,
                                 step_size=attack_step_size, device=device).numpy()
        else:
            att = imgs.copy()
        top_rows.append(rows)
        top_values.append(act.values)
        top_images.append(imgs)
        cams.append(cam)
        attacks.append(att)
    leaf_rows = np.asarray(leaf_rows, dtype=np.int64)
    failing = leaf_rows[labels[leaf_rows] != preds[leaf_rows]]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(failing, size=min(n_failures, failing.size), replace=False)) if failing.size else failing
    fail_imgs = np.asarray(images(pick), dtype=np.float32) if pick.size else np.zeros((0,) + top_images[0].shape[1:],
                                                                                        np.float32)
    return FailureModeEvidence(
        features=feats, top_rows=np.stack(top_rows), top_values=np.stack(top_values),
        top_images=np.stack(top_images), cams=np.stack(cams), attacks=np.stack(attacks),
        failure_rows=pick, failure_images=fail_imgs, failure_labels=labels[pick], failure_preds=preds[pick],
        has_cam=bool(has_cam), has_attack=bool(has_attack),
    )
