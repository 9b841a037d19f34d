"""The uniform dataset interface every loader returns.

A :class:`Dataset` is an indexable, labelled collection of one modality:

* ``"image"``: items are float32 tensors of shape (C, H, W) with values in [0, 1];
* ``"text"``: items are Python strings.

Loaders return a :class:`DatasetSplits`: named splits (always ``train``, ``val`` and
``test``; sometimes more, e.g. shifted test domains) that share one list of class
names, plus the ground truth of any planted bug.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from debuggable.errors import DebuggableError

Modality = Literal["image", "text"]


def _check_labels(labels: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DebuggableError(f"{name}: labels must be one-dimensional, got shape {labels.shape}.")
    if labels.size and not (np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_):
        raise DebuggableError(
            f"{name}: labels must be integers 0..{n_classes - 1}, got dtype {labels.dtype} "
            f"(e.g. {labels.flat[0]!r}); map names to indices first."
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)):
            raise DebuggableError(f"{name}: labels must be integers 0..{n_classes - 1}, got NaN or infinite values.")
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise DebuggableError(f"{name}: labels must be integers 0..{n_classes - 1}, got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DebuggableError(
            f"{name}: label {bad} is out of range; expected integers 0..{n_classes - 1} "
            f"for {n_classes} classes."
        )
    return labels


class Dataset(ABC):
    """A labelled collection of images or texts.

    Subclasses set ``modality``, ``class_names`` and ``labels`` (and optionally
    ``source``) and implement :meth:`__getitem__`; :meth:`batch` has a default that
    stacks items.

    Attributes:
        name: what the data set is (e.g. ``"animal_mnist/train"``).
        modality: ``"image"`` or ``"text"``.
        class_names: K names; label k means ``class_names[k]``.
        labels: (N,) int64 array with values in 0..K-1.
        source: JSON-serialisable description of where the examples come from (origin
            file or corpus, split rule, planted bugs), for reports; empty when unknown.
    """

    name: str
    modality: Modality
    class_names: list[str]
    labels: np.ndarray
    source: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Item ``index`` as ``(x, label)``."""

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        for i in range(len(self)):
            yield self[i]

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[Any, torch.Tensor]:
        """Items ``indices`` as one batch.

        Returns:
            ``(x, y)``: for images ``x`` is a float32 tensor (B, C, H, W) in [0, 1], for
            text a list of B strings; ``y`` is an int64 tensor (B,).
        """
        items = [self[int(i)] for i in indices]
        xs = [x for x, _ in items]
        y = torch.as_tensor([label for _, label in items], dtype=torch.int64)
        if self.modality == "image":
            return torch.stack(xs), y
        return xs, y

    def iter_batches(self, batch_size: int, start: int = 0, stop: int | None = None):
        """Yield ``(start_index, x, y)`` for consecutive batches of rows start..stop."""
        if int(batch_size) < 1:
            raise DebuggableError(f"{self.name}: batch_size must be a positive integer, got {batch_size!r}.")
        stop = len(self) if stop is None else stop
        for lo in range(start, stop, batch_size):
            idx = np.arange(lo, min(lo + batch_size, stop))
            x, y = self.batch(idx)
            yield lo, x, y

    def class_counts(self) -> np.ndarray:
        """(K,) number of examples per class."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary: name, modality, size, class counts and source."""
        return {
            "name": self.name,
            "modality": self.modality,
            "n": len(self),
            "class_counts": [int(c) for c in self.class_counts()],
            "source": dict(getattr(self, "source", {}) or {}),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.num_classes})"


