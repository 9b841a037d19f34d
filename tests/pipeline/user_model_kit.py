"""A model package the toolkit has never seen, written into a directory and trained there.

``write_package(root)`` writes ``tinynet/model.py`` (a small CNN applying ReLU through
``nn.ReLU`` modules, built by ``tinynet.model:build``); ``train_weights`` trains it for
a second on scikit-learn's digits with a plain PyTorch loop, as a user would, and saves
its state dict; ``export_program`` saves the same network with ``torch.export``.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import torch

PACKAGE = "tinynet"
SOURCE = textwrap.dedent('''
    """A user's own network: nothing in debuggable knows this class."""
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes=10, width=8):
            super().__init__()
            self.conv1 = nn.Conv2d(1, width, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
            self.relu2 = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
            return self.head(self.pool(h).flatten(1))

        @torch.jit.export
        def forward_features(self, x):
            return self.relu2(self.conv2(self.relu1(self.conv1(x))))


    def build(num_classes=10, width=8):
        return TinyNet(num_classes=num_classes, width=width)
''')


def write_package(root: Path) -> Path:
    pkg = root / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(SOURCE)
    return pkg


def load_class(root: Path):
    sys.path.insert(0, str(root))
    try:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        return importlib.import_module(f"{PACKAGE}.model")
    finally:
        sys.path.remove(str(root))


def train_weights(root: Path, out: Path, *, width: int = 8, epochs: int = 5, seed: int = 0) -> torch.nn.Module:
    """Train TinyNet on digits ((x - 0.5) / 0.5 inputs) with a plain loop; save its state dict to ``out``."""
    from sklearn.datasets import load_digits

    module = load_class(root)
    torch.manual_seed(seed)
    net = module.build(num_classes=10, width=width)
    digits = load_digits()
    x = torch.tensor(digits.images[:1200, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[:1200])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net((x[i:i + 64] - 0.5) / 0.5), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    torch.save(net.state_dict(), out)
    return net


def export_program(net: torch.nn.Module, out: Path) -> Path:
    example = torch.zeros(4, 1, 8, 8)
    program = torch.export.export(net.eval(), (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}})
    torch.export.save(program, out)
    return out


def script_module(net: torch.nn.Module, out: Path) -> Path:
    torch.jit.save(torch.jit.script(net.eval()), str(out))
    return out


def digits_images(n: int = 16) -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().images[-n:, None] / 16.0, dtype=torch.float32)


__all__ = ["PACKAGE", "digits_images", "export_program", "load_class", "script_module", "train_weights", "write_package"]
