"""Feature cards: all the evidence about one feature the sparse layer uses for one class.

:func:`build_feature_cards` picks, for each class, the features its sparse decision
layer uses, ranked by |standardised weight| (the paper's Fig. 2-3 and Barlow's
visualisations), and gathers for each: the most- and least-activating examples of a
split, and

* images: CAM heatmaps of the top examples, a feature attack on them, a feature
  visualisation from noise and LIME superpixels on the top example;
* text: the top and bottom sentences and positive/negative word clouds from LIME on
  them.

Evidence is computed once per feature and shared by every class that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_feature, check_float, check_int
from debuggable.interpret.activating import ActivatingExamples, most_activating
from debuggable.interpret.attack import feature_activation, feature_attack
from debuggable.interpret.cam import backbone_cam, feature_cam
from debuggable.interpret.lime_image import ImageLime, image_lime
from debuggable.interpret.lime_text import word_lime
from debuggable.interpret.visualisation import feature_visualisation
from debuggable.interpret.wordclouds import WordCloudSet, word_clouds


@dataclass(frozen=True)
class AttackSettings:
    """Feature attack settings (L2 ball, pixel units)."""

    eps: float = 2.0
    steps: int = 20
    step_size: float = 0.25


@dataclass(frozen=True)
class VisualisationSettings:
    """Feature visualisation settings (see :func:`feature_visualisation`)."""

    steps: int = 128
    lr: float = 0.05
    jitter: int = 1
    parametrisation: str = "fourier"


@dataclass(frozen=True)
class LimeSettings:
    """LIME settings for images (superpixels) and text (words)."""

    n_samples: int = 300
    n_segments: int = 25
    segmentation: str = "slic"
    alpha: float = 1.0
    top: int = 3


@dataclass
class FeatureEvidence:
    """What one feature responds to (independent of the class that uses it).

    Attributes:
        feature: j.
        modality: ``"image"`` or ``"text"``.
        top, bottom: the most / least activating examples of the split.
        top_images, bottom_images: (k, C, H, W) those images (image modality).
        cams: (k, H, W) heatmaps of the top images (when a spatial map exists).
        attacked: (k, C, H, W) the top images after the feature attack.
        attack_before, attack_after: (k,) feature j before / after the attack.
        visualisation: (C, H, W) feature visualisation from noise.
        lime: LIME superpixels on the top image.
        top_texts, bottom_texts: the top / bottom sentences (text modality).
        positive_words, negative_words: ``[(word, weight)]`` of the word clouds.
    """

    feature: int
    modality: str
    top: ActivatingExamples
    bottom: ActivatingExamples
    top_images: np.ndarray | None = None
    bottom_images: np.ndarray | None = None
    cams: np.ndarray | None = None
    attacked: np.ndarray | None = None
    attack_before: np.ndarray | None = None
    attack_after: np.ndarray | None = None
    visualisation: np.ndarray | None = None
    lime: ImageLime | None = None
    top_texts: list[str] | None = None
    bottom_texts: list[str] | None = None
    positive_words: list[tuple[str, float]] | None = None
    negative_words: list[tuple[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no pixel arrays)."""
        d: dict[str, Any] = {"feature": self.feature, "modality": self.modality,
                             "top": self.top.to_dict(), "bottom": self.bottom.to_dict()}
        if self.attack_before is not None and self.attack_after is not None:
            d["attack"] = {"before": self.attack_before.tolist(), "after": self.attack_after.tolist(),
                           "mean_gain": float(np.mean(self.attack_after - self.attack_before))}
        if self.lime is not None:
            d["lime"] = self.lime.to_dict()
        if self.top_texts is not None:
            d["top_texts"] = self.top_texts
            d["bottom_texts"] = self.bottom_texts
        if self.positive_words is not None:
            d["positive_words"] = [[w, v] for w, v in self.positive_words]
            d["negative_words"] = [[w, v] for w, v in (self.negative_words or [])]
        return d


@dataclass
class FeatureCard:
    """One (class, feature) pair of the sparse layer with the feature's evidence.

    Attributes:
        class_index, class_name: the class.
        feature: j.
        weight: the class's standardised weight on feature j (``weight * std``).
        rank: 1 for the class's largest |weight|, 2 for the next, ...
        evidence: the :class:`FeatureEvidence` of feature j.
        extra: anything a caller adds (e.g. the share of top images carrying a
            planted patch).
    """

    class_index: int
    class_name: str
    feature: int
    weight: float
    rank: int
    evidence: FeatureEvidence
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return self.evidence.modality

    def to_dict(self) -> dict[str, Any]:
        return {"class_index": self.class_index, "class_name": self.class_name, "feature": self.feature,
                "weight": self.weight, "rank": self.rank, **{k: v for k, v in self.extra.items()}}


