"""The uniform dataset interface: validation, batching, sources, summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from debuggable.data import DatasetSplits, ImageArrayDataset, TextDataset
from debuggable.errors import DebuggableError


def _images(n=6, c=1, h=4, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def test_uint8_images_are_scaled_and_batched():
    x = _images()
    ds = ImageArrayDataset(x, np.arange(6) % 2, ["a", "b"], name="toy", source={"origin": "test"})
    xb, yb = ds.batch([0, 3])
    assert xb.shape == (2, 1, 4, 5) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert torch.allclose(xb[1], torch.as_tensor(x[3], dtype=torch.float32) / 255)
    sub = ds.subset([1, 2], name="toy/sub")
    assert sub.source == {"origin": "test"} and len(sub) == 2
    assert [lo for lo, _, _ in ds.iter_batches(4)] == [0, 4]


def test_channels_last_and_non_contiguous_inputs():
    x = _images(c=3).transpose(0, 2, 3, 1)[:, ::-1]  # (N, H, W, C) with a negative stride
    ds = ImageArrayDataset(x, np.zeros(6, dtype=int), ["a"])
    assert ds.image_shape == (3, 4, 5)


@pytest.mark.parametrize(
    "labels, words",
    [
        (np.array(["a", "b", "a", "b", "a", "b"]), "labels must be integers"),
        (np.array([0, 1, np.nan, 0, 1, 0]), "NaN"),
        (np.array([0, 1, 2, 0, 1, 0]), "label 2 is out of range"),
        (np.array([0.5, 1, 0, 0, 1, 0]), "labels must be integers"),
    ],
)
def test_bad_labels(labels, words):
    with pytest.raises(DebuggableError, match=words):
        ImageArrayDataset(_images(), labels, ["a", "b"])


def test_bad_images():
    with pytest.raises(DebuggableError, match=r"\[0, 1\]"):
        ImageArrayDataset(np.full((2, 3, 3), 2.0), [0, 0], ["a"])
    with pytest.raises(DebuggableError, match="numeric"):
        ImageArrayDataset(np.array([["x"]]), [0], ["a"])
    with pytest.raises(DebuggableError, match="one label per image"):
        ImageArrayDataset(_images(), [0, 0], ["a"])


def test_text_dataset_rejects_a_single_string():
    with pytest.raises(DebuggableError, match="sequence of strings"):
        TextDataset("hello", [0], ["a"])


def test_iter_batches_rejects_zero_batch_size():
    ds = TextDataset(["a", "b"], [0, 0], ["x"])
    with pytest.raises(DebuggableError, match="batch_size"):
        list(ds.iter_batches(0))


def _splits(**over):
    mk = lambda n, shape=(1, 4, 5): ImageArrayDataset(np.zeros((n, *shape), np.uint8), np.arange(n) % 2, ("a", "b"))
    splits = {"train": mk(4), "val": mk(2), "test": mk(2)}
    splits.update(over)
    return splits


def test_splits_validation_and_describe():
    ds = DatasetSplits("toy", _splits(), ("a", "b"))  # tuple class names are normalised
    info = ds.describe()
    json.dumps(info)
    assert info["splits"]["train"]["class_counts"] == [2, 2] and info["image_shape"] == [1, 4, 5]
    with pytest.raises(DebuggableError, match="'val' is missing"):
        DatasetSplits("toy", {k: v for k, v in _splits().items() if k != "val"}, ["a", "b"])
    with pytest.raises(DebuggableError, match="'test' is empty"):
        DatasetSplits("toy", _splits(test=ImageArrayDataset(np.zeros((0, 1, 4, 5), np.uint8), [], ["a", "b"])), ["a", "b"])
    with pytest.raises(DebuggableError, match="shape"):
        DatasetSplits("toy", _splits(test=ImageArrayDataset(np.zeros((2, 1, 5, 5), np.uint8), [0, 1], ["a", "b"])), ["a", "b"])
    with pytest.raises(DebuggableError, match="text data"):
        DatasetSplits("toy", _splits(test=TextDataset(["x", "y"], [0, 1], ["a", "b"])), ["a", "b"])
    with pytest.raises(DebuggableError, match="no split 'dev'"):
        DatasetSplits("toy", _splits(), ["a", "b"])["dev"]


def test_channels_first_is_kept_by_subset():
    x = _images(c=4, h=5, w=3)  # (N, 4, 5, 3): ambiguous, stated explicitly
    ds = ImageArrayDataset(x, np.zeros(6, dtype=int), ["a"], channels_first=True)
    assert ds.image_shape == (4, 5, 3)
    assert ds.subset([0, 1]).image_shape == (4, 5, 3)
