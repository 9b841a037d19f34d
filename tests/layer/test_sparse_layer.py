from types import SimpleNamespace

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.layer import SparseDecisionLayer, debuggable_model
from debuggable.models import BackboneOutput
from debuggable.models.backbone import Backbone


def make_layer(seed=0, k=3, d=8):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d)) * (rng.random((k, d)) < 0.4)
    return SparseDecisionLayer(w, rng.normal(size=k), rng.normal(size=d), rng.random(d) + 0.5,
                               [f"c{i}" for i in range(k)], {"rule": "test"})


def test_as_linear_matches_numpy_logits():
    layer = make_layer()
    x = np.random.default_rng(1).normal(size=(20, 8))
    lin = layer.as_linear(torch.float64)
    np.testing.assert_allclose(lin(torch.as_tensor(x)).detach().numpy(), x @ layer.weight.T + layer.bias, rtol=1e-12)
    np.testing.assert_array_equal(layer.predict(x), (x @ layer.weight.T + layer.bias).argmax(1))


def test_structure_and_ranking():
    layer = make_layer()
    assert layer.nnz == np.count_nonzero(layer.weight)
    assert layer.features_per_class().sum() == layer.nnz
    ranked = layer.top_features(0)
    ws = layer.weight[0] * layer.std
    assert [j for j, _ in ranked] == sorted(np.flatnonzero(ws), key=lambda j: -abs(ws[j]))
    assert all(np.isclose(v, ws[j]) for j, v in ranked)
    with pytest.raises(DebuggableError, match="out of range"):
        layer.top_features(5)


def test_from_path_and_save_load_round_trip(tmp_path):
    coef = np.random.default_rng(0).normal(size=(4, 3, 8))
    path = SimpleNamespace(coef=coef, intercept=np.arange(12.0).reshape(4, 3), lambdas=np.array([4.0, 2.0, 1.0, 0.5]))
    layer = SparseDecisionLayer.from_path(path, 2, mean=np.zeros(8), std=np.ones(8), class_names="abc",
                                          selection={"rule": "by_lambda"})
    assert layer.selection == {"path_index": 2, "lambda": 1.0, "rule": "by_lambda"}
    layer.save(tmp_path / "layer")
    again = SparseDecisionLayer.load(tmp_path / "layer")
    np.testing.assert_array_equal(again.weight, coef[2])
    np.testing.assert_array_equal(again.bias, [6.0, 7.0, 8.0])
    assert again.class_names == ["a", "b", "c"] and again.selection == layer.selection
    with pytest.raises(DebuggableError, match="outside the path"):
        SparseDecisionLayer.from_path(path, 4, mean=np.zeros(8), std=np.ones(8), class_names="abc")
    with pytest.raises(DebuggableError, match="holds no sparse layer"):
        SparseDecisionLayer.load(tmp_path)


def test_bad_shapes_are_named():
    with pytest.raises(DebuggableError, match=r"bias: expected shape \(2,\)"):
        SparseDecisionLayer(np.zeros((2, 3)), np.zeros(3), np.zeros(3), np.ones(3), ["a", "b"])
    with pytest.raises(DebuggableError, match="class_names: expected 2 names"):
        SparseDecisionLayer(np.zeros((2, 3)), np.zeros(2), np.zeros(3), np.ones(3), ["a"])


class LinearFeatures(Backbone):
    modality = "image"
    has_spatial = False

    def __init__(self, d=8):
        super().__init__()
        self.proj = torch.nn.Linear(4, d)
        self.feature_dim = d

    def prepare(self, batch):
        return batch.flatten(1)

    def forward_prepared(self, inputs):
        return BackboneOutput(features=self.proj(inputs))


def test_debuggable_model_is_backbone_then_sparse_head():
    torch.manual_seed(0)
    backbone = LinearFeatures()
    layer = make_layer()
    model = debuggable_model(backbone, layer)
    x = torch.rand(5, 1, 2, 2)
    feats = backbone(x).features.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(model(x).detach().numpy(), feats @ layer.weight.T + layer.bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(DebuggableError, match="reads 8 features but the backbone gives 6"):
        debuggable_model(LinearFeatures(6), layer)
