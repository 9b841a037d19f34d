import pickle

import pytest
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models import ModuleBackbone, SmallCNN, layer_names


def _convnet() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_spatial_layer_matches_manual_forward_of_subnetwork():
    model = _convnet()
    x = torch.rand(5, 1, 9, 9)
    with ModuleBackbone(model, "3") as bb:
        out = bb(x)
    manual = model[:4](x)
    assert torch.equal(out.spatial, manual)
    assert torch.equal(out.features, manual.mean(dim=(2, 3)))
    assert torch.equal(out.logits, model(x))
    assert out.features.shape == (5, 6) and out.spatial.shape == (5, 6, 9, 9) and out.logits.shape == (5, 3)
    assert (bb.feature_dim, bb.num_classes, bb.has_spatial) == (6, 3, True)


def test_vector_layer_and_flatten_pooling():
    model = _convnet()
    x = torch.rand(3, 1, 6, 6)
    out = ModuleBackbone(model, "5")(x)  # nn.Flatten output: (B, 6)
    assert out.spatial is None
    assert torch.equal(out.features, model[:6](x))
    flat = ModuleBackbone(model, "1", pool="flatten")(x)
    assert torch.equal(flat.features, model[:2](x).flatten(1))
    assert flat.features.shape == (3, 4 * 6 * 6)


def test_token_layer_is_mean_pooled_and_tuple_outputs_use_first_element():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5, batch_first=True)  # returns (output (B, T, 5), h_n)
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    torch.manual_seed(0)
    model = Seq().eval()
    x = torch.randn(3, 7, 4)
    out = ModuleBackbone(model, "rnn", modality="text")(x)
    assert torch.equal(out.features, model.rnn(x)[0].mean(dim=1))
    assert out.logits.shape == (3, 2) and out.spatial is None


def test_small_cnn_features_layer_matches_its_forward_features():
    torch.manual_seed(0)
    model = SmallCNN(width=4, feature_dim=8).eval()
    x = torch.rand(2, 1, 28, 28)
    out = ModuleBackbone(model, "features")(x)
    spatial, features = model.forward_features(x)
    assert torch.equal(out.spatial, spatial)
    assert torch.allclose(out.features, features, atol=1e-6)
    assert torch.equal(out.logits, model(x))


def test_wrong_layer_name_lists_valid_names_and_closest_match():
    model = _convnet()
    with pytest.raises(DebuggableError) as err:
        ModuleBackbone(model, "33")
    msg = str(err.value)
    assert "'33'" in msg and "valid names are '0', '1', '2', '3', '4', '5', '6'" in msg
    assert "closest matches are ['3']" in msg

    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(100)])
    with pytest.raises(DebuggableError) as err:
        ModuleBackbone(big, "layer4")
    msg = str(err.value)
    assert "(75 more)" in msg and "'24'" in msg and "'99'" not in msg
    assert len(layer_names(big)) == 100


def test_bad_arguments():
    with pytest.raises(DebuggableError, match="pool"):
        ModuleBackbone(_convnet(), "1", pool="max")
    with pytest.raises(DebuggableError, match="model"):
        ModuleBackbone(lambda x: x, "1")  # type: ignore[arg-type]
    with pytest.raises(DebuggableError, match="layer"):
        ModuleBackbone(_convnet(), "")

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(DebuggableError, match="did not run"):
        ModuleBackbone(TwoHeads(), "unused")(torch.ones(1, 2))


def test_hooks_do_not_leak():
    model = _convnet()
    layer = model[3]
    bb = ModuleBackbone(model, "3")
    assert len(layer._forward_hooks) == 0
    outs = [bb(torch.rand(2, 1, 5, 5)) for _ in range(3)]
    assert len(layer._forward_hooks) == 0
    assert all(o.spatial.shape == (2, 6, 5, 5) for o in outs)
    with pytest.raises(RuntimeError):
        bb(torch.rand(2, 3, 5, 5))  # the model itself fails mid-forward
    assert len(layer._forward_hooks) == 0
    bb.close()  # a no-op kept for the Backbone interface; the adapter stays usable
    copy = pickle.loads(pickle.dumps(bb))
    x = torch.rand(2, 1, 5, 5)
    assert torch.equal(copy(x).features, bb(x).features)
    assert len(copy.model[3]._forward_hooks) == 0


def test_gradients_flow_to_the_input():
    model = _convnet()
    x = torch.rand(2, 1, 5, 5, requires_grad=True)
    ModuleBackbone(model, "3")(x).features.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_probe_learns_shapes_without_touching_training_state():
    torch.manual_seed(0)
    model = SmallCNN(width=4, feature_dim=8).train()
    bn = model.features[1]
    before = bn.running_mean.clone()
    bb = ModuleBackbone(model, "features", input_shape=(1, 28, 28))
    assert bb.describe()["feature_dim"] == 8 and bb.num_classes == 10 and bb.has_spatial
    assert model.training and bn.training
    assert torch.equal(bn.running_mean, before)
    assert all(k.startswith("model.") for k in bb.state_dict())  # no duplicate entries for the hooked layer