def card_features(layer: Any, *, per_class: int = 3, classes: Sequence[int] | None = None
                  ) -> list[tuple[int, int, float, int]]:
    """``(class, feature, standardised weight, rank)`` for the features each class of a
    :class:`debuggable.layer.SparseDecisionLayer` uses, ranked by |weight|, at most
    ``per_class`` per class."""
    per_class = check_int("per_class", per_class, minimum=1)
    k = layer.num_classes
    chosen = range(k) if classes is None else classes
    out = []
    for c in chosen:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < k:
            raise DebuggableError(f"classes: {c!r} is not a class index; expected integers in 0..{k - 1}.")
        for rank, (j, w) in enumerate(layer.top_features(int(c), per_class), start=1):
            out.append((int(c), int(j), float(w), rank))
    return out


def _rows(dataset: Any, indices: np.ndarray) -> Any:
    x, _ = dataset.batch(np.asarray(indices, dtype=np.int64))
    return x


def _image_evidence(ranked: dict[int, tuple[ActivatingExamples, ActivatingExamples]], dataset: Any, backbone: Any,
                    spatial: Any, attack: AttackSettings | None, vis: VisualisationSettings | None,
                    lime: LimeSettings | None, seed: int, device: Any, progress: bool) -> dict[int, FeatureEvidence]:
    """Image evidence of every feature; attacks and visualisations of all features run as one batch."""
    evidence: dict[int, FeatureEvidence] = {}
    for j, (top, bottom) in ranked.items():
        top_x = _rows(dataset, top.indices).float()
        ev = FeatureEvidence(j, "image", top, bottom, top_images=top_x.numpy(),
                             bottom_images=_rows(dataset, bottom.indices).float().numpy())
        size = (int(top_x.shape[2]), int(top_x.shape[3]))
        if spatial is not None:
            maps = spatial.read("spatial", top.indices) if hasattr(spatial, "read") else np.asarray(spatial)[top.indices]
            ev.cams = feature_cam(np.asarray(maps, dtype=np.float32), j, size)
        elif backbone is not None and getattr(backbone, "has_spatial", False):
            ev.cams = backbone_cam(backbone, top_x, j, device=device)
        evidence[j] = ev
    if backbone is None or not evidence:
        return evidence
    feats = list(evidence)
    if attack is not None:
        x = torch.cat([torch.from_numpy(evidence[j].top_images) for j in feats])
        per_image = [j for j in feats for _ in range(len(evidence[j].top))]
        adv = feature_attack(backbone, x, per_image, eps=attack.eps, steps=attack.steps, step_size=attack.step_size,
                             device=device, progress=progress)
        before = feature_activation(backbone, x, per_image, device=device).numpy().astype(np.float64)
        after = feature_activation(backbone, adv, per_image, device=device).numpy().astype(np.float64)
        lo = 0
        for j in feats:
            n = len(evidence[j].top)
            evidence[j].attacked = adv[lo : lo + n].numpy()
            evidence[j].attack_before, evidence[j].attack_after = before[lo : lo + n], after[lo : lo + n]
            lo += n
    if vis is not None:
        shape = tuple(int(s) for s in evidence[feats[0]].top_images.shape[1:])
        images = feature_visualisation(backbone, feats, shape=shape, steps=vis.steps, lr=vis.lr, jitter=vis.jitter,
                                       parametrisation=vis.parametrisation, seed=seed, device=device,
                                       progress=progress).numpy()
        for j, img in zip(feats, images):
            evidence[j].visualisation = img
    if lime is not None:
        it = feats
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(feats, desc="image LIME", unit="feature", leave=False)
        for j in it:
            evidence[j].lime = image_lime(backbone, torch.from_numpy(evidence[j].top_images[0]), j,
                                          n_segments=lime.n_segments, n_samples=lime.n_samples, seed=seed + j,
                                          segmentation=lime.segmentation, alpha=lime.alpha, device=device)
    return evidence


