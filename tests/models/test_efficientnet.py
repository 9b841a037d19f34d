import pytest
import torch
import torch.nn.functional as F

from debuggable.errors import DebuggableError
from debuggable.models import EfficientNetLite0Backbone

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photographs")

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def effnet():
    return EfficientNetLite0Backbone()


def _photo(name: str) -> torch.Tensor:
    img = getattr(skimage_data, name)()
    return torch.as_tensor(img).permute(2, 0, 1).float().div(255.0)[None]


def test_outputs_equal_the_package_models_own_computation(effnet):
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        out = effnet(x)
        prepared = effnet.prepare(x)
        fmap = effnet.model.extract_features(prepared)
        pooled = effnet.model._avg_pooling(fmap).flatten(1)
        logits = effnet.model(prepared)
    assert out.spatial.shape == (2, 1280, 7, 7) and out.features.shape == (2, 1280) and out.logits.shape == (2, 1000)
    assert torch.equal(out.spatial, fmap)
    assert torch.equal(out.features, pooled)
    assert torch.allclose(out.logits, logits, atol=1e-5)
    assert torch.allclose(effnet.classifier()(out.features), out.logits, atol=1e-5)


def test_prepare_repeats_gray_resizes_and_normalises(effnet):
    gray = torch.rand(2, 1, 28, 28)
    prepared = effnet.prepare(gray)
    rgb = gray.repeat(1, 3, 1, 1)
    expected = (F.interpolate(rgb, size=(224, 224), mode="bilinear", antialias=True, align_corners=False) - 0.5) / 0.5
    assert prepared.shape == (2, 3, 224, 224)
    assert torch.allclose(prepared, expected, atol=1e-6)
    with pytest.raises(DebuggableError, match="channels"):
        effnet.prepare(torch.rand(1, 2, 28, 28))


def test_imagenet_predictions_on_real_photographs(effnet):
    with torch.no_grad():
        cat = effnet(_photo("chelsea")).logits.softmax(1)
        coffee = effnet(_photo("coffee")).logits.softmax(1)
    assert int(cat.argmax()) in IMAGENET_CATS
    assert float(cat[0, list(IMAGENET_CATS)].sum()) > 0.8
    assert int(coffee.argmax()) == ESPRESSO


def test_gradients_reach_the_pixels(effnet):
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    effnet(x).logits[0, 285].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    effnet.zero_grad(set_to_none=True)


def test_random_init_other_sizes_and_bad_arguments(tmp_path):
    rand = EfficientNetLite0Backbone(weights=None, image_size=96)
    assert rand.weights is None and not rand.training
    with torch.no_grad():
        out = rand(torch.rand(1, 3, 50, 50))
    assert out.spatial.shape == (1, 1280, 3, 3)
    assert rand.describe()["image_size"] == 96
    with pytest.raises(DebuggableError, match="image_size"):
        EfficientNetLite0Backbone(image_size=8)
    with pytest.raises(DebuggableError, match="does not exist"):
        EfficientNetLite0Backbone(weights=tmp_path / "missing.pth")
    torch.save({"unrelated.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(DebuggableError, match="does not fit"):
        EfficientNetLite0Backbone(weights=tmp_path / "other.pth")
    with pytest.raises(DebuggableError, match="weights"):
        EfficientNetLite0Backbone(weights=3)  # type: ignore[arg-type]


def test_weights_from_a_state_dict_file(effnet, tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in effnet.model.state_dict().items()}}, path)
    again = EfficientNetLite0Backbone(weights=path)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(again(x).features, effnet(x).features)