class ImageArrayDataset(Dataset):
    """Images held in memory as one array.

    Args:
        images: (N, H, W), (N, H, W, C) or (N, C, H, W) array or tensor; uint8 is
            scaled by 1/255, floats must already lie in [0, 1]. A 3-D array is
            grayscale; a 4-D array whose last axis has 1, 3 or 4 entries is taken as
            channels-last unless its second axis also has 1, 3 or 4 entries and no
            more than the last (so (N, 4, 5, 3) is channels-last, (N, 3, 4, 4) is not).
        labels: (N,) integers in 0..K-1.
        class_names: the K class names.
        name: a label for messages and reports.
        source: where the images come from (JSON-serialisable), for reports.
        channels_first: for 4-D input, True means (N, C, H, W), False (N, H, W, C),
            None guesses as described above.
    """

    modality: Modality = "image"

    def __init__(
        self,
        images,
        labels,
        class_names: Sequence[str],
        name: str = "images",
        source: Mapping[str, Any] | None = None,
        *,
        channels_first: bool | None = None,
    ):
        self.name = name
        self.source = dict(source or {})
        self.class_names = [str(c) for c in class_names]
        if len(self.class_names) < 1:
            raise DebuggableError(f"{name}: class_names must name at least one class.")
        if isinstance(images, torch.Tensor):
            x = images.detach().cpu()
        else:
            arr = np.asarray(images)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise DebuggableError(f"{name}: images must be a numeric array, got dtype {arr.dtype}.")
            x = torch.as_tensor(np.ascontiguousarray(arr))
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and channels_first is False:
            x = x.permute(0, 3, 1, 2)
        elif (
            x.ndim == 4 and channels_first is None and x.shape[-1] in (1, 3, 4)
            and (x.shape[1] not in (1, 3, 4) or x.shape[-1] < x.shape[1])
        ):
            x = x.permute(0, 3, 1, 2)
        if x.ndim != 4:
            raise DebuggableError(
                f"{name}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {tuple(x.shape)}."
            )
        if x.dtype == torch.uint8:
            self._scale = 1.0 / 255.0
        elif x.is_floating_point():
            self._scale = None
            if x.numel():
                if not torch.isfinite(x).all():
                    raise DebuggableError(f"{name}: images contain NaN or infinite values.")
                lo, hi = float(x.min()), float(x.max())
                if lo < 0.0 or hi > 1.0:
                    raise DebuggableError(
                        f"{name}: float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]."
                    )
        else:
            raise DebuggableError(f"{name}: images must be uint8 or float, got {x.dtype}.")
        self.images = x.contiguous()
        self.labels = _check_labels(labels, len(self.class_names), name)
        if self.labels.shape[0] != self.images.shape[0]:
            raise DebuggableError(
                f"{name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels; expected one label per image."
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every item."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if self._scale is not None:
            return x.to(torch.float32) * self._scale
        return x.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._to_float(self.images[index]), int(self.labels[index])

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self._to_float(self.images[idx]), torch.as_tensor(self.labels[idx.numpy()])

    def subset(self, indices, name: str | None = None) -> "ImageArrayDataset":
        """A new dataset of rows ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageArrayDataset(
            self.images[torch.as_tensor(idx)], self.labels[idx], self.class_names, name or self.name, self.source,
            channels_first=True,
        )


class TextDataset(Dataset):
    """Texts held in memory as a list of strings.

    Args:
        texts: N strings.
        labels: (N,) integers in 0..K-1.
        class_names: the K class names.
        name: a label for messages and reports.
        source: where the texts come from (JSON-serialisable), for reports.
    """

    modality: Modality = "text"

    def __init__(
        self,
        texts: Sequence[str],
        labels,
        class_names: Sequence[str],
        name: str = "texts",
        source: Mapping[str, Any] | None = None,
    ):
        self.name = name
        self.source = dict(source or {})
        self.class_names = [str(c) for c in class_names]
        if len(self.class_names) < 1:
            raise DebuggableError(f"{name}: class_names must name at least one class.")
        if isinstance(texts, str):
            raise DebuggableError(f"{name}: texts must be a sequence of strings, got one string {texts[:40]!r}.")
        self.texts = [str(t) for t in texts]
        self.labels = _check_labels(labels, len(self.class_names), name)
        if self.labels.shape[0] != len(self.texts):
            raise DebuggableError(
                f"{name}: {len(self.texts)} texts but {self.labels.shape[0]} labels; expected one label per text."
            )

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], int(self.labels[index])

    def batch(self, indices) -> tuple[list[str], torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        return [self.texts[i] for i in idx], torch.as_tensor(self.labels[idx])

    def subset(self, indices, name: str | None = None) -> "TextDataset":
        """A new dataset of rows ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return TextDataset(
            [self.texts[i] for i in idx], self.labels[idx], self.class_names, name or self.name, self.source
        )


@dataclass
class DatasetSplits:
    """Named splits of one data set plus what is known about planted bugs.

    Attributes:
        name: the data set's name (e.g. ``"animal_mnist"``).
        splits: split name -> :class:`Dataset`; always has ``train``, ``val``, ``test``.
        class_names: shared by every split.
        planted: ground truth of planted bugs (JSON-serialisable), empty for clean data.
    """

    name: str
    splits: dict[str, Dataset]
    class_names: list[str]
    planted: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        self.splits = dict(self.splits)
        for required in ("train", "val", "test"):
            if required not in self.splits:
                raise DebuggableError(f"{self.name}: split {required!r} is missing; got {sorted(self.splits)}.")
        modality = self.splits["train"].modality
        shape = getattr(self.splits["train"], "image_shape", None)
        for split_name, ds in self.splits.items():
            if len(ds) == 0:
                raise DebuggableError(f"{self.name}: split {split_name!r} is empty; every split needs examples.")
            if ds.class_names != self.class_names:
                raise DebuggableError(
                    f"{self.name}: split {split_name!r} has class names {ds.class_names}, expected {self.class_names}."
                )
            if ds.modality != modality:
                raise DebuggableError(
                    f"{self.name}: split {split_name!r} holds {ds.modality} data but 'train' holds {modality} data."
                )
            if modality == "image" and getattr(ds, "image_shape", None) != shape:
                raise DebuggableError(
                    f"{self.name}: split {split_name!r} has images of shape {getattr(ds, 'image_shape', None)} "
                    f"(C, H, W) but 'train' has {shape}; every split needs one image shape."
                )

    def __getitem__(self, split: str) -> Dataset:
        try:
            return self.splits[split]
        except KeyError:
            raise DebuggableError(f"{self.name}: no split {split!r}; valid splits are {sorted(self.splits)}.") from None

    @property
    def train(self) -> Dataset:
        return self.splits["train"]

    @property
    def val(self) -> Dataset:
        return self.splits["val"]

    @property
    def test(self) -> Dataset:
        return self.splits["test"]

    @property
    def modality(self) -> Modality:
        return self.train.modality

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary for reports: name, modality, class names, each
        split's size, class counts and source, and the kinds of planted bugs."""
        out: dict[str, Any] = {
            "name": self.name,
            "modality": self.modality,
            "class_names": list(self.class_names),
            "splits": {name: ds.describe() for name, ds in self.splits.items()},
            "planted": sorted(self.planted),
        }
        if self.modality == "image":
            out["image_shape"] = list(getattr(self.train, "image_shape"))
        return out
