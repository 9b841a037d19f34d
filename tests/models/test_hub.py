import argparse
import importlib
import sys

import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.models import (
    MissingDependencyError,
    SmallCNN,
    hf_text_backbone,
    robustness_backbone,
    robustness_state_dict,
    timm_backbone,
    torchvision_backbone,
)
from debuggable.models.hub import (
    extract_state_dict,
    read_checkpoint,
    torchvision_feature_layer,
)


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("torchvision", lambda: torchvision_backbone("resnet18"), "vision"),
        ("timm", lambda: timm_backbone("resnet18"), "vision"),
        ("transformers", lambda: hf_text_backbone("bert-base-uncased"), "text"),
    ],
)
def test_missing_library_gives_install_hint(monkeypatch, module, call, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependencyError) as err:
        call()
    assert isinstance(err.value, DebuggableError) and isinstance(err.value, ImportError)
    assert f"debuggable[{extra}]" in str(err.value) and repr(module) in str(err.value)


def _robustness_checkpoint(model: torch.nn.Module, mean, std, *, data_parallel: bool = True) -> dict:
    """What MadryLab's robustness library saves: an AttackerModel state dict plus training state."""
    p = "module." if data_parallel else ""
    sd = {}
    for k, v in model.state_dict().items():
        sd[f"{p}model.{k}"] = v.clone()
        sd[f"{p}attacker.model.{k}"] = torch.randn_like(v.float()).to(v.dtype)  # must be ignored
    sd[f"{p}normalizer.new_mean"] = torch.tensor(mean)[:, None, None]
    sd[f"{p}normalizer.new_std"] = torch.tensor(std)[:, None, None]
    sd[f"{p}attacker.normalize.new_mean"] = torch.zeros(len(mean), 1, 1)
    sd[f"{p}attacker.normalize.new_std"] = torch.ones(len(mean), 1, 1)
    return {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "schedule": None, "epoch": 90}


@pytest.mark.parametrize("data_parallel", [True, False])
def test_robustness_state_dict_strips_prefixes_and_reads_normaliser(data_parallel):
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, width=4, feature_dim=8)
    ckpt = _robustness_checkpoint(model, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], data_parallel=data_parallel)
    state, mean, std = robustness_state_dict(ckpt)
    assert sorted(state) == sorted(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(mean, torch.tensor([0.4, 0.5, 0.6])) and torch.allclose(std, torch.tensor([0.2, 0.25, 0.3]))


def test_robustness_backbone_loads_weights_and_applies_normaliser(tmp_path):
    torch.manual_seed(0)
    original = SmallCNN(in_channels=3, num_classes=5, width=4, feature_dim=8).eval()
    path = tmp_path / "robust.pt"
    torch.save(_robustness_checkpoint(original, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]), path)
    torch.manual_seed(1)
    bb = robustness_backbone(path, arch=SmallCNN(in_channels=3, num_classes=5, width=4, feature_dim=8), image_size=16)
    assert not bb.training and bb.feature_dim == 8 and bb.num_classes == 5 and bb.layer == "features"
    x = torch.rand(2, 3, 16, 16)
    normalised = (x - torch.tensor([0.4, 0.5, 0.6])[:, None, None]) / torch.tensor([0.2, 0.25, 0.3])[:, None, None]
    with torch.no_grad():
        out = bb(x)
        assert torch.allclose(out.logits, original(normalised), atol=1e-6)
        assert torch.allclose(out.spatial, original.forward_features(normalised)[0], atol=1e-6)


def test_robustness_checkpoint_errors(tmp_path):
    model = SmallCNN(in_channels=3, width=4, feature_dim=8)
    ckpt = _robustness_checkpoint(model, [0.5] * 3, [0.25] * 3)
    ckpt["args"] = argparse.Namespace(arch="resnet50")  # a pickled object: refused unless trusted
    path = tmp_path / "pickled.pt"
    torch.save(ckpt, path)
    with pytest.raises(DebuggableError, match="trust_checkpoint=True"):
        robustness_backbone(path, arch=SmallCNN(in_channels=3, width=4, feature_dim=8))
    bb = robustness_backbone(path, arch=SmallCNN(in_channels=3, width=4, feature_dim=8), trust_checkpoint=True)
    assert bb.name == "robustness:SmallCNN"
    with pytest.raises(DebuggableError, match="do not fit"):
        robustness_backbone(path, arch=SmallCNN(in_channels=3, width=6, feature_dim=8), trust_checkpoint=True)
    with pytest.raises(DebuggableError, match="unexpected key 'classifier.weight'"):
        robustness_state_dict(
            {"model": {"module.model.fc.weight": torch.zeros(1), "module.classifier.weight": torch.zeros(1)}}
        )
    with pytest.raises(DebuggableError, match="no classifier weights"):
        robustness_state_dict({"module.attacker.model.fc.weight": torch.zeros(1)})
    with pytest.raises(DebuggableError, match="does not exist"):
        robustness_backbone(tmp_path / "missing.pt", arch=model)
    with pytest.raises(DebuggableError, match="arch"):
        robustness_backbone(path, arch=3, trust_checkpoint=True)  # type: ignore[arg-type]


