"""Built-in image data sets: Animal-MNIST and scikit-learn's 8x8 digits.

Neither loader downloads anything: Animal-MNIST is read from the data files shipped
inside the installed ``animal_mnist`` package (installed with
``pip install --no-deps animal-mnist``; its Python modules import TensorFlow, so this
module never imports them), and the digits ship with scikit-learn.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

from debuggable.data._common import (
    check_positive_int,
    check_seed,
    check_split_fractions,
    limit_per_class_indices,
    split_dataset,
)
from debuggable.data.base import DatasetSplits, ImageArrayDataset
from debuggable.errors import DebuggableError

#: Animal-MNIST class names in label order (checked by looking at the images).
ANIMAL_MNIST_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
_ANIMAL_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")
_INSTALL_HINT = "install it with `pip install --no-deps animal-mnist` (--no-deps skips TensorFlow, which is not needed)"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and nothing else, so a tampered data file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an Animal-MNIST data file")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # NumPy >= 2
            except ImportError:  # pragma: no cover - NumPy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def animal_mnist_dir() -> Path:
    """The folder holding the Animal-MNIST data files inside the installed package.

    Raises:
        DebuggableError: when ``animal_mnist`` is not installed or lacks its data files.
    """
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DebuggableError(f"The Animal-MNIST data needs the animal_mnist package, which is not installed; {_INSTALL_HINT}.")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "Animal_MNIST"
        if all((folder / f).is_file() for f in _ANIMAL_FILES):
            return folder
    raise DebuggableError(
        f"The animal_mnist package at {list(spec.submodule_search_locations)} lacks data/Animal_MNIST/"
        f"{_ANIMAL_FILES[0]} or {_ANIMAL_FILES[1]}; reinstall it with `pip install --no-deps --force-reinstall animal-mnist`."
    )


@functools.lru_cache(maxsize=1)
def _read_animal_mnist(folder: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for fname in _ANIMAL_FILES:
        path = Path(folder) / fname
        try:
            with gzip.open(path, "rb") as f:
                arrays.append(_NumpyOnlyUnpickler(io.BytesIO(f.read())).load())
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise DebuggableError(f"Could not read Animal-MNIST file {path} ({exc}); {_INSTALL_HINT}.") from exc
    images, labels = arrays
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28)):
        raise DebuggableError(f"Animal-MNIST file {_ANIMAL_FILES[0]} holds {getattr(images, 'shape', type(images))}, expected uint8 (N, 28, 28).")
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != (images.shape[0],) or labels.min() < 0 or labels.max() > 9:
        raise DebuggableError(f"Animal-MNIST file {_ANIMAL_FILES[1]} does not hold one label 0..9 per image.")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_animal_mnist(
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit_per_class: int | None = None,
) -> DatasetSplits:
    """Animal-MNIST: 10,000 grayscale 28x28 animal drawings, 1,000 per class.

    Args:
        val_fraction: share of the (limited) data for ``val``, in (0, 1).
        test_fraction: share for ``test``, in (0, 1); the two sum to less than 1.
        seed: seeds the stratified split and the per-class limit.
        limit_per_class: keep at most this many images of each class (a seeded
            choice), e.g. for quick runs; None keeps all 1,000.

    Returns:
        :class:`DatasetSplits` named ``"animal_mnist"`` with ``train``/``val``/``test``
        :class:`ImageArrayDataset` splits (uint8 in memory, items (1, 28, 28) float32 in
        [0, 1]) and class names :data:`ANIMAL_MNIST_CLASSES`.
    """
    check_split_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    limit = check_positive_int("limit_per_class", limit_per_class, allow_none=True)
    folder = animal_mnist_dir()
    images, labels = _read_animal_mnist(str(folder))
    rows = np.arange(labels.shape[0]) if limit is None else limit_per_class_indices(labels, limit, seed)
    full = ImageArrayDataset(images[rows], labels[rows], ANIMAL_MNIST_CLASSES, name="animal_mnist")
    source = {
        "dataset": "animal_mnist",
        "origin": f"animal_mnist package: {folder / _ANIMAL_FILES[0]}",
        "n_source": int(labels.shape[0]),
        "limit_per_class": limit,
    }
    return split_dataset(
        full, name="animal_mnist", val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, source=source
    )


def load_digits(
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit_per_class: int | None = None,
) -> DatasetSplits:
    """scikit-learn's handwritten digits: 1,797 grayscale 8x8 images, classes "0".."9".

    Pixel counts 0..16 are scaled to [0, 1] (divided by 16).

    Args:
        val_fraction: share of the data for ``val``, in (0, 1).
        test_fraction: share for ``test``, in (0, 1); the two sum to less than 1.
        seed: seeds the stratified split and the per-class limit.
        limit_per_class: keep at most this many images of each class; None keeps all.

    Returns:
        :class:`DatasetSplits` named ``"digits"``; items are (1, 8, 8) float32 in [0, 1].
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    check_split_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    limit = check_positive_int("limit_per_class", limit_per_class, allow_none=True)
    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).clip(0.0, 1.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rows = np.arange(labels.shape[0]) if limit is None else limit_per_class_indices(labels, limit, seed)
    full = ImageArrayDataset(images[rows], labels[rows], [str(d) for d in range(10)], name="digits")
    source = {
        "dataset": "digits",
        "origin": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, 8x8, counts 0..16 / 16)",
        "n_source": int(labels.shape[0]),
        "limit_per_class": limit,
    }
    return split_dataset(
        full, name="digits", val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, source=source
    )
