"""Tiny models for the explain_tests tests (no downloads, one thread)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from debuggable.models import SmallCNN


@pytest.fixture(scope="package", autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LinearImageModel(nn.Module):
    """logits = W @ flatten(x) + b: every attribution method has a closed form here."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        k = weight.shape[0]
        self.fc = nn.Linear(weight[0].numel(), k)
        with torch.no_grad():
            self.fc.weight.copy_(weight.reshape(k, -1))
            self.fc.bias.copy_(bias if bias is not None else torch.zeros(k))

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return SmallCNN(in_channels=1, num_classes=3, width=4, feature_dim=8).eval()
