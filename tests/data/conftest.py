"""Shared fixtures for the data tests: small image and text data sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.data import from_arrays, load_animal_mnist, load_digits

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits: float images (1, 8, 8) in [0, 1], 1,797 examples."""
    return load_digits(seed=0)


@pytest.fixture(scope="session")
def animals_small():
    """Animal-MNIST limited to 30 images per class: uint8 images (1, 28, 28)."""
    return load_animal_mnist(limit_per_class=30, seed=0)


WORDS = ["good", "bad", "film", "plot", "actor", "scene", "great", "awful", "story", "music", "dull", "fun"]


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 9)))) for _ in range(n)]
    texts[0] = ""  # an empty text must still take a token
    return texts, rng.integers(0, 3, size=n)


@pytest.fixture(scope="session")
def text_splits():
    """Three-class synthetic text data with train/val/test and an extra shifted split."""
    texts, labels = make_texts(300, 0)
    extra_texts, extra_labels = make_texts(60, 1)
    return from_arrays(
        (texts, labels), class_names=["neg", "neu", "pos"], seed=0, name="toy_text",
        extra={"test_shifted": (extra_texts, extra_labels)},
    )
