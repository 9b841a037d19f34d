"""Tiny models with known closed forms for the debuggable.interpret tests (no downloads)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from debuggable.models.backbone import Backbone, BackboneOutput


@pytest.fixture(scope="package", autouse=True)
def single_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LinearSpatialBackbone(Backbone):
    """A linear CNN: spatial map ``s_c = a_c * avgpool2(x) + b_c`` (B, D, H/2, W/2),
    features = the mean of each channel, so every feature is linear in the pixels."""

    modality = "image"
    has_spatial = True

    def __init__(self, a: np.ndarray, b: np.ndarray):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float32))
        self.b = nn.Parameter(torch.as_tensor(b, dtype=torch.float32))
        self.feature_dim = int(len(a))
        self.name = "linear-spatial"

    def prepare(self, batch):
        return batch.to(self.device)

    def forward_prepared(self, x):
        pooled = F.avg_pool2d(x.mean(dim=1, keepdim=True), 2)  # (B, 1, H/2, W/2)
        s = self.a.view(1, -1, 1, 1) * pooled + self.b.view(1, -1, 1, 1)
        return BackboneOutput(features=s.mean(dim=(2, 3)), spatial=s, logits=None)


class DotBackbone(Backbone):
    """``features = flatten(x) @ V`` (B, D): feature j is the dot product with column j of V."""

    modality = "image"
    has_spatial = False

    def __init__(self, v: np.ndarray):
        super().__init__()
        self.v = nn.Parameter(torch.as_tensor(v, dtype=torch.float32))
        self.feature_dim = int(v.shape[1])
        self.name = "dot"

    def prepare(self, batch):
        return batch.to(self.device)

    def forward_prepared(self, x):
        return BackboneOutput(features=x.flatten(1) @ self.v)


class BagOfWordsEncoder:
    """A fake text encoder: features = sum over word occurrences of ``table[word]``.

    Removing every occurrence of word w changes feature j by exactly
    ``count(w) * table[w, j]``, so LIME's surrogate is known in closed form.
    """

    modality = "text"

    def __init__(self, vocab: list[str], table: np.ndarray):
        self.index = {w: i for i, w in enumerate(vocab)}
        self.table = np.asarray(table, dtype=np.float64)
        self.feature_dim = self.table.shape[1]
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.feature_dim))
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                if w in self.index:
                    out[i] += self.table[self.index[w]]
        return torch.as_tensor(out, dtype=torch.float32)


class TextBackboneStub(Backbone):
    modality = "text"
    feature_dim = 4
    name = "text-stub"

    def prepare(self, batch):
        return batch

    def forward_prepared(self, inputs):
        return BackboneOutput(features=torch.zeros(len(inputs), 4))
