"""LIME for one deep feature of an image model (Ribeiro et al., 2016; the paper's Fig. 3).

The image is cut into superpixels (scikit-image SLIC or quickshift, or a regular
grid); random subsets of superpixels are hidden (set to a baseline), the model runs on
each perturbed image, and a weighted ridge regression of feature j's activation on
the on/off pattern (LIME's exponential kernel on the cosine distance to the original)
gives each superpixel a weight: how much showing it raises the feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import (
    check_feature,
    check_float,
    check_images,
    check_int,
    eval_mode,
    resolve_device,
)
from debuggable.interpret._surrogate import cosine_distance_to_ones, lime_kernel, weighted_ridge

SEGMENTATIONS = ("slic", "quickshift", "grid")


@dataclass(frozen=True)
class ImageLime:
    """LIME's explanation of feature j on one image.

    Attributes:
        feature: j.
        segments: (H, W) int64 superpixel label of every pixel, ``0..M-1``.
        weights: (M,) surrogate weight of each superpixel (activation units per
            superpixel shown).
        intercept: the surrogate's value with every superpixel hidden.
        activation: feature j on the unperturbed image.
        score: weighted R^2 of the surrogate on the samples.
        n_samples: perturbed images evaluated.
    """

    feature: int
    segments: np.ndarray
    weights: np.ndarray
    intercept: float
    activation: float
    score: float
    n_samples: int

    @property
    def n_segments(self) -> int:
        return int(self.weights.shape[0])

    def top(self, k: int = 3, *, sign: str = "positive") -> np.ndarray:
        """Ids of the ``k`` superpixels with the largest weights (``"positive"``), the most
        negative (``"negative"``) or the largest |weight| (``"abs"``); only weights of
        that sign are listed, so fewer than ``k`` may come back."""
        k = check_int("k", k)
        if sign == "positive":
            order = [i for i in np.argsort(-self.weights, kind="stable") if self.weights[i] > 0]
        elif sign == "negative":
            order = [i for i in np.argsort(self.weights, kind="stable") if self.weights[i] < 0]
        elif sign == "abs":
            order = [i for i in np.argsort(-np.abs(self.weights), kind="stable") if self.weights[i] != 0]
        else:
            raise DebuggableError(f"sign: got {sign!r}, expected 'positive', 'negative' or 'abs'.")
        return np.asarray(order[:k], dtype=np.int64)

    def mask(self, k: int = 3, *, sign: str = "positive") -> np.ndarray:
        """(H, W) bool: the pixels of the :meth:`top` ``k`` superpixels."""
        return np.isin(self.segments, self.top(k, sign=sign))

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "n_segments": self.n_segments, "weights": self.weights.tolist(),
                "intercept": self.intercept, "activation": self.activation, "score": self.score,
                "n_samples": self.n_samples}


def segment_image(image: np.ndarray, *, n_segments: int = 25, method: str = "slic",
                  compactness: float | None = None, seed: int = 0) -> np.ndarray:
    """Superpixels of one image.

    Args:
        image: (C, H, W) floats in [0, 1].
        n_segments: the approximate number of superpixels (``"grid"``: the grid has
            ``ceil(sqrt(n_segments))`` cells per side).
        method: ``"slic"`` (k-means in colour + position; works on grey images, and is the
            default for small ones), ``"quickshift"`` (mode seeking; colour images) or
            ``"grid"`` (square cells).
        compactness: SLIC's colour/space trade-off (default 0.1 for grey, 10 for colour
            images: higher means squarer superpixels).
        seed: seeds quickshift's random tie breaking.

    Returns:
        (H, W) int64 labels ``0..M-1``, consecutive.
    """
    from skimage.segmentation import quickshift, slic

    if method not in SEGMENTATIONS:
        raise DebuggableError(f"segmentation: got {method!r}, expected one of {list(SEGMENTATIONS)}.")
    n_segments = check_int("n_segments", n_segments, minimum=1)
    c, h, w = image.shape
    grey = c == 1
    if method == "grid":
        side = int(np.ceil(np.sqrt(n_segments)))
        rows = np.minimum(np.arange(h) * side // h, side - 1)
        cols = np.minimum(np.arange(w) * side // w, side - 1)
        labels = rows[:, None] * side + cols[None, :]
    elif method == "slic":
        comp = (0.1 if grey else 10.0) if compactness is None else check_float("compactness", compactness, strict=True)
        data = image[0] if grey else image.transpose(1, 2, 0)
        labels = slic(data.astype(np.float64), n_segments=n_segments, compactness=comp, start_label=0,
                      channel_axis=None if grey else -1, enforce_connectivity=True)
    else:
        rgb = np.repeat(image, 3, axis=0) if grey else image
        labels = quickshift(rgb.transpose(1, 2, 0).astype(np.float64), kernel_size=max(1.0, min(h, w) / 16),
                            max_dist=max(2.0, min(h, w) / 4), ratio=0.5, rng=seed)
    _, labels = np.unique(np.asarray(labels), return_inverse=True)
    return labels.reshape(h, w).astype(np.int64)


def _forward_fn(model: Any, feature: int, device: torch.device | None) -> tuple[Callable[[torch.Tensor], np.ndarray], int | None]:
    """A function (B, C, H, W) -> (B,) activations of ``feature``, and the feature dim if known."""
    modality = getattr(model, "modality", None)
    if modality is not None and modality != "image":
        raise DebuggableError(
            f"model: image_lime explains image models, but this backbone's modality is {modality!r}; "
            "use word_lime for text models."
        )
    if not callable(model):
        raise DebuggableError(f"model: got a {type(model).__name__}, expected a Backbone or a callable images -> features.")

    def run(x: torch.Tensor) -> np.ndarray:
        if device is not None:
            x = x.to(device)
        out = model(x)
        feats = getattr(out, "features", out)
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().float().cpu().numpy()
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != x.shape[0]:
            raise DebuggableError(f"model: returned shape {feats.shape}, expected features ({x.shape[0]}, D).")
        check_feature(feature, feats.shape[1])
        return feats[:, feature]

    return run, getattr(model, "feature_dim", None)


def image_lime(
    model: Any,
    image: Any,
    feature: int,
    *,
    n_segments: int = 25,
    n_samples: int = 500,
    seed: int = 0,
    segmentation: str = "slic",
    segments: np.ndarray | None = None,
    baseline: float | str = 0.0,
    kernel_width: float = 0.25,
    alpha: float = 1.0,
    compactness: float | None = None,
    batch_size: int = 256,
    device: Any = None,
) -> ImageLime:
    """LIME for feature ``feature`` on one image.

    Args:
        model: an image :class:`debuggable.models.Backbone` (its ``features``), or any
            callable mapping images (B, C, H, W) in [0, 1] to features (B, D).
        image: (C, H, W) or (1, C, H, W) floats in [0, 1].
        feature: j, in ``0..D-1``.
        n_segments: approximate number of superpixels (see :func:`segment_image`).
        n_samples: perturbed images (the first is the unperturbed image).
        seed: seeds the on/off patterns (and quickshift).
        segmentation: ``"slic"``, ``"quickshift"`` or ``"grid"``.
        segments: (H, W) integer labels to use instead of computing superpixels.
        baseline: what hidden superpixels become: a pixel value in [0, 1] (default 0,
            black: the background of white-on-black drawings) or ``"mean"`` (the image's
            mean colour).
        kernel_width: width of LIME's kernel on the cosine distance (LIME's image default 0.25).
        alpha: ridge penalty of the surrogate (>= 0).
        batch_size: perturbed images per forward pass.
        device: where to run the model (default: the model's device).

    Returns:
        :class:`ImageLime`.
    """
    x = check_images(image[None] if getattr(image, "ndim", 0) == 3 else image, name="image")
    if x.shape[0] != 1:
        raise DebuggableError(f"image: got {x.shape[0]} images, expected one image (C, H, W).")
    n_samples = check_int("n_samples", n_samples, minimum=2)
    seed = check_int("seed", seed)
    kernel_width = check_float("kernel_width", kernel_width, strict=True)
    alpha = check_float("alpha", alpha)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    dim = getattr(model, "feature_dim", None)
    if isinstance(dim, (int, np.integer)):
        feature = check_feature(feature, int(dim))
    dev = resolve_device(device, model) if (device is not None or isinstance(model, torch.nn.Module)) else None
    run, _ = _forward_fn(model, feature, dev)
    img = x[0].detach().float().cpu()
    c, h, w = img.shape
    if segments is None:
        labels = segment_image(img.numpy(), n_segments=n_segments, method=segmentation, compactness=compactness, seed=seed)
    else:
        seg = np.asarray(segments)
        if seg.shape != (h, w) or not np.issubdtype(seg.dtype, np.integer):
            raise DebuggableError(f"segments: got {seg.dtype} {seg.shape}, expected integer labels of shape {(h, w)}.")
        _, labels = np.unique(seg, return_inverse=True)
        labels = labels.reshape(h, w).astype(np.int64)
    m = int(labels.max()) + 1
    if isinstance(baseline, str):
        if baseline != "mean":
            raise DebuggableError(f"baseline: got {baseline!r}, expected a pixel value in [0, 1] or 'mean'.")
        fill = img.mean(dim=(1, 2), keepdim=True).expand_as(img)
    else:
        fill = torch.full_like(img, check_float("baseline", baseline))
        if float(baseline) > 1:
            raise DebuggableError(f"baseline: got {baseline!r}, expected a pixel value in [0, 1] or 'mean'.")
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, size=(n_samples, m)).astype(np.float64)
    z[0] = 1.0
    onehot = torch.from_numpy(labels.ravel())
    y = np.empty(n_samples, dtype=np.float64)
    with torch.no_grad(), eval_mode(model):
        for lo in range(0, n_samples, batch_size):
            zb = torch.from_numpy(z[lo : lo + batch_size]).float()
            keep = zb[:, onehot].view(-1, 1, h, w)  # (b, 1, H, W) 1 where the superpixel is shown
            xb = keep * img[None] + (1 - keep) * fill[None]
            y[lo : lo + zb.shape[0]] = run(xb)
    weights = lime_kernel(cosine_distance_to_ones(z), kernel_width)
    coef, intercept, r2 = weighted_ridge(z, y, weights, alpha)
    return ImageLime(feature=int(feature), segments=labels, weights=coef[0], intercept=float(intercept[0]),
                     activation=float(y[0]), score=float(r2[0]), n_samples=n_samples)
