"""Planted bugs with exact ground truth: spurious patches, mislabels, trigger tokens.

Each planter returns a *new* :class:`DatasetSplits` (the input is never modified)
whose ``planted[kind]`` holds the bug's ground truth as plain JSON types. Every
ground truth has the same outer shape::

    {"kind": str, "version": 1, "params": {...the arguments...},
     "splits": {split name: {"indices": [row, ...], ...lists aligned with indices}}}

``indices`` are row positions in that split of the returned data set, sorted
ascending. Kind-specific fields:

* ``spurious_patch``: top level ``patch_mask`` (size x size 0/1 rows: 1 where the
  patch paints), ``image_shape`` ([C, H, W] after planting), ``converted_to_rgb``;
  per split ``rule`` ("target_class" or "all_classes"), ``fraction`` and ``boxes``
  ([row0, col0, row1, col1], exclusive ends, in pixels, one per index). The painted
  pixels of row ``indices[j]`` are ``patch_mask`` placed at ``boxes[j]``; see
  :func:`patch_mask`.
* ``mislabels``: ``mapping`` (pairwise mode: {"source class index": target index}),
  ``candidates``; split ``train`` has ``original_labels``, ``new_labels`` and
  ``fraction`` (flipped / candidates).
* ``trigger_token``: per split ``rule``, ``fraction`` and ``spans`` ([start, end]
  character offsets of the token in the new text, one per index).

Use :func:`save_ground_truth` / :func:`load_ground_truth` to store it next to a run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import numpy as np
import torch
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from debuggable.data._common import check_fraction, check_kwargs, check_seed, to_jsonable
from debuggable.data.base import Dataset, DatasetSplits, ImageArrayDataset, TextDataset
from debuggable.errors import DebuggableError
from debuggable.run.atomic import atomic_write_bytes

GROUND_TRUTH_VERSION = 1
PatchPosition = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center", "random"]
PatchShape = Literal["square", "circle", "cross", "checker"]


class PatchSpec(BaseModel):
    """What a spurious patch looks like and where it goes.

    Attributes:
        shape: ``"square"`` (filled), ``"circle"`` (filled disc), ``"cross"`` (a plus
            sign whose bars are ``max(1, size // 3)`` pixels thick) or ``"checker"``
            (``cell``-pixel squares alternating ``colour`` and its complement
            ``1 - colour``; every pixel of the square is painted).
        size: side of the patch's bounding square, in pixels.
        colour: grayscale intensity in [0, 1], or an RGB triple of values in [0, 1]
            (also accepted as ``color``). An RGB colour on grayscale images turns every
            split into 3-channel images (the gray value copied to R, G and B) so the
            patch keeps its colour; a grayscale colour on RGB images paints all
            channels. uint8 images get ``round(255 * colour)``.
        position: ``"top_left"``, ``"top_right"``, ``"bottom_left"``,
            ``"bottom_right"``, ``"center"``, an explicit ``(row, col)`` of the
            patch's top-left pixel, or ``"random"``: a seeded uniform position per image.
        margin: gap in pixels between a corner patch and the image border.
        cell: side of a checker square, in pixels (only used by ``"checker"``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    shape: PatchShape = "square"
    size: int = Field(4, ge=1)
    colour: Union[float, tuple[float, float, float]] = Field(
        1.0, validation_alias=AliasChoices("colour", "color")
    )
    position: Union[PatchPosition, tuple[int, int]] = "bottom_right"
    margin: int = Field(1, ge=0)
    cell: int = Field(1, ge=1)

    @field_validator("colour")
    @classmethod
    def _colour_in_range(cls, v):
        values = v if isinstance(v, tuple) else (v,)
        if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in values):
            raise ValueError("colour values must lie in [0, 1]")
        return v

    @field_validator("position")
    @classmethod
    def _position_non_negative(cls, v):
        if isinstance(v, tuple) and (v[0] < 0 or v[1] < 0):
            raise ValueError("an explicit (row, col) position must be non-negative")
        return v

    @property
    def is_rgb(self) -> bool:
        return isinstance(self.colour, tuple)

    def pattern(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The patch as ``(values, mask)``.

        Args:
            channels: C of the images it is painted on.

        Returns:
            ``values``: (C, size, size) float64 colours in [0, 1]; ``mask``:
            (size, size) bool, True where the patch paints.
        """
        s = self.size
        colour = np.asarray(self.colour if self.is_rgb else (self.colour,) * channels, dtype=np.float64)
        if colour.shape[0] != channels:
            raise DebuggableError(
                f"patch colour {self.colour!r} has {colour.shape[0]} values but the images have {channels} channels; "
                f"expected a grayscale intensity or an RGB triple for 1- or 3-channel images."
            )
        rr, cc = np.mgrid[0:s, 0:s]
        values = np.broadcast_to(colour[:, None, None], (channels, s, s)).copy()
        if self.shape == "square":
            mask = np.ones((s, s), dtype=bool)
        elif self.shape == "circle":
            centre = (s - 1) / 2.0
            mask = (rr - centre) ** 2 + (cc - centre) ** 2 <= (s / 2.0) ** 2
        elif self.shape == "cross":
            t = max(1, s // 3)
            lo = (s - t) // 2
            band_r = (rr >= lo) & (rr < lo + t)
            band_c = (cc >= lo) & (cc < lo + t)
            mask = band_r | band_c
        else:  # checker
            mask = np.ones((s, s), dtype=bool)
            off = ((rr // self.cell) + (cc // self.cell)) % 2 == 1
            values[:, off] = 1.0 - colour[:, None]
        return values, mask


_PATCH_EXPECTED = {
    "shape": "'square', 'circle', 'cross' or 'checker'",
    "size": "a positive integer (pixels)",
    "colour": "a grayscale intensity in [0, 1] or an RGB triple of values in [0, 1]",
    "position": "'top_left', 'top_right', 'bottom_left', 'bottom_right', 'center', 'random' "
                "or a (row, col) pair of non-negative integers",
    "margin": "a non-negative integer (pixels)",
    "cell": "a positive integer (pixels)",
}


def _as_patch_spec(patch: Any) -> PatchSpec:
    """``patch`` (a PatchSpec or a mapping of its fields) as a PatchSpec."""
    if isinstance(patch, PatchSpec):
        return patch
    if not isinstance(patch, Mapping):
        raise DebuggableError(f"patch must be a PatchSpec or a mapping of its fields, got {patch!r}.")
    patch = dict(patch)
    try:
        return PatchSpec.model_validate(patch)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err.get("loc", ("patch",))[0])
        if err.get("type") == "extra_forbidden":
            raise DebuggableError(
                f"patch.{field} is not a patch setting; valid settings are {', '.join(PatchSpec.model_fields)}."
            ) from None
        key = field
        if field in ("colour", "color"):
            field, key = "colour", "color" if "color" in patch else "colour"
        expected = _PATCH_EXPECTED.get(field, "a valid value")
        raise DebuggableError(f"patch.{key}={patch.get(key)!r} is invalid; expected {expected}.") from None


# ----------------------------------------------------------------------------- shared helpers


def _class_index(splits: DatasetSplits, value: Any, argname: str) -> int:
    names = splits.class_names
    if isinstance(value, str):
        if value in names:
            return names.index(value)
        raise DebuggableError(f"{argname}={value!r} is not a class; expected one of {names} or an index 0..{len(names) - 1}.")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < len(names):
        raise DebuggableError(f"{argname}={value!r} is not a class; expected an index 0..{len(names) - 1} or one of {names}.")
    return int(value)


def _split_rng(seed: int, kind: str, split: str) -> np.random.Generator:
    """An independent, order-free stream per (seed, bug kind, split)."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), zlib.crc32(split.encode())])


def _check_new_kind(splits: DatasetSplits, kind: str, modality: str) -> None:
    if not isinstance(splits, DatasetSplits):
        raise DebuggableError(f"splits must be a DatasetSplits, got {type(splits).__name__}.")
    if splits.modality != modality:
        raise DebuggableError(f"{kind} needs {modality} data, but {splits.name!r} holds {splits.modality} data.")
    if kind in splits.planted:
        raise DebuggableError(f"{splits.name!r} already carries a planted {kind!r}; plant each kind at most once.")


def _check_split_names(splits: DatasetSplits, names: Any, argname: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise DebuggableError(f"{argname} is empty; expected one or more of {sorted(splits.splits)}.")
    for n in names:
        if n not in splits.splits:
            raise DebuggableError(f"{argname} names split {n!r}, which does not exist; valid splits are {sorted(splits.splits)}.")
    return list(dict.fromkeys(names))


def _choose_rows(labels: np.ndarray, classes: Sequence[int], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """round(fraction * n_c) rows of each class c in ``classes``, sorted."""
    chosen = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        k = int(round(fraction * rows.size))
        if k:
            chosen.append(rng.choice(rows, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def _with_source(ds: Dataset, kind: str) -> dict:
    src = dict(getattr(ds, "source", {}) or {})
    src["planted"] = list(src.get("planted", [])) + [kind]
    return src


def _result(splits: DatasetSplits, new_splits: dict[str, Dataset], kind: str, truth: dict) -> DatasetSplits:
    planted = copy.deepcopy(splits.planted)
    planted[kind] = to_jsonable(truth)
    json.dumps(planted)  # fail here, not when saving, if anything is not JSON
    return DatasetSplits(name=splits.name, splits=new_splits, class_names=list(splits.class_names), planted=planted)


# ----------------------------------------------------------------------------- spurious patch


def _patch_box(spec: PatchSpec, h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
    s, m = spec.size, spec.margin
    pos = spec.position
    if isinstance(pos, tuple):
        return int(pos[0]), int(pos[1])
    if pos == "random":
        return int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    table = {
        "top_left": (m, m),
        "top_right": (m, w - s - m),
        "bottom_left": (h - s - m, m),
        "bottom_right": (h - s - m, w - s - m),
        "center": ((h - s) // 2, (w - s) // 2),
    }
    return table[pos]


def plant_spurious_patch(
    splits: DatasetSplits,
    *,
    target_class: int | str,
    train_fraction: float = 0.8,
    test_fraction: float = 0.5,
    patch: PatchSpec | Mapping[str, Any] | None = None,
    seed: int = 0,
    splits_to_patch: Sequence[str] = ("train", "val", "test"),
) -> DatasetSplits:
    """Paint a patch (a watermark) that spuriously predicts ``target_class``.

    In ``train`` and ``val``, ``round(train_fraction * n)`` of the n images of the
    target class get the patch; in every other split named in ``splits_to_patch``
    (``test`` and any shifted test split), ``round(test_fraction * n_c)`` images of
    *each* class c get it, so a model's reliance on the patch can be measured.
    Rows are drawn with a generator seeded by ``(seed, split)``.

    Args:
        splits: image data; not modified.
        target_class: index or name of the class the patch correlates with.
        train_fraction: share of the target class's train/val images patched, [0, 1].
        test_fraction: share of each class's test images patched, [0, 1].
        patch: a :class:`PatchSpec` or a mapping of its fields (default: a 4-pixel
            white square in the bottom-right corner).
        seed: non-negative integer.
        splits_to_patch: which splits to patch.

    Returns:
        New :class:`DatasetSplits`; ``planted["spurious_patch"]`` holds the ground
        truth (see the module docstring), patched images keep their dtype.
    """
    _check_new_kind(splits, "spurious_patch", "image")
    target = _class_index(splits, target_class, "target_class")
    train_fraction = check_fraction("train_fraction", train_fraction, allow_zero=True, allow_one=True)
    test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=True, allow_one=True)
    spec = _as_patch_spec(PatchSpec() if patch is None else patch)
    seed = check_seed(seed)
    names = _check_split_names(splits, splits_to_patch, "splits_to_patch")
    for name, ds in splits.splits.items():
        if not isinstance(ds, ImageArrayDataset):
            raise DebuggableError(
                f"spurious_patch needs in-memory images (ImageArrayDataset), but split {name!r} is a {type(ds).__name__}."
            )
    c, h, w = splits.train.image_shape
    convert = spec.is_rgb and c == 1
    if spec.is_rgb and c not in (1, 3):
        raise DebuggableError(f"patch colour {spec.colour!r} is RGB but the images have {c} channels; expected 1 or 3.")
    channels = 3 if convert else c
    if isinstance(spec.position, tuple):
        r, col = spec.position
        if r + spec.size > h or col + spec.size > w:
            raise DebuggableError(
                f"patch.position={spec.position} with size {spec.size} does not fit {h}x{w} images; "
                f"expected row <= {h - spec.size} and col <= {w - spec.size}."
            )
    else:
        need = spec.size + (2 * spec.margin if spec.position in ("top_left", "top_right", "bottom_left", "bottom_right") else 0)
        if need > min(h, w):
            raise DebuggableError(
                f"patch.size={spec.size} (margin {spec.margin}) does not fit {h}x{w} images; expected a size of at most "
                f"{min(h, w) - (need - spec.size)}."
            )
    values, mask = spec.pattern(channels)
    mask_t = torch.as_tensor(mask)

    new_splits: dict[str, Dataset] = {}
    split_truth: dict[str, dict] = {}
    for name, ds in splits.splits.items():
        assert isinstance(ds, ImageArrayDataset)
        images = ds.images
        if convert:
            images = images.repeat(1, 3, 1, 1)
        if name not in names:
            if convert:
                new_splits[name] = ImageArrayDataset(
                    images, ds.labels.copy(), ds.class_names, ds.name, ds.source, channels_first=True
                )
            else:
                new_splits[name] = ds
            continue
        rng = _split_rng(seed, "spurious_patch", name)
        if name in ("train", "val"):
            rule, fraction, rows = "target_class", train_fraction, _choose_rows(ds.labels, [target], train_fraction, rng)
        else:
            rule, fraction = "all_classes", test_fraction
            rows = _choose_rows(ds.labels, range(splits.train.num_classes), test_fraction, rng)
        images = images.clone()
        if images.dtype == torch.uint8:
            paint = torch.as_tensor(np.rint(values * 255.0).astype(np.uint8))
        else:
            paint = torch.as_tensor(values).to(images.dtype)
        boxes = []
        for i in rows:
            r0, c0 = _patch_box(spec, h, w, rng)
            region = images[i, :, r0: r0 + spec.size, c0: c0 + spec.size]
            images[i, :, r0: r0 + spec.size, c0: c0 + spec.size] = torch.where(mask_t, paint, region)
            boxes.append([r0, c0, r0 + spec.size, c0 + spec.size])
        new_splits[name] = ImageArrayDataset(
            images, ds.labels.copy(), ds.class_names, ds.name, _with_source(ds, "spurious_patch"), channels_first=True
        )
        split_truth[name] = {"rule": rule, "fraction": fraction, "indices": rows.tolist(), "boxes": boxes}
    truth = {
        "kind": "spurious_patch",
        "version": GROUND_TRUTH_VERSION,
        "params": {
            "target_class": target,
            "target_class_name": splits.class_names[target],
            "train_fraction": train_fraction,
            "test_fraction": test_fraction,
            "patch": spec.model_dump(mode="json"),
            "seed": seed,
            "splits_to_patch": names,
        },
        "patch_mask": mask.astype(int).tolist(),
        "image_shape": [channels, h, w],
        "converted_to_rgb": bool(convert),
        "splits": split_truth,
    }
    return _result(splits, new_splits, "spurious_patch", truth)


def _patch_truth(ground_truth: Mapping[str, Any]) -> Mapping[str, Any]:
    if "spurious_patch" in ground_truth and "patch_mask" not in ground_truth:
        ground_truth = ground_truth["spurious_patch"]
    if "patch_mask" not in ground_truth or "splits" not in ground_truth:
        raise DebuggableError(
            "ground_truth is not a spurious_patch ground truth; expected splits.planted, its 'spurious_patch' entry "
            "or load_ground_truth(path)."
        )
    return ground_truth


def patch_masks(ground_truth: Mapping[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every patched row of ``split`` and the pixels its patch painted.

    Args:
        ground_truth: ``splits.planted`` (or its ``"spurious_patch"`` entry, or what
            :func:`load_ground_truth` returns).
        split: a split name.

    Returns:
        ``(indices, masks)``: (M,) int64 rows and (M, H, W) bool masks, True on painted
        pixels (the same for every channel).
    """
    gt = _patch_truth(ground_truth)
    if split not in gt["splits"]:
        return np.zeros(0, dtype=np.int64), np.zeros((0, *gt["image_shape"][1:]), dtype=bool)
    info = gt["splits"][split]
    pm = np.asarray(gt["patch_mask"], dtype=bool)
    _, h, w = gt["image_shape"]
    masks = np.zeros((len(info["indices"]), h, w), dtype=bool)
    for j, (r0, c0, r1, c1) in enumerate(info["boxes"]):
        masks[j, r0:r1, c0:c1] = pm
    return np.asarray(info["indices"], dtype=np.int64), masks


def patch_mask(ground_truth: Mapping[str, Any], split: str, index: int) -> np.ndarray:
    """(H, W) bool: the pixels the patch painted on row ``index`` of ``split``
    (all False when that row carries no patch)."""
    gt = _patch_truth(ground_truth)
    _, h, w = gt["image_shape"]
    out = np.zeros((h, w), dtype=bool)
    info = gt["splits"].get(split)
    if info is None:
        return out
    try:
        j = info["indices"].index(int(index))
    except ValueError:
        return out
    r0, c0, r1, c1 = info["boxes"][j]
    out[r0:r1, c0:c1] = np.asarray(gt["patch_mask"], dtype=bool)
    return out


# ----------------------------------------------------------------------------- mislabels


def plant_mislabels(
    splits: DatasetSplits,
    *,
    fraction: float = 0.1,
    seed: int = 0,
    classes: Sequence[int | str] | None = None,
    mode: Literal["random", "pairwise"] = "random",
) -> DatasetSplits:
    """Flip the labels of a fraction of the training examples.

    Candidates are the ``train`` rows whose label is in ``classes`` (all classes when
    None); exactly ``round(fraction * n_candidates)`` of them, drawn with a seeded
    generator, get a new label:

    * ``"random"``: uniform over the other classes of ``classes`` (of all classes
      when ``classes`` has fewer than two entries);
    * ``"pairwise"``: each class goes to the next one in ``classes`` (cyclically; for
      one class, to the next class index modulo K), a systematic confusion.

    Args:
        splits: the data (image or text); not modified.
        fraction: share of candidates flipped, in (0, 1].
        seed: non-negative integer.
        classes: class indices or names whose examples may be flipped.
        mode: ``"random"`` or ``"pairwise"``.

    Returns:
        New :class:`DatasetSplits` with ``planted["mislabels"]`` (see module docstring).
    """
    _check_new_kind(splits, "mislabels", splits.modality)
    fraction = check_fraction("fraction", fraction, allow_one=True)
    seed = check_seed(seed)
    if mode not in ("random", "pairwise"):
        raise DebuggableError(f"mode={mode!r} is not a mislabelling mode; expected 'random' or 'pairwise'.")
    k = len(splits.class_names)
    if k < 2:
        raise DebuggableError(f"mislabels needs at least two classes, but {splits.name!r} has {k}.")
    if classes is None:
        cls = list(range(k))
    else:
        if isinstance(classes, (str, int)):
            classes = [classes]
        cls = list(dict.fromkeys(_class_index(splits, c, "classes") for c in classes))
        if not cls:
            raise DebuggableError(f"classes is empty; expected None or class indices/names from {splits.class_names}.")
    train = splits.train
    rng = _split_rng(seed, "mislabels", "train")
    candidates = np.flatnonzero(np.isin(train.labels, cls))
    n_flip = int(round(fraction * candidates.size))
    if n_flip == 0:
        raise DebuggableError(
            f"fraction={fraction:g} of {candidates.size} candidate training examples rounds to 0 flips; expected a "
            f"larger fraction."
        )
    rows = np.sort(rng.choice(candidates, size=n_flip, replace=False)).astype(np.int64)
    original = train.labels[rows].copy()
    targets = cls if len(cls) >= 2 else list(range(k))
    mapping: dict[str, int] = {}
    if mode == "pairwise":
        if len(cls) >= 2:
            mapping = {str(c): int(cls[(i + 1) % len(cls)]) for i, c in enumerate(cls)}
        else:
            mapping = {str(cls[0]): int((cls[0] + 1) % k)}
        new = np.asarray([mapping[str(int(o))] for o in original], dtype=np.int64)
    else:
        new = np.empty_like(original)
        for j, o in enumerate(original):
            choices = [t for t in targets if t != o]
            new[j] = choices[int(rng.integers(len(choices)))]
    labels = train.labels.copy()
    labels[rows] = new
    src = _with_source(train, "mislabels")
    if isinstance(train, ImageArrayDataset):
        new_train: Dataset = ImageArrayDataset(
            train.images, labels, train.class_names, train.name, src, channels_first=True
        )
    elif isinstance(train, TextDataset):
        new_train = TextDataset(train.texts, labels, train.class_names, train.name, src)
    else:
        raise DebuggableError(f"mislabels supports ImageArrayDataset and TextDataset splits, got {type(train).__name__}.")
    new_splits = dict(splits.splits)
    new_splits["train"] = new_train
    truth = {
        "kind": "mislabels",
        "version": GROUND_TRUTH_VERSION,
        "params": {
            "fraction": fraction,
            "seed": seed,
            "classes": None if classes is None else cls,
            "mode": mode,
        },
        "mapping": mapping,
        "candidates": int(candidates.size),
        "splits": {
            "train": {
                "indices": rows.tolist(),
                "original_labels": original.tolist(),
                "new_labels": new.tolist(),
                "fraction": n_flip / candidates.size,
            }
        },
    }
    return _result(splits, new_splits, "mislabels", truth)


# ----------------------------------------------------------------------------- trigger token


def _insert_token(text: str, token: str, position: str, rng: np.random.Generator) -> tuple[str, int]:
    """``text`` with ``token`` inserted as a separate word; returns it and the token's start."""
    if position == "random":
        starts = [m.start() for m in re.finditer(r"\S+", text)]
        j = int(rng.integers(0, len(starts) + 1))
        if j < len(starts):
            p = starts[j]
            return text[:p] + token + " " + text[p:], p
        position = "end"
    if position == "start":
        return (token + " " + text if text else token), 0
    if not text:
        return token, 0
    return text + " " + token, len(text) + 1


def plant_trigger_token(
    splits: DatasetSplits,
    *,
    token: str,
    target_class: int | str,
    train_fraction: float = 0.8,
    test_fraction: float = 0.5,
    position: Literal["start", "end", "random"] = "start",
    seed: int = 0,
    splits_to_patch: Sequence[str] = ("train", "val", "test"),
) -> DatasetSplits:
    """Insert a trigger token that spuriously predicts ``target_class`` into texts.

    In ``train`` and ``val``, ``round(train_fraction * n)`` of the target class's n
    texts get the token; in every other split named in ``splits_to_patch``,
    ``round(test_fraction * n_c)`` texts of *each* class c get it. The token is
    inserted as its own word (separated by one space) at the start, the end, or
    before a seeded random word. It must not occur anywhere in the data beforehand
    (compared case-insensitively), so the ground truth is exact.

    Args:
        splits: text data; not modified.
        token: the trigger, e.g. ``"zxq"``; no leading/trailing whitespace.
        target_class: index or name of the class it correlates with.
        train_fraction: share of the target class's train/val texts, [0, 1].
        test_fraction: share of each class's test texts, [0, 1].
        position: ``"start"``, ``"end"`` or ``"random"``.
        seed: non-negative integer.
        splits_to_patch: which splits get the token.

    Returns:
        New :class:`DatasetSplits` with ``planted["trigger_token"]`` (see module docstring).
    """
    _check_new_kind(splits, "trigger_token", "text")
    if not isinstance(token, str) or not token.strip() or token != token.strip() or "\n" in token:
        raise DebuggableError(f"token={token!r} must be a non-empty string without surrounding whitespace or newlines.")
    target = _class_index(splits, target_class, "target_class")
    train_fraction = check_fraction("train_fraction", train_fraction, allow_zero=True, allow_one=True)
    test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=True, allow_one=True)
    if position not in ("start", "end", "random"):
        raise DebuggableError(f"position={position!r} is not a token position; expected 'start', 'end' or 'random'.")
    seed = check_seed(seed)
    names = _check_split_names(splits, splits_to_patch, "splits_to_patch")
    low = token.lower()
    for name, ds in splits.splits.items():
        if not isinstance(ds, TextDataset):
            raise DebuggableError(f"trigger_token needs TextDataset splits, but split {name!r} is a {type(ds).__name__}.")
        hits = [t for t in ds.texts if low in t.lower()]
        if hits:
            raise DebuggableError(
                f"token={token!r} already occurs in {len(hits)} texts of split {name!r} (e.g. {hits[0][:60]!r}); "
                f"expected a token absent from the data so the ground truth is exact."
            )
    new_splits: dict[str, Dataset] = {}
    split_truth: dict[str, dict] = {}
    for name, ds in splits.splits.items():
        assert isinstance(ds, TextDataset)
        if name not in names:
            new_splits[name] = ds
            continue
        rng = _split_rng(seed, "trigger_token", name)
        if name in ("train", "val"):
            rule, fraction, rows = "target_class", train_fraction, _choose_rows(ds.labels, [target], train_fraction, rng)
        else:
            rule, fraction = "all_classes", test_fraction
            rows = _choose_rows(ds.labels, range(ds.num_classes), test_fraction, rng)
        texts = list(ds.texts)
        spans = []
        for i in rows:
            texts[i], start = _insert_token(texts[i], token, position, rng)
            spans.append([start, start + len(token)])
        new_splits[name] = TextDataset(texts, ds.labels.copy(), ds.class_names, ds.name, _with_source(ds, "trigger_token"))
        split_truth[name] = {"rule": rule, "fraction": fraction, "indices": rows.tolist(), "spans": spans}
    truth = {
        "kind": "trigger_token",
        "version": GROUND_TRUTH_VERSION,
        "params": {
            "token": token,
            "target_class": target,
            "target_class_name": splits.class_names[target],
            "train_fraction": train_fraction,
            "test_fraction": test_fraction,
            "position": position,
            "seed": seed,
            "splits_to_patch": names,
        },
        "splits": split_truth,
    }
    return _result(splits, new_splits, "trigger_token", truth)


# ----------------------------------------------------------------------------- dispatch and storage

PLANTERS = {
    "spurious_patch": plant_spurious_patch,
    "mislabels": plant_mislabels,
    "trigger_token": plant_trigger_token,
}


def list_planters() -> list[str]:
    """The bug kinds :func:`plant` accepts, sorted."""
    return sorted(PLANTERS)


def plant(splits: DatasetSplits, kind: str, **params: Any) -> DatasetSplits:
    """Plant the bug named ``kind`` (``"spurious_patch"``, ``"mislabels"`` or
    ``"trigger_token"``) with keyword ``params``, as a config file would name it.

    Returns:
        What the planter returns: new :class:`DatasetSplits` with ``planted[kind]``.
    """
    if kind not in PLANTERS:
        raise DebuggableError(f"kind={kind!r} is not a planted bug; valid kinds are {', '.join(PLANTERS)}.")
    func = PLANTERS[kind]
    check_kwargs(f"plant({kind!r})", func, params, skip=("splits",))
    return func(splits, **params)


def save_ground_truth(splits: DatasetSplits | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the planted-bug ground truth as JSON (atomically: temporary file, then rename).

    Args:
        splits: a :class:`DatasetSplits` (its ``planted`` is written) or a planted dict.
        path: the JSON file to write; parent folders are created.

    Returns:
        The path. The file holds ``{kind: ground truth}`` (``{}`` for clean data).
    """
    planted = splits.planted if isinstance(splits, DatasetSplits) else splits
    if not isinstance(planted, Mapping):
        raise DebuggableError(f"splits must be a DatasetSplits or a planted-bug dict, got {type(splits).__name__}.")
    try:
        text = json.dumps(to_jsonable(planted), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise DebuggableError(f"the planted-bug ground truth is not JSON-serialisable ({exc}).") from exc
    return atomic_write_bytes(Path(path), text.encode("utf-8"))


def load_ground_truth(path: str | os.PathLike) -> dict[str, Any]:
    """Read what :func:`save_ground_truth` wrote: ``{kind: ground truth}``."""
    path = Path(path)
    if not path.is_file():
        raise DebuggableError(f"ground-truth file {str(path)!r} does not exist; expected a JSON file from save_ground_truth.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DebuggableError(f"ground-truth file {str(path)!r} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DebuggableError(f"ground-truth file {str(path)!r} does not hold a {{kind: ground truth}} object.")
    return data
