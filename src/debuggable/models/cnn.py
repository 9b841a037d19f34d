"""The small built-in CNN and its backbone adapter.

:class:`SmallCNN` is made for 28x28 images (Animal-MNIST) and runs on any size of at
least 1x1 (e.g. 8x8 digits): two conv blocks that halve the resolution, a last conv
layer whose ReLU output is the spatial map (B, feature_dim, h, w) (7x7 at 28x28, 2x2
at 8x8), a global average pool to ``feature_dim`` non-negative features, and a
linear head to ``num_classes`` logits. Because the features are exactly the mean of
the spatial map and the head is linear, class activation maps are exact.

It eats images in [0, 1] directly (no normalisation), so attack budgets are in pixel
units.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import Backbone, BackboneOutput
from debuggable.models.preprocess import check_images


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=False)]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DebuggableError(f"{name}: got {value!r}, expected a positive integer.")
    return int(value)


class SmallCNN(nn.Module):
    """A small CNN classifier: conv blocks -> spatial map -> GAP features -> linear head.

    Args:
        in_channels: image channels C (1 for grayscale).
        num_classes: K, the number of logits.
        width: channels of the first block (the second has ``2 * width``).
        feature_dim: D, channels of the spatial map = length of the feature vector.

    Attributes:
        features: ``nn.Sequential`` mapping (B, C, H, W) to the spatial map
            (B, D, ceil(H/4), ceil(W/4)), post-ReLU.
        pool: global average pool; ``fc``: ``nn.Linear(D, K)``.
        init_kwargs: the constructor arguments (saved by :func:`debuggable.models.save_model`).
    """

    architecture = "small_cnn"
    default_feature_layer = "features"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels")
        num_classes = _positive_int(num_classes, "num_classes")
        width = _positive_int(width, "width")
        feature_dim = _positive_int(feature_dim, "feature_dim")
        self.init_kwargs = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "width": width,
            "feature_dim": feature_dim,
        }
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width),
            *_conv_bn_relu(width, width),
            nn.MaxPool2d(2, ceil_mode=True),
            *_conv_bn_relu(width, 2 * width),
            *_conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2, ceil_mode=True),
            *_conv_bn_relu(2 * width, feature_dim),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> (spatial (B, D, h, w), features (B, D) >= 0)."""
        spatial = self.features(x)
        return spatial, self.pool(spatial).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> logits (B, K)."""
        return self.fc(self.forward_features(x)[1])


class SmallCNNBackbone(Backbone):
    """:class:`SmallCNN` behind the :class:`Backbone` interface.

    Args:
        model: the network (its weights are shared, not copied).
        name: a short description for reports.

    ``prepare`` checks the batch, moves it to the model's device and repeats a
    grayscale channel when the model wants 3; no resizing or normalisation.
    """

    modality = "image"
    has_spatial = True

    def __init__(self, model: SmallCNN, *, name: str = "small_cnn") -> None:
        super().__init__()
        if not isinstance(model, SmallCNN):
            raise DebuggableError(f"model: got a {type(model).__name__}, expected a SmallCNN.")
        self.model = model
        self.feature_dim = model.feature_dim
        self.num_classes = model.num_classes
        self.name = name

    def prepare(self, batch: Any) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> the same on the model's device (C fixed up to ``in_channels``)."""
        x = check_images(batch, name="batch").to(self.device)
        c, want = x.shape[1], self.model.in_channels
        if c != want:
            if c == 1:
                x = x.expand(-1, want, -1, -1)
            else:
                raise DebuggableError(f"batch: got images with {c} channels, expected {want} for this SmallCNN.")
        return x

    def forward_prepared(self, inputs: torch.Tensor) -> BackboneOutput:
        """Spatial map (B, D, h, w), features (B, D) and logits (B, K)."""
        spatial, features = self.model.forward_features(inputs)
        return BackboneOutput(features=features, spatial=spatial, logits=self.model.fc(features))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["architecture"] = SmallCNN.architecture
        info["init_kwargs"] = dict(self.model.init_kwargs)
        return info
