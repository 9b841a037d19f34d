"""Built-in data: Animal-MNIST from the installed package, scikit-learn digits."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from debuggable.data import ANIMAL_MNIST_CLASSES, load_animal_mnist, load_digits
from debuggable.data import builtin
from debuggable.errors import DebuggableError


@pytest.fixture(scope="module")
def animals():
    return load_animal_mnist(seed=0)


def _row_hashes(images: torch.Tensor) -> Counter:
    arr = images.numpy().reshape(images.shape[0], -1)
    return Counter(hashlib.sha1(r.tobytes()).hexdigest() for r in arr)


def test_animal_mnist_shapes_dtypes_and_ranges(animals):
    assert animals.class_names == ANIMAL_MNIST_CLASSES
    assert ANIMAL_MNIST_CLASSES[:3] == ["bear", "bird", "cat"] and ANIMAL_MNIST_CLASSES[-1] == "zebra"
    assert {k: len(v) for k, v in animals.splits.items()} == {"train": 7000, "val": 1000, "test": 2000}
    assert animals.train.images.dtype == torch.uint8  # kept compact in memory
    x, y = animals.val.batch(np.arange(64))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert animals.train.source["dataset"] == "animal_mnist" and "stratified" in animals.train.source["split_rule"]


def test_animal_mnist_splits_are_stratified_and_partition_the_file(animals):
    for split, n in (("train", 700), ("val", 100), ("test", 200)):
        assert animals[split].class_counts().tolist() == [n] * 10
    images, labels = builtin._read_animal_mnist(str(builtin.animal_mnist_dir()))
    source = _row_hashes(torch.as_tensor(images.copy()))
    together = sum((_row_hashes(animals[s].images) for s in ("train", "val", "test")), Counter())
    assert together == source  # every source image exactly once: disjoint and complete


def test_animal_mnist_is_deterministic_under_the_seed(animals):
    again = load_animal_mnist(seed=0)
    other = load_animal_mnist(seed=1)
    assert torch.equal(again.test.images, animals.test.images)
    assert np.array_equal(again.test.labels, animals.test.labels)
    assert not torch.equal(other.test.images, animals.test.images)


def test_animal_mnist_limit_per_class():
    small = load_animal_mnist(limit_per_class=20, val_fraction=0.25, test_fraction=0.25, seed=2)
    total = sum((small[s].class_counts() for s in ("train", "val", "test")), np.zeros(10, dtype=int))
    assert total.tolist() == [20] * 10
    assert small.val.class_counts().tolist() == [5] * 10
    with pytest.raises(DebuggableError, match="limit_per_class"):
        load_animal_mnist(limit_per_class=0)


def test_animal_mnist_never_imports_tensorflow_modules(animals):
    assert "animal_mnist.dataset_Loader" not in sys.modules
    assert "animal_mnist.benchmarker" not in sys.modules
    assert "tensorflow" not in sys.modules


def test_missing_animal_mnist_package_says_how_to_install(monkeypatch):
    real = builtin.importlib.util.find_spec
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name, *a: None if name == "animal_mnist" else real(name, *a))
    with pytest.raises(DebuggableError, match="pip install --no-deps animal-mnist"):
        load_animal_mnist()


def test_data_files_may_only_hold_numpy_arrays(tmp_path):
    with gzip.open(tmp_path / "animal_data_version_3.gz", "wb") as f:
        pickle.dump(os.getcwd, f)  # anything but an array must be refused, not called
    with gzip.open(tmp_path / "animal_label_version_3.gz", "wb") as f:
        pickle.dump(np.zeros(3, dtype=np.int64), f)
    with pytest.raises(DebuggableError, match="refusing to load"):
        builtin._read_animal_mnist(str(tmp_path))


def test_digits_shapes_ranges_and_classes():
    d = load_digits(seed=0, val_fraction=0.1, test_fraction=0.2)
    assert d.class_names == [str(k) for k in range(10)]
    assert sum(len(d[s]) for s in ("train", "val", "test")) == 1797
    assert len(d.test) == round(0.2 * 1797) and len(d.val) == round(0.1 * 1797)
    x, y = d.train.batch(np.arange(len(d.train)))
    assert x.shape == (len(d.train), 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # counts 0..16 divided by 16
    assert torch.all(torch.isclose(x * 16, torch.round(x * 16)))
    from sklearn.datasets import load_digits as sk

    counts = np.bincount(sk().target)
    for split, f in (("val", 0.1), ("test", 0.2)):
        assert np.all(np.abs(d[split].class_counts() - f * counts) <= 1)
