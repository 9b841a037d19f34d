"""Shared tiny data and models for the debuggable.models tests (no downloads)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from debuggable.models import SmallCNN, TrainConfig, train_classifier


@pytest.fixture(scope="package", autouse=True)
def single_thread():
    """Tiny models run fastest (and steadiest on a shared 2-core machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ArrayDataset:
    """The minimal dataset interface: ``__len__`` and ``batch(indices) -> (x, y)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, indices):
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self.x[idx], self.y[idx]


@pytest.fixture(scope="package")
def digits(single_thread) -> tuple[ArrayDataset, ArrayDataset]:
    """sklearn's 8x8 digits as (train 1300, test 497) images (1, 8, 8) in [0, 1], 10 classes."""
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:1300], perm[1300:]
    return ArrayDataset(x[tr], y[tr]), ArrayDataset(x[te], y[te])


@pytest.fixture(scope="package")
def trained_cnn(digits) -> SmallCNN:
    """A SmallCNN trained 5 epochs on digits (clean test accuracy ~0.99), in eval mode."""
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10, width=8, feature_dim=32)
    train_classifier(
        model, digits[0], config=TrainConfig(epochs=5, batch_size=64, lr=1e-2, device="cpu"), progress=False
    )
    return model.eval()
