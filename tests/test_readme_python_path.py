"""The README's Python path, as written, with a network the toolkit has never seen.

``ModuleBackbone(model, layer=...)`` without ``input_shape`` (feature_dim learnt from
the first batch), a layer with dead ReLU units (constant feature columns) through
``elastic_net_path`` and ``debuggable_model``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from debuggable.data import load_dataset, plant
from debuggable.features import extract_features
from debuggable.glm import elastic_net_path, select
from debuggable.layer import SparseDecisionLayer, debuggable_model
from debuggable.models import ModuleBackbone


class NeverSeen(nn.Module):
    """Conv -> ReLU -> pooled 12 channels, 4 of them dead (bias -100: the ReLU never fires)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(12, 10)
        with torch.no_grad():
            self.stem[0].bias[:4] = -100.0

    def forward(self, x):
        return self.classifier(self.pool(self.stem(x)).flatten(1))


def test_readme_python_path_with_dead_units(tmp_path):
    torch.manual_seed(0)
    my_model = NeverSeen()
    splits = load_dataset("digits", val_fraction=0.2, test_fraction=0.2, seed=0)
    splits = plant(splits, "spurious_patch", target_class=3, train_fraction=0.8,
                   patch={"shape": "square", "size": 2, "colour": 1.0, "position": "top_left"}, seed=0)
    backbone = ModuleBackbone(my_model, layer="stem")  # no input_shape: feature_dim is learnt from the data
    assert backbone.feature_dim is None
    reader = extract_features(backbone, splits.train, tmp_path / "features", "train", progress=False)
    assert backbone.feature_dim == 12 and reader.shape == (len(splits.train), 12)
    blocks = [block for _, block in reader.iter_blocks("features", as_torch=True)]
    assert sum(b.shape[0] for b in blocks) == len(splits.train)

    val = extract_features(backbone, splits.val, tmp_path / "features", "val", progress=False)
    x_train = reader.to_numpy("features")
    assert np.all(x_train[:, :4] == 0)  # the dead units
    path = elastic_net_path(reader, reader.labels, X_val=val.to_numpy("features"), y_val=val.labels,
                            n_lambdas=10, lambda_min_ratio=0.02)
    assert path.info["constant_features_skipped"] == [0, 1, 2, 3]
    chosen = select(path, "accuracy", margin=0.05)
    layer = SparseDecisionLayer.from_path(path, chosen.index, mean=path.feature_mean,
                                          std=path.feature_std, class_names=splits.class_names)
    assert layer.feature_dim == 12 and np.all(layer.weight[:, :4] == 0)
    model = debuggable_model(backbone, layer)  # backbone + sparse head, one nn.Module
    x, _ = splits.val.batch(np.arange(16))
    with torch.no_grad():
        logits = model(x).double().numpy()
    np.testing.assert_allclose(logits, layer.decision_function(val.to_numpy("features")[:16]), rtol=1e-4, atol=1e-4)
