"""Pattern-insertion counterfactuals for images (paper Sec. 4.2, Fig. 9).

A pattern the layer treats as evidence for a target class (a planted patch, or the
region where one of the class's features fires most) is pasted into images of other
classes; the counterfactual works when the prediction moves to the target class.
The same pasted images are scored by several models (e.g. the backbone with the
sparse decision layer, and the original network), so their rates compare directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from debuggable.errors import DebuggableError

#: images (B, C, H, W) float in [0, 1] on some device -> logits (B, K).
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Pattern:
    """A rectangular image pattern and where it goes.

    Attributes:
        pixels: (C, h, w) float32 values in [0, 1].
        top: row of its upper-left corner in the target images.
        left: column of its upper-left corner.
        mask: (h, w) bool, which of its pixels are pasted (default all).
        name: a short description for reports.
        source: where it came from (JSON-able).
    """

    pixels: np.ndarray
    top: int
    left: int
    mask: np.ndarray | None = None
    name: str = "pattern"
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        px = np.asarray(self.pixels, dtype=np.float32)
        if px.ndim != 3 or min(px.shape) < 1:
            raise DebuggableError(f"pattern pixels: expected a (C, h, w) array, got shape {px.shape}.")
        if not np.all(np.isfinite(px)):
            raise DebuggableError("pattern pixels: contain NaN or infinite values.")
        object.__setattr__(self, "pixels", px)
        if self.mask is not None:
            m = np.asarray(self.mask, dtype=bool)
            if m.shape != px.shape[1:]:
                raise DebuggableError(f"pattern mask: expected shape {px.shape[1:]} to match the pixels, got {m.shape}.")
            object.__setattr__(self, "mask", m)
        for name in ("top", "left"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise DebuggableError(f"pattern {name}={v!r} is invalid; expected a non-negative pixel index.")
            object.__setattr__(self, name, int(v))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1), exclusive ends."""
        return self.top, self.left, self.top + self.pixels.shape[1], self.left + self.pixels.shape[2]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "box": list(self.box), "source": self.source}


def paste(images: torch.Tensor | np.ndarray, pattern: Pattern) -> torch.Tensor:
    """Copy of ``images`` (N, C, H, W) with ``pattern`` pasted at its box (masked pixels only).

    A one-channel pattern is broadcast over the images' channels.
    """
    x = images.clone() if isinstance(images, torch.Tensor) else torch.as_tensor(np.array(images, dtype=np.float32))
    if x.ndim != 4:
        raise DebuggableError(f"images: expected (N, C, H, W), got shape {tuple(x.shape)}.")
    c, h, w = pattern.pixels.shape
    r0, c0, r1, c1 = pattern.box
    if r1 > x.shape[2] or c1 > x.shape[3]:
        raise DebuggableError(
            f"pattern box {pattern.box} does not fit images of size {tuple(x.shape[2:])}; expected it inside the image."
        )
    if c not in (1, x.shape[1]):
        raise DebuggableError(f"pattern has {c} channels; expected 1 or the images' {x.shape[1]}.")
    px = torch.as_tensor(pattern.pixels, dtype=x.dtype, device=x.device).expand(x.shape[1], h, w)
    region = x[:, :, r0:r1, c0:c1]
    if pattern.mask is None:
        region[:] = px
    else:
        m = torch.as_tensor(pattern.mask, device=x.device)
        region[:] = torch.where(m, px, region)
    return x


def crop_pattern(image: np.ndarray | torch.Tensor, box: tuple[int, int, int, int], *, name: str = "crop",
                 source: dict[str, Any] | None = None) -> Pattern:
    """The pixels of ``image`` (C, H, W) inside ``box`` (row0, col0, row1, col1) as a :class:`Pattern`
    pasted back at the same place."""
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if img.ndim != 3:
        raise DebuggableError(f"image: expected (C, H, W), got shape {img.shape}.")
    r0, c0, r1, c1 = (int(v) for v in box)
    if not (0 <= r0 < r1 <= img.shape[1] and 0 <= c0 < c1 <= img.shape[2]):
        raise DebuggableError(f"box {tuple(box)} is not a non-empty region of an image of size {img.shape[1:]}.")
    return Pattern(img[:, r0:r1, c0:c1].copy(), r0, c0, name=name, source=dict(source or {}))


