"""A tiny deterministic conv backbone and synthetic images for the features tests.

Used both by the test modules and by ``resume_worker.py`` (run in a subprocess).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from debuggable.data.base import Dataset, ImageArrayDataset
from debuggable.models.backbone import Backbone, BackboneOutput


class TinyConvBackbone(Backbone):
    """Two convolutions -> spatial map (B, 2w, H/2, W/2) -> mean pool -> features (B, 2w) -> head (B, K).

    Weights come from a seeded generator, so two instances with the same seed are
    identical. ``calls`` counts forward passes. With ``nan_trigger``, rows whose first
    pixel is exactly 1.0 produce NaN features (to test NaN handling).
    """

    modality = "image"
    has_spatial = True

    def __init__(self, in_channels: int = 3, width: int = 4, num_classes: int | None = 3, seed: int = 0,
                 nan_trigger: bool = False, name: str = "tiny-conv"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * width, num_classes) if num_classes is not None else None
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.feature_dim = 2 * width
        self.num_classes = num_classes
        self.nan_trigger = nan_trigger
        self.name = name
        self.calls = 0

    def prepare(self, batch):
        return batch.to(self.device) * 2.0 - 1.0

    def forward_prepared(self, x):
        self.calls += 1
        s = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        f = s.mean(dim=(2, 3))
        if self.nan_trigger:
            bad = x[:, 0, 0, 0] >= 1.0
            f = torch.where(bad[:, None], torch.full_like(f, float("nan")), f)
        logits = self.head(f) if self.head is not None else None
        return BackboneOutput(features=f, spatial=s, logits=logits)


class NoSpatialBackbone(TinyConvBackbone):
    has_spatial = False


def make_dataset(n: int = 100, seed: int = 0, size: int = 8, classes: int = 3, name: str = "synthetic") -> ImageArrayDataset:
    """``n`` random uint8 RGB ``size`` x ``size`` images with labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    return ImageArrayDataset(images, labels, [f"c{k}" for k in range(classes)], name=name)


class RawDataset(Dataset):
    """A dataset that skips the loaders' own checks (to test extraction's checks)."""

    modality = "image"

    def __init__(self, images: torch.Tensor, labels, class_names, name: str = "raw"):
        self.images = images
        self.labels = np.asarray(labels)
        self.class_names = list(class_names)
        self.name = name

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


class TinyTextBackbone(Backbone):
    """Character histograms (32 buckets) -> linear -> features (B, 6) -> head (B, 2)."""

    modality = "text"
    has_spatial = False
    feature_dim = 6
    num_classes = 2
    name = "tiny-text"

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(32, 6)
        self.head = nn.Linear(6, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def prepare(self, batch):
        hist = torch.zeros(len(batch), 32)
        for i, text in enumerate(batch):
            for ch in text:
                hist[i, ord(ch) % 32] += 1.0
        return hist.to(self.device)

    def forward_prepared(self, x):
        f = torch.tanh(self.proj(x))
        return BackboneOutput(features=f, logits=self.head(f))
