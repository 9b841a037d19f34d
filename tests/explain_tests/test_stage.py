"""End to end: the explain_tests stage on a tiny run, its summary, report section and CLI."""

import json

import numpy as np
import pytest
import torch

from debuggable.cli import build_parser, main
from debuggable.pipeline import STAGES, StageContext, run_stage
from debuggable.report.html import build_report
from debuggable.run import (
    BugConfig,
    DataConfig,
    ExplainTestsConfig,
    ModelConfig,
    RunConfig,
    RunDirectory,
    dumps_config,
    load_config,
    read_json,
)

METHODS = ["saliency", "integrated_gradients", "guided_backprop"]


def tiny_config() -> RunConfig:
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="animal_mnist",
            params={"val_fraction": 0.1, "test_fraction": 0.3, "seed": 0, "limit_per_class": 80},
            bugs=[BugConfig(kind="spurious_patch", params={
                "target_class": 7, "train_fraction": 1.0, "test_fraction": 0.5,
                "patch": {"shape": "square", "size": 4, "colour": 1.0, "position": "top_left"}, "seed": 0})],
        ),
        model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                          train={"epochs": 4, "batch_size": 32, "lr": 5e-3, "optimizer": "adam"}),
        explain_tests=ExplainTestsConfig(
            methods=METHODS, examples=12, randomization_examples=6, n_boot=200,
            method_params={"integrated_gradients": {"n_steps": 8}},
            train={"epochs": 2, "batch_size": 32, "lr": 5e-3, "optimizer": "adam"}, train_limit_per_class=40,
        ),
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "run"
    run = RunDirectory.create(path, tiny_config())
    ctx = StageContext(device=torch.device("cpu"), progress=False, log=lambda msg: None)
    by_name = {s.name: s for s in STAGES}
    for name in ("data", "train", "explain_tests"):
        run_stage(by_name[name], run, ctx)
    return run


@pytest.mark.slow
def test_stage_writes_the_table_and_checks_the_findings(tiny_run):
    s = read_json(tiny_run.path / "explain_tests" / "summary.json")
    table = s["table"]
    keys = {"method", "bug", "metric", "value", "ci_low", "ci_high", "detected", "rule"}
    assert all(keys <= set(r) for r in table)
    assert {r["bug"] for r in table} == {"spurious_patch", "mislabels", "model_randomization", "ood"}
    primaries = [r for r in table if r["primary"] and not r["method"].endswith("(reference)")]
    assert {(r["method"], r["bug"]) for r in primaries} == {(m, b) for m in METHODS for b in
                                                            ("spurious_patch", "mislabels", "model_randomization", "ood")}
    for r in table:  # a percentile interval of a mean brackets the mean (not so for AUCs of few examples)
        if r["value"] is not None and r["ci_low"] is not None and "auc" not in r["metric"] and "map" not in r["metric"]:
            assert r["ci_low"] <= r["value"] + 1e-9 and r["value"] <= r["ci_high"] + 1e-9
    # The paper's qualitative findings, on this run's models.
    f = s["findings"]
    assert f["spurious_patch_detected_by"], f
    assert f["guided_backprop_insensitive_to_top_layer"] is True
    assert f["saliency_sensitive_to_top_layer"] is True
    assert f["integrated_gradients_sensitive_to_top_layer"] is True
    # Extra models under explain_tests/models, the panels and the CSV.
    for role in ("clean", "mislabelled"):
        assert (tiny_run.path / "explain_tests" / "models" / role / "model.safetensors").is_file()
    panels = np.load(tiny_run.path / "explain_tests" / "panels.npz")
    assert panels["spurious_patch/buggy/saliency"].shape[1:] == (28, 28)
    assert (tiny_run.path / "explain_tests" / "table.csv").read_text().count("\n") == len(table) + 1
    assert s["details"]["ood"]["ood_dataset"] == "digits"
    curves = s["details"]["model_randomization"]["curves"]
    assert len(curves["cascading"]["saliency"]["spearman"]) == len(s["details"]["model_randomization"]["layers"])


@pytest.mark.slow
def test_report_section_and_rerun_reuses_models(tiny_run):
    page = build_report(tiny_run).read_text()
    assert "Debugging tests for explanation methods" in page and "explain_tests_matrix.png" in page
    stage = next(s for s in STAGES if s.name == "explain_tests")
    assert stage.status(tiny_run) == "done"
    logs = []
    ctx = StageContext(device=torch.device("cpu"), progress=False, log=logs.append)
    run_stage(stage, tiny_run, ctx, force=True)
    assert any("reusing the clean model" in m for m in logs)


def test_cli_alias_options_and_validation(tmp_path):
    args = build_parser().parse_args(["explain-tests", "r", "--methods", "saliency,lime", "--examples", "8"])
    assert args.methods == "saliency,lime" and args.examples == 8
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.toml").write_text(dumps_config(tiny_config()))
    before = (run_dir / "run.toml").read_text()
    # A bad option fails before anything is written.
    assert main(["explain-tests", str(run_dir), "--methods", "saliency,nope", "--no-progress"]) == 2
    assert main(["explain-tests", str(run_dir), "--examples", "1", "--no-progress"]) == 2
    assert (run_dir / "run.toml").read_text() == before and not (run_dir / "explain_tests").exists()


def test_options_are_saved_to_the_config(tmp_path):
    from debuggable.pipeline.explain_tests_cli import apply_explain_tests_options

    config = tiny_config()
    args = build_parser().parse_args(["explain-tests", "r", "--bugs", "ood", "--n-boot", "50"])
    assert apply_explain_tests_options(config, args)
    assert config.explain_tests.bugs == ["ood"] and config.explain_tests.n_boot == 50
    assert config.explain_tests.methods == METHODS
    path = tmp_path / "run.toml"
    path.write_text(dumps_config(config))
    assert load_config(path).explain_tests == config.explain_tests
    assert not apply_explain_tests_options(config, build_parser().parse_args(["explain-tests", "r"]))
    json.dumps(config.model_dump(mode="json"))


def test_config_checks_name_the_setting():
    from debuggable.errors import DebuggableError
    from debuggable.pipeline import validate

    config = tiny_config()
    config.explain_tests.method_params = {"lime": {"samples": 10}}
    with pytest.raises(DebuggableError, match=r"method_params\.lime: 'samples'"):
        validate(config)
    config = tiny_config()
    config.explain_tests.methods = ["saliency", "deconvnet"]
    with pytest.raises(DebuggableError, match="'deconvnet'"):
        validate(config)
    config = tiny_config()
    config.explain_tests.ood_dataset = "vader_movies"
    with pytest.raises(DebuggableError, match="ood_dataset"):
        validate(config)