def peak_box(heatmap: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` box holding the most heat.

    Every placement inside the map is scored by the sum of ``heatmap`` over it; among
    equal sums the box whose centre is nearest the map's maximum wins.

    Args:
        heatmap: (H, W) values, e.g. :func:`occlusion_map` or a feature's CAM
            (:func:`debuggable.interpret.feature_cam`).
        size: side in pixels, at most min(H, W).

    Returns:
        (row0, col0, row1, col1), exclusive ends.
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.ndim != 2:
        raise DebuggableError(f"heatmap: expected (H, W), got shape {hm.shape}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(hm.shape):
        raise DebuggableError(f"size={size!r} is invalid; expected an integer in [1, {min(hm.shape)}].")
    if not np.all(np.isfinite(hm)):
        raise DebuggableError("heatmap: contains NaN or infinite values.")
    ii = np.pad(hm.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    best = sums.max()
    cand = np.argwhere(sums >= best - 1e-12 * max(1.0, abs(best)))
    pr, pc = np.unravel_index(int(np.argmax(hm)), hm.shape)
    centre = cand + (size - 1) / 2.0
    r0, c0 = (int(v) for v in cand[int(np.argmin(((centre - [pr, pc]) ** 2).sum(1)))])
    return r0, c0, r0 + size, c0 + size


@torch.no_grad()
def occlusion_box(backbone: Any, image: np.ndarray | torch.Tensor, feature: int, size: int, *,
                  stride: int = 1, baseline: float = 0.0, batch_size: int = 256,
                  device: str | torch.device | None = None) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The ``size`` x ``size`` window of ``image`` that feature ``feature`` depends on most.

    Every window position (step ``stride``) is filled with ``baseline`` in turn and the
    image re-encoded; the window whose occlusion lowers the feature most wins (ties:
    the first in raster order).

    Args:
        backbone: an image backbone (``backbone(x).features`` is (B, D)).
        image: (C, H, W) in [0, 1].
        feature: the feature index j.
        size: window side in pixels; stride: window step in pixels.
        baseline: the value occluded pixels take.
        batch_size: occluded images per forward pass.
        device: where to run; default the backbone's device.

    Returns:
        ``(box, drops)``: the winning (row0, col0, row1, col1) and the (n_rows, n_cols)
        feature drop ``f(image) - f(occluded)`` of every window position.
    """
    img = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image, dtype=np.float32))
    if img.ndim != 3:
        raise DebuggableError(f"image: expected (C, H, W), got shape {tuple(img.shape)}.")
    dim = getattr(backbone, "feature_dim", None)
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or feature < 0 or (
            dim is not None and feature >= dim):
        raise DebuggableError(f"feature {feature!r} is out of range; expected an index in 0..{(dim or 1) - 1}.")
    c, h, w = img.shape
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(h, w):
        raise DebuggableError(f"size={size!r} is invalid; expected an integer in [1, {min(h, w)}].")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise DebuggableError(f"stride={stride!r} is invalid; expected a positive integer.")
    dev = torch.device(device) if device is not None else getattr(backbone, "device", torch.device("cpu"))
    rows = list(range(0, h - size + 1, stride))
    cols = list(range(0, w - size + 1, stride))
    positions = [(r, q) for r in rows for q in cols]
    x = img.to(dev)
    base = float(backbone(x[None]).features[0, int(feature)])
    drops = np.empty(len(positions))
    for lo in range(0, len(positions), batch_size):
        chunk = positions[lo : lo + batch_size]
        batch = x[None].repeat(len(chunk), 1, 1, 1)
        for k, (r, q) in enumerate(chunk):
            batch[k, :, r : r + size, q : q + size] = baseline
        drops[lo : lo + len(chunk)] = base - backbone(batch).features[:, int(feature)].double().cpu().numpy()
    r0, c0 = positions[int(np.argmax(drops))]
    return (r0, c0, r0 + size, c0 + size), drops.reshape(len(rows), len(cols))


@dataclass
class InsertionResult:
    """Outcome of pasting one pattern into a set of images, per model.

    Attributes:
        pattern: the pasted :class:`Pattern`.
        target: the target class index.
        labels: (N,) true classes of the images (none is the target).
        before: model -> (N,) predictions on the original images.
        after: model -> (N,) predictions with the pattern.
        target_prob_before / target_prob_after: model -> (N,) softmax probability of the target.
    """

    pattern: Pattern
    target: int
    labels: np.ndarray
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    target_prob_before: dict[str, np.ndarray]
    target_prob_after: dict[str, np.ndarray]

    def flip_rate(self, model: str) -> float:
        """Among the images the model did not already assign to the target, the share
        predicted as the target once the pattern is pasted (NaN with no such image)."""
        eligible = self.before[model] != self.target
        if not eligible.any():
            return float("nan")
        return float(np.mean(self.after[model][eligible] == self.target))

    def rate_without(self, model: str) -> float:
        """Share of the original images the model already predicts as the target."""
        return float(np.mean(self.before[model] == self.target))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern.to_dict(),
            "target": self.target,
            "images": int(self.labels.size),
            "models": {
                m: {
                    "flip_rate": self.flip_rate(m),
                    "target_rate_before": self.rate_without(m),
                    "target_rate_after": float(np.mean(self.after[m] == self.target)),
                    "mean_target_prob_change": float(np.mean(self.target_prob_after[m] - self.target_prob_before[m])),
                }
                for m in self.before
            },
        }


class PatternInsertion:
    """Paste a pattern into images of other classes and count predictions that move to a target.

    Args:
        models: name -> function mapping images (B, C, H, W) in [0, 1] to logits (B, K),
            e.g. ``{"sparse": DebuggableModel, "original": lambda x: backbone(x).logits}``.
        target: the target class index.
        batch_size: images per forward pass.
        device: where images are sent; default CPU.
    """

    def __init__(self, models: Mapping[str, LogitsFn], target: int, *, batch_size: int = 256,
                 device: str | torch.device | None = None):
        self.models = models
        self.target = target
        self.batch_size = batch_size
        self.device = device

    def _check(self) -> None:
        if not isinstance(self.models, Mapping) or not self.models:
            raise DebuggableError(f"models: got {self.models!r}, expected a non-empty mapping name -> logits function.")
        for name, fn in self.models.items():
            if not callable(fn):
                raise DebuggableError(f"models[{name!r}]: got a {type(fn).__name__}, expected a callable images -> logits.")
        if isinstance(self.target, bool) or not isinstance(self.target, (int, np.integer)) or self.target < 0:
            raise DebuggableError(f"target={self.target!r} is invalid; expected a class index.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise DebuggableError(f"batch_size={self.batch_size!r} is invalid; expected a positive integer.")

    @torch.no_grad()
    def _scores(self, x: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        out: dict[str, tuple[list, list]] = {m: ([], []) for m in self.models}
        for lo in range(0, x.shape[0], self.batch_size):
            xb = x[lo : lo + self.batch_size].to(device)
            for name, fn in self.models.items():
                logits = fn(xb)
                logits = getattr(logits, "logits", logits)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] <= self.target:
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise DebuggableError(
                        f"models[{name!r}] returned {shape}; expected (B, K) logits with K > target {self.target}."
                    )
                p = torch.softmax(logits.double(), 1)
                out[name][0].append(logits.argmax(1).cpu().numpy())
                out[name][1].append(p[:, self.target].cpu().numpy())
        return {m: (np.concatenate(a), np.concatenate(b)) for m, (a, b) in out.items()}

    def attribute(self, images: torch.Tensor | np.ndarray, labels: np.ndarray, pattern: Pattern) -> InsertionResult:
        """Paste ``pattern`` into ``images`` (N, C, H, W) in [0, 1] whose ``labels`` (N,)
        are not the target, and score both versions with every model."""
        self._check()
        x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images, dtype=np.float32))
        y = np.asarray(labels, dtype=np.int64)
        if x.ndim != 4 or y.shape != (x.shape[0],):
            raise DebuggableError(f"images/labels: expected (N, C, H, W) and (N,), got {tuple(x.shape)} and {y.shape}.")
        if x.shape[0] == 0:
            raise DebuggableError("images: got 0 images; expected at least one image of another class.")
        if np.any(y == self.target):
            raise DebuggableError(
                f"labels: {int(np.sum(y == self.target))} images already belong to the target class {self.target}; "
                f"expected images of other classes only."
            )
        pasted = paste(x, pattern)
        # The originals' scores are the same for every pattern: computed once per image set.
        cache = getattr(self, "_before", None)  # (images object held, its sum, scores)
        if cache is None or cache[0] is not images or cache[1] != float(x.sum()):
            self._before = (images, float(x.sum()), self._scores(x))
        before = self._before[2]
        after = self._scores(pasted)
        return InsertionResult(
            pattern=pattern, target=int(self.target), labels=y,
            before={m: v[0] for m, v in before.items()}, after={m: v[0] for m, v in after.items()},
            target_prob_before={m: v[1] for m, v in before.items()},
            target_prob_after={m: v[1] for m, v in after.items()},
        )
