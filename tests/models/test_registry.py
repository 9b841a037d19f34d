import sys

import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.models import (
    BACKBONE_KINDS,
    EfficientNetLite0Backbone,
    MissingDependencyError,
    SmallCNNBackbone,
    check_backbone_params,
    load_backbone,
    save_model,
)


def test_small_cnn_kind_loads_a_saved_model(trained_cnn, digits, tmp_path):
    save_model(trained_cnn, tmp_path / "cnn", config={})
    bb = load_backbone("small_cnn", path=str(tmp_path / "cnn"), device="cpu")
    assert isinstance(bb, SmallCNNBackbone) and not bb.training
    x, _ = digits[1].batch(np.arange(10))
    with torch.no_grad():
        assert torch.equal(bb(x).logits, trained_cnn(x))
    assert bb.describe()["feature_dim"] == 32


def test_efficientnet_kind():
    bb = load_backbone("efficientnet_lite0", weights=None, image_size=64)
    assert isinstance(bb, EfficientNetLite0Backbone) and bb.image_size == 64


def test_unknown_kind_and_params():
    assert sorted(BACKBONE_KINDS) == [
        "efficientnet_lite0",
        "hf_text",
        "minilm",
        "robustness",
        "small_cnn",
        "timm",
        "torchvision",
    ]
    with pytest.raises(DebuggableError, match=r"kind: got 'resnet'.*'small_cnn'.*'torchvision'"):
        load_backbone("resnet")
    with pytest.raises(DebuggableError, match=r"'wieghts' is not a parameter.*'weights'"):
        load_backbone("efficientnet_lite0", wieghts=None)
    with pytest.raises(DebuggableError, match="needs 'path'"):
        load_backbone("small_cnn")
    with pytest.raises(DebuggableError, match="needs 'checkpoint_path'"):
        check_backbone_params("robustness", {"arch": "resnet50"})
    check_backbone_params("torchvision", {"arch": "resnet18", "layer": "layer3", "device": "cpu"})
    with pytest.raises(DebuggableError, match="device"):
        load_backbone("efficientnet_lite0", weights=None, image_size=64, device="tpu9")


def test_optional_kinds_explain_missing_libraries(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(MissingDependencyError, match=r"debuggable\[vision\]"):
        load_backbone("torchvision", arch="resnet18")


def test_list_backbones():
    from debuggable.models import list_backbones

    assert list_backbones() == sorted(BACKBONE_KINDS) and "small_cnn" in list_backbones()
