import json

import numpy as np
import pytest
import torch
from torch import nn

import debuggable
from debuggable.errors import DebuggableError
from debuggable.models import (
    SmallCNN,
    SmallCNNBackbone,
    TrainConfig,
    load_model,
    read_model_info,
    save_model,
)


def test_round_trip_reproduces_logits_exactly(trained_cnn, digits, tmp_path):
    x, _ = digits[1].batch(np.arange(50))
    cfg = TrainConfig(epochs=5, batch_size=64, lr=1e-2)
    out = save_model(trained_cnn, tmp_path / "m", config=cfg, metrics={"val_accuracy": np.float64(0.99)})
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]  # no temp files left
    loaded = load_model(out)
    assert isinstance(loaded, SmallCNN) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), trained_cnn(x))
    for k, v in trained_cnn.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    info = read_model_info(out)
    assert info["architecture"] == "small_cnn"
    assert info["init_kwargs"] == trained_cnn.init_kwargs
    assert info["config"]["lr"] == 1e-2 and info["metrics"] == {"val_accuracy": 0.99}
    assert info["debuggable_version"] == debuggable.__version__ and info["format_version"] == 1


def test_saving_a_backbone_and_overwriting(trained_cnn, tmp_path):
    save_model(SmallCNN(width=4, feature_dim=8), tmp_path, config={"note": "first"})
    save_model(SmallCNNBackbone(trained_cnn), tmp_path, config={"note": "second"})
    assert read_model_info(tmp_path)["config"] == {"note": "second"}
    assert load_model(tmp_path).init_kwargs == trained_cnn.init_kwargs


def test_nothing_written_for_bad_input(tmp_path):
    target = tmp_path / "never"
    with pytest.raises(DebuggableError, match="JSON"):
        save_model(SmallCNN(width=4, feature_dim=8), target, config={"bad": object()})
    with pytest.raises(DebuggableError, match="JSON"):
        save_model(SmallCNN(width=4, feature_dim=8), target, metrics={"acc": float("nan")})
    with pytest.raises(DebuggableError, match="built-in model"):
        save_model(nn.Linear(2, 2), target)
    assert not target.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DebuggableError, match="not a directory"):
        save_model(SmallCNN(width=4, feature_dim=8), tmp_path / "file")


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    return save_model(SmallCNN(width=4, feature_dim=8), tmp_path / "saved", config={})


def _edit_json(directory, **changes):
    info = json.loads((directory / "model.json").read_text())
    info.update(changes)
    (directory / "model.json").write_text(json.dumps(info))


def test_missing_and_corrupt_directories(saved, tmp_path):
    with pytest.raises(DebuggableError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(DebuggableError, match="no model.json"):
        load_model(tmp_path)
    (saved / "model.json").write_text("{not json")
    with pytest.raises(DebuggableError, match="not valid JSON"):
        load_model(saved)


def test_unknown_architecture_and_newer_format(saved):
    _edit_json(saved, architecture="transformer9000")
    with pytest.raises(DebuggableError, match=r"architecture 'transformer9000'.*small_cnn"):
        load_model(saved)
    _edit_json(saved, architecture="small_cnn", format_version=99)
    with pytest.raises(DebuggableError, match="format_version 99"):
        load_model(saved)


def test_missing_or_damaged_weights(saved):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(DebuggableError, match="checksum"):
        load_model(saved)
    _edit_json(saved, weights_sha256=None)
    with pytest.raises(DebuggableError, match="safetensors"):
        load_model(saved)
    weights.unlink()
    with pytest.raises(DebuggableError, match="no model.safetensors"):
        load_model(saved)


def test_incompatible_weights(saved):
    _edit_json(saved, init_kwargs={"in_channels": 1, "num_classes": 10, "width": 6, "feature_dim": 8})
    with pytest.raises(DebuggableError, match="do not fit small_cnn"):
        load_model(saved)
    _edit_json(saved, init_kwargs={"depth": 3})
    with pytest.raises(DebuggableError, match="cannot build"):
        load_model(saved)


def test_training_results_serialise_into_model_json(digits, tmp_path):
    from debuggable.models import train_classifier

    from .conftest import ArrayDataset

    small = ArrayDataset(*digits[0].batch(np.arange(64)))
    model = SmallCNN(width=4, feature_dim=8)
    result = train_classifier(model, small, config={"epochs": 1, "batch_size": 32, "device": "cpu"}, progress=False)
    save_model(model, tmp_path, config={"train": result.config, "history": result.history}, metrics={"result": result})
    info = read_model_info(tmp_path)
    assert info["config"]["history"][0]["epoch"] == 1 and info["config"]["train"]["epochs"] == 1
    assert info["metrics"]["result"]["wall_time_s"] == result.seconds