def build_feature_cards(
    layer: Any,
    features: Any,
    dataset: Any,
    *,
    backbone: Any = None,
    spatial: Any = None,
    per_class: int = 3,
    k: int = 8,
    classes: Sequence[int] | None = None,
    attack: AttackSettings | None = AttackSettings(),
    visualisation: VisualisationSettings | None = VisualisationSettings(),
    lime: LimeSettings | None = LimeSettings(),
    clouds: WordCloudSet | None = None,
    cloud_words: int = 20,
    seed: int = 0,
    device: Any = None,
    progress: bool = False,
) -> list[FeatureCard]:
    """Feature cards for the sparse layer's top features of each class.

    Args:
        layer: a :class:`debuggable.layer.SparseDecisionLayer` (K classes, D features).
        features: (N, D) features of ``dataset`` (array, tensor or ``SplitReader``),
            row i belonging to ``dataset[i]``.
        dataset: the :class:`debuggable.data.Dataset` whose examples are shown.
        backbone: the model the features come from; needed for attacks,
            visualisations, LIME and (without ``spatial``) heatmaps; a text backbone (or
            any list[str] -> features callable) for word clouds.
        spatial: (N, C, h, w) spatial maps of ``dataset`` (array, or a ``SplitReader``
            storing ``spatial``) for heatmaps without rerunning the model.
        per_class: features per class, by |standardised weight|.
        k: top and bottom examples per feature.
        classes: which classes (default all).
        attack, visualisation, lime: settings, or ``None`` to skip that evidence.
        clouds: precomputed word clouds (text); default: LIME over the top and bottom
            sentences of every card feature, aggregated per feature.
        cloud_words: words kept per positive / negative cloud.
        seed: seeds visualisation and LIME.
        device: where to run the backbone.
        progress: show progress bars.

    Returns:
        Cards ordered by class, then rank.
    """
    d = int(layer.feature_dim)
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2 or int(shape[1]) != d:
        raise DebuggableError(f"features: got shape {None if shape is None else tuple(shape)}, expected (N, {d}) "
                              "to match the sparse layer.")
    if int(shape[0]) != len(dataset):
        raise DebuggableError(f"features: has {int(shape[0])} rows but the dataset has {len(dataset)}; "
                              "expected the features of that dataset.")
    if int(shape[0]) == 0:
        raise DebuggableError("dataset: is empty; expected examples to show on the cards.")
    k = check_int("k", k, minimum=1)
    seed = check_int("seed", seed)
    cloud_words = check_int("cloud_words", cloud_words, minimum=1)
    modality = dataset.modality
    model_modality = getattr(backbone, "modality", None)
    if backbone is not None and model_modality is not None and model_modality != modality:
        raise DebuggableError(f"backbone: its modality is {model_modality!r} but the dataset holds {modality} data; "
                              "expected a model of the data's modality.")
    for name, s in (("attack", attack), ("visualisation", visualisation), ("lime", lime)):
        if s is not None and not isinstance(s, (AttackSettings, VisualisationSettings, LimeSettings)):
            raise DebuggableError(f"{name}: got a {type(s).__name__}, expected its settings dataclass or None.")
    if attack is not None:
        check_float("attack.eps", attack.eps)
    picks = card_features(layer, per_class=per_class, classes=classes)
    unique = list(dict.fromkeys(j for _, j, _, _ in picks))
    for j in unique:
        check_feature(j, d)

    evidence: dict[int, FeatureEvidence] = {}
    ranked = {j: (most_activating(features, j, k), most_activating(features, j, k, bottom=True)) for j in unique}
    if modality == "text":
        texts = dataset.texts if hasattr(dataset, "texts") else [dataset[i][0] for i in range(len(dataset))]
        if clouds is None and backbone is not None and unique:
            rows = list(dict.fromkeys(int(i) for j in unique for i in (*ranked[j][0].indices, *ranked[j][1].indices)))
            n_samples = lime.n_samples if lime is not None else 200
            results = word_lime(backbone, [texts[i] for i in rows], unique, n_samples=n_samples, seed=seed,
                                alpha=lime.alpha if lime is not None else 1.0, progress=progress, device=device)
            clouds = word_clouds(results)
        for j in unique:
            top, bottom = ranked[j]
            ev = FeatureEvidence(j, "text", top, bottom, top_texts=[texts[i] for i in top.indices],
                                 bottom_texts=[texts[i] for i in bottom.indices])
            if clouds is not None and j in clouds.features:
                ev.positive_words = clouds.positive(j, cloud_words)
                ev.negative_words = clouds.negative(j, cloud_words)
            evidence[j] = ev
    else:
        evidence = _image_evidence(ranked, dataset, backbone, spatial, attack, visualisation, lime, seed, device,
                                   progress)
    names = list(getattr(layer, "class_names", [str(c) for c in range(layer.num_classes)]))
    return [FeatureCard(c, names[c], j, w, rank, evidence[j]) for c, j, w, rank in picks]