def test_checkpoint_helpers(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.ones(2)}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_checkpoint(tmp_path / "w.safetensors")["w"], state["w"])
    assert extract_state_dict({"state_dict": state, "epoch": 3}) == state
    with pytest.raises(DebuggableError, match="no state dict"):
        extract_state_dict({"epoch": 3})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DebuggableError, match="could not be read"):
        read_checkpoint(tmp_path / "junk.pt")


def test_default_torchvision_layers():
    assert torchvision_feature_layer("resnet50") == "layer4"
    assert torchvision_feature_layer("wide_resnet50_2") == "layer4"
    assert torchvision_feature_layer("efficientnet_b0") == "features"
    assert torchvision_feature_layer("inception_v3") == "Mixed_7c"
    assert torchvision_feature_layer("vit_b_16") is None


def _usable(name: str):
    """Import an optional library, or skip when it is missing or broken here."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a wheel built for another torch fails with RuntimeError/OSError, not ImportError
        pytest.skip(f"{name} is not usable here ({type(exc).__name__}); it comes with debuggable[vision]")


def test_torchvision_resnet_matches_manual_forward_and_reloads(tmp_path):
    tv = _usable("torchvision")
    bb = torchvision_backbone("resnet18")
    assert (bb.feature_dim, bb.num_classes, bb.has_spatial, bb.layer) == (512, 1000, True, "layer4")
    x = torch.rand(2, 1, 28, 28)
    m = bb.model
    with torch.no_grad():
        out = bb(x)
        h = bb.prepare(x)
        assert h.shape == (2, 3, 224, 224)
        h = m.maxpool(m.relu(m.bn1(m.conv1(h))))
        h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
    assert torch.equal(out.spatial, h)
    assert torch.allclose(out.features, torch.flatten(m.avgpool(h), 1), atol=1e-6)
    assert torch.allclose(out.logits, m.fc(out.features), atol=1e-5)

    ten = tv.models.resnet18(num_classes=10)
    torch.save({"state_dict": ten.state_dict()}, tmp_path / "r18.pth")
    again = torchvision_backbone("resnet18", weights=tmp_path / "r18.pth")
    assert again.num_classes == 10
    ckpt = _robustness_checkpoint(ten, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    torch.save(ckpt, tmp_path / "robust.pt")
    robust = robustness_backbone(tmp_path / "robust.pt", arch="resnet18")
    with torch.no_grad():
        assert torch.allclose(robust(x).logits, again(x).logits, atol=1e-5)
    with pytest.raises(DebuggableError, match="never downloads"):
        torchvision_backbone("resnet18", weights="IMAGENET1K_V1")
    with pytest.raises(DebuggableError, match="closest are"):
        torchvision_backbone("resnet5O")
    with pytest.raises(DebuggableError, match="no default feature layer"):
        torchvision_backbone("vit_b_16")


def test_timm_backbone_uses_the_models_own_split(tmp_path):
    timm = _usable("timm")
    from safetensors.torch import save_file

    model = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    save_file(model.state_dict(), str(tmp_path / "r18.safetensors"))
    bb = timm_backbone("resnet18", checkpoint_path=tmp_path / "r18.safetensors")
    assert (bb.feature_dim, bb.num_classes, bb.has_spatial) == (512, 7, True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = bb(x)
        prepared = bb.prepare(x)
        assert torch.allclose(out.logits, model(prepared), atol=1e-5)
        assert torch.allclose(out.features, model.forward_head(model.forward_features(prepared), pre_logits=True))
    hooked = timm_backbone("resnet18", layer="layer3")
    assert hooked.feature_dim == 256 and hooked.layer == "layer3"
