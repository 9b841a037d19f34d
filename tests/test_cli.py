"""End to end: the ``debuggable`` command on a tiny configuration (digits, one epoch)."""


import numpy as np
import pytest

from debuggable.cli import main
from debuggable.run import (
    DebugConfig,
    ExplainTestsConfig,
    FailuresConfig,
    InterpretConfig,
    RunConfig,
    dumps_config,
    read_json,
)
from tests.tiny_runs import digits_config


def tiny_config() -> RunConfig:
    """Every stage on, at the smallest settings that still exercise it."""
    return digits_config(
        robust="linf", chunk_rows=256,
        interpret=InterpretConfig(per_class=1, k=3, attack_steps=2, vis_steps=4, lime_samples=20, lime_segments=6,
                                  compare_images=2),
        failures=FailuresConfig(depths=[1, 2], k=4, min_failures=3, evidence_modes=1, evidence_k=2, attack_steps=2),
        debug=DebugConfig(pattern_features=1, pattern_images=40, max_cases=5),
        explain_tests=ExplainTestsConfig(
            methods=["saliency", "integrated_gradients", "guided_backprop", "grad_cam"], examples=4,
            randomization_examples=2, randomization_modes=["cascading"], n_boot=50,
            method_params={"integrated_gradients": {"n_steps": 4}},
            train={"epochs": 1, "batch_size": 64, "lr": 5e-3, "optimizer": "adam"}, train_limit_per_class=20),
    )


ALL_STAGES = ("data", "train", "extract", "failures", "fit", "evaluate", "interpret", "debug", "explain_tests", "report")
STAGE_DIRS = ("data", "models", "features", "failures", "glm", "layer", "evidence", "debug", "explain_tests", "report")


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(tiny_config()))
    return d


def test_run_all_stages_then_skip_then_partial_redo(run_dir, capsys):
    assert main(["run", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    manifest = read_json(run_dir / "manifest.json")
    assert {k: v["status"] for k, v in manifest["stages"].items()} == {s: "done" for s in ALL_STAGES}
    for stage_dir in STAGE_DIRS:
        assert (run_dir / stage_dir / "summary.json").is_file()
    assert (run_dir / "report" / "index.html").is_file()
    assert "report:" in out and "features:" in out

    train = read_json(run_dir / "models" / "summary.json")
    effect = train["models"]["inspected"]["spurious_patch"]
    assert effect["target_class"] == 3 and effect["images"] > 0
    assert 0.0 <= effect["predicted_target_without_patch"] <= 1.0
    assert train["attack"]["steps"] >= 10  # evaluated with a stronger attack than it trained with

    extract = read_json(run_dir / "features" / "summary.json")
    test = extract["stores"]["inspected"]["splits"]["test"]
    assert test["feature_dim"] == 16 and test["rows"] > 0
    assert 0.0 <= test["head_accuracy"] <= 1.0

    fit = read_json(run_dir / "glm" / "summary.json")
    assert fit["n_lambdas"] == 8 and fit["all_converged"]
    ev = read_json(run_dir / "layer" / "summary.json")
    assert ev["selection"]["rule"] == "accuracy" and len(ev["curve"]) == 8
    assert {(r["layer"], r["k"]) for r in ev["top_k"]} == {("dense", 1), ("dense", 4), ("sparse", 1), ("sparse", 4)}
    assert (run_dir / "layer" / "layer.safetensors").is_file()
    page = (run_dir / "report" / "index.html").read_text()
    assert "Sparse decision layer" in page and "Elastic-net regularisation path" in page

    # the later stages' summaries hold the keys their issues promise
    debug = read_json(run_dir / "debug" / "summary.json")
    assert {"errors", "explained_by_one_feature", "pattern_insertion_flip_rate"} <= set(debug)
    assert 0.0 <= debug["explained_by_one_feature"] <= 1.0
    failures = read_json(run_dir / "failures" / "summary.json")
    assert {"failure_modes", "valid_leaf_fraction"} <= set(failures)
    for mode in failures["failure_modes"]:
        assert {"class", "grouping", "depth", "features", "rule", "ber", "er", "ec", "iv", "aler", "n", "failures"} <= set(mode)
    table = read_json(run_dir / "explain_tests" / "summary.json")["table"]
    assert {r["method"] for r in table} >= {"saliency", "integrated_gradients", "guided_backprop", "grad_cam"}
    assert all({"bug", "metric", "value", "ci_low", "ci_high", "detected"} <= set(r) for r in table)

    # Everything is up to date: a rerun does nothing but say so.
    assert main(["run", str(run_dir), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("up to date") == len(ALL_STAGES)

    # Changing only the report title makes only the report stale.
    cfg = tiny_config()
    cfg.report.title = "renamed"
    (run_dir / "run.toml").write_text(dumps_config(cfg))
    assert main(["status", str(run_dir)]) == 0
    status = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    # (The human studies are off in the tiny runs; tests/studies covers them.)
    assert status == {s: "done" for s in ALL_STAGES} | {"report": "stale", "studies": "not needed"}

    # Changing only the selection rule redoes the choice of layer, not the path.
    cfg.evaluate.margin = 0.2
    (run_dir / "run.toml").write_text(dumps_config(cfg))
    assert main(["status", str(run_dir)]) == 0
    status = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert status["fit"] == "done" and status["evaluate"] == "stale"
    assert status["failures"] == "done" and status["interpret"] == "stale" and status["debug"] == "stale"


def test_stage_command_runs_its_dependencies_only(run_dir):
    assert main(["data", str(run_dir), "--no-progress"]) == 0
    manifest = read_json(run_dir / "manifest.json")
    assert list(manifest["stages"]) == ["data"]
    gt = read_json(run_dir / "data" / "ground_truth.json")
    assert "spurious_patch" in gt


def test_bad_config_fails_before_writing(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    cfg = tiny_config()
    cfg.data.name = "imagenet-from-the-internet"
    (d / "run.toml").write_text(dumps_config(cfg))
    assert main(["run", str(d)]) == 2
    err = capsys.readouterr().err
    assert "data.name 'imagenet-from-the-internet' is not a known data set" in err
    assert sorted(p.name for p in d.iterdir()) == ["run.toml"]


def test_init_writes_a_loadable_config(tmp_path, capsys):
    assert main(["init", str(tmp_path / "new"), "--demo"]) == 0
    assert main(["status", str(tmp_path / "new")]) == 0
    assert "missing" in capsys.readouterr().out
    assert main(["init", str(tmp_path / "new")]) == 2


def test_unknown_model_setting_is_named(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    cfg = tiny_config()
    cfg.model.params["depth"] = 50
    (d / "run.toml").write_text(dumps_config(cfg))
    assert main(["run", str(d)]) == 2
    assert "inspected model params: 'depth' is not a setting here" in capsys.readouterr().err


def test_demo_config_is_valid():
    from debuggable.pipeline import demo_config, validate

    validate(demo_config())


def test_pretrained_demo_config_is_valid():
    from debuggable.pipeline import pretrained_demo_config, validate

    cfg = pretrained_demo_config()
    validate(cfg)
    assert cfg.model.kind == "efficientnet_lite0" and cfg.robust_model is None


def test_training_is_reproducible_across_runs(tmp_path):
    """Two fresh run directories from one config train bit-identical models."""
    from safetensors.numpy import load_file

    weights = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        cfg = tiny_config()
        cfg.robust_model = None
        cfg.model.train["epochs"] = 1
        (d / "run.toml").write_text(dumps_config(cfg))
        assert main(["train", str(d), "--no-progress"]) == 0
        weights.append(load_file(str(d / "models" / "inspected" / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])

