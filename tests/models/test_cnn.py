import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.models import SmallCNN, SmallCNNBackbone


@pytest.mark.parametrize(("size", "side"), [(28, 7), (8, 2), (5, 2), (1, 1)])
def test_shapes_for_various_input_sizes(size, side):
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=4, width=4, feature_dim=6).eval()
    x = torch.rand(3, 1, size, size)
    spatial, features = model.forward_features(x)
    assert spatial.shape == (3, 6, side, side)
    assert features.shape == (3, 6)
    assert model(x).shape == (3, 4)


def test_features_are_the_pooled_nonnegative_spatial_map_and_head_is_linear():
    torch.manual_seed(0)
    model = SmallCNN(width=4, feature_dim=8).eval()
    x = torch.rand(4, 1, 28, 28)
    out = SmallCNNBackbone(model)(x)
    assert (out.features >= 0).all() and (out.spatial >= 0).all()
    assert torch.allclose(out.features, out.spatial.mean(dim=(2, 3)), atol=1e-6)
    # CAM is exact: logits = W @ mean(spatial) + b
    cam_logits = torch.einsum("kd,bd->bk", model.fc.weight, out.spatial.mean(dim=(2, 3))) + model.fc.bias
    assert torch.allclose(out.logits, cam_logits, atol=1e-5)
    assert torch.equal(out.logits, model(x))


def test_backbone_attributes_prepare_and_describe():
    model = SmallCNN(in_channels=3, num_classes=5, width=4, feature_dim=8).eval()
    bb = SmallCNNBackbone(model)
    assert (bb.feature_dim, bb.num_classes, bb.has_spatial, bb.modality) == (8, 5, True, "image")
    gray = torch.rand(2, 1, 8, 8)
    assert torch.equal(bb.prepare(gray), gray.expand(-1, 3, -1, -1))
    assert bb.describe()["init_kwargs"] == {"in_channels": 3, "num_classes": 5, "width": 4, "feature_dim": 8}
    with pytest.raises(DebuggableError, match="channels"):
        bb.prepare(torch.rand(2, 2, 8, 8))
    with pytest.raises(DebuggableError, match=r"\(B, C, H, W\)"):
        bb.prepare(torch.rand(8, 8))
    with pytest.raises(DebuggableError, match="strings"):
        bb.prepare(["a text"])
    with pytest.raises(DebuggableError, match="SmallCNN"):
        SmallCNNBackbone(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"num_classes": 2.5}, {"feature_dim": True}, {"in_channels": -1}])
def test_constructor_validation(kwargs):
    with pytest.raises(DebuggableError, match=next(iter(kwargs))):
        SmallCNN(**kwargs)
