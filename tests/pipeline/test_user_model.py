"""A user's own model through ``debuggable run``: ``kind = "module"`` and ``kind = "exported"``.

The network is a class written by the test into the run directory and trained there
for about a second; the same network exported with ``torch.export`` is the run's robust
model, so one run checks that both kinds give the same features. Every stage runs,
``explain_tests`` included. Each bad setting fails before anything is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from debuggable.cli import main
from debuggable.features import FeatureStore
from debuggable.run import (
    DebugConfig,
    ExplainTestsConfig,
    FailuresConfig,
    InterpretConfig,
    ModelConfig,
    dumps_config,
    read_json,
)
from tests.pipeline.user_model_kit import export_program, script_module, train_weights, write_package
from tests.tiny_runs import digits_config

ALL_STAGES = ("data", "extract", "failures", "fit", "evaluate", "interpret", "debug", "explain_tests", "report")
TINY_TESTS = ExplainTestsConfig(
    methods=["saliency", "integrated_gradients", "guided_backprop", "grad_cam"], examples=4, randomization_examples=2,
    randomization_modes=["cascading"], n_boot=50, method_params={"integrated_gradients": {"n_steps": 4}},
    train={"epochs": 1, "batch_size": 64, "lr": 5e-3, "optimizer": "adam"}, train_limit_per_class=20)


def module_table(**changes) -> ModelConfig:
    base = dict(kind="module", factory="tinynet.model:build", params={"num_classes": 10, "width": 8},
                weights="weights.pt", layer="relu2", mean=[0.5], std=[0.5])
    return ModelConfig(**(base | changes))


def exported_table(**changes) -> ModelConfig:
    return ModelConfig(**(dict(kind="exported", path="tinynet.pt2", layer="relu2", mean=[0.5], std=[0.5]) | changes))


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The package, its trained weights and the exported program, in a directory of their own."""
    d = tmp_path_factory.mktemp("user")
    write_package(d)
    net = train_weights(d, d / "weights.pt")
    export_program(net, d / "tinynet.pt2")
    script_module(net, d / "tinynet.ts")
    partial = {k: v for k, v in net.state_dict().items() if k != "head.bias"} | {"head.scale": torch.ones(1)}
    torch.save(partial, d / "partial.pt")
    torch.save({"model": net, "epoch": 3}, d / "pickled.pt")  # a whole pickled module, not a state dict
    train_weights(d, d / "wide.pt", width=12, epochs=1)
    return d


def _run_dir(tmp_path: Path, user_files: Path, config) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("tinynet", "weights.pt", "tinynet.pt2", "tinynet.ts", "wide.pt", "partial.pt", "pickled.pt"):
        src = user_files / name
        if src.is_dir():
            (run / name).mkdir()
            for f in src.iterdir():
                if f.is_file():
                    (run / name / f.name).write_bytes(f.read_bytes())
        else:
            (run / name).write_bytes(src.read_bytes())
    (run / "run.toml").write_text(dumps_config(config))
    return run


def test_user_module_and_exported_program_through_every_stage(tmp_path, user_files, capsys):
    config = digits_config(
        interpret=InterpretConfig(per_class=1, k=3, attack_steps=2, vis_steps=4, lime_samples=20, lime_segments=6,
                                  compare_images=2),
        failures=FailuresConfig(depths=[1, 2], k=4, min_failures=3, evidence_modes=1, evidence_k=2, attack_steps=2),
        debug=DebugConfig(pattern_features=1, pattern_images=40, max_cases=5),
        explain_tests=TINY_TESTS)
    config.model = module_table()
    config.robust_model = exported_table()
    run = _run_dir(tmp_path, user_files, config)

    assert main(["run", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    manifest = read_json(run / "manifest.json")
    assert {k: v["status"] for k, v in manifest["stages"].items()} == {s: "done" for s in ALL_STAGES}
    assert "model:    inspected: module tinynet.model:build, layer 'relu2' (not trained here)" in out
    assert not list(run.rglob("__pycache__")), "importing the user's package wrote into the run directory"

    # The exported program gives the same features, logits and spatial maps as the module.
    for split in ("train", "test"):
        a = FeatureStore(run / "features" / "inspected").split(split)
        b = FeatureStore(run / "features" / "robust").split(split)
        for array in ("features", "logits", "spatial"):
            np.testing.assert_allclose(a.to_numpy(array), b.to_numpy(array), rtol=1e-5, atol=1e-6)
    extract = read_json(run / "features" / "summary.json")
    assert extract["stores"]["inspected"]["backbone"]["feature_dim"] == 16
    # The user's own head classifies the test digits well above chance (0.1).
    assert extract["stores"]["inspected"]["splits"]["test"]["head_accuracy"] > 0.3

    et = read_json(run / "explain_tests" / "summary.json")
    assert et["recipe"]["kind"] == "full" and et["skipped_methods"] == {}
    by_bug = {r["bug"]: r["model"] for r in et["table"]}
    assert by_bug["model_randomization"] == by_bug["ood"] == "inspected model (module tinynet.model:build), as it is"
    assert "tinynet.model:build(**params) freshly initialised and trained here" in by_bug["spurious_patch"]
    assert "with the run's planted patch vs without it" in by_bug["spurious_patch"]
    assert "labels flipped" in by_bug["mislabels"]
    assert set(et["models"]) == {"clean", "patched", "mislabelled"}
    assert et["details"]["model_randomization"]["layers"][0] == "backbone.model.head"
    table_csv = (run / "explain_tests" / "table.csv").read_text().splitlines()
    assert table_csv[0].split(",")[-1] == "model"
    assert "measured on" in (run / "report" / "index.html").read_text()

    # Retrained weights in the same file make the stages that read them stale.
    assert main(["status", str(run)]) == 0
    assert "extract    done" in capsys.readouterr().out
    train_weights(run, run / "weights.pt", epochs=1, seed=1)
    assert main(["status", str(run)]) == 0
    status = capsys.readouterr().out
    assert "extract    stale" in status and "data       done" in status


def test_exported_model_explain_tests_retrain_only_a_head(tmp_path, user_files):
    config = digits_config(explain_tests=TINY_TESTS.model_copy(update={"bugs": ["spurious_patch", "model_randomization"]}))
    config.model = exported_table()
    run = _run_dir(tmp_path, user_files, config)
    assert main(["explain-tests", str(run), "--no-progress"]) == 0
    et = read_json(run / "explain_tests" / "summary.json")
    assert et["recipe"]["kind"] == "head" and "no factory" in et["recipe"]["reason"]
    # The unflattened program has no nn.ReLU modules: guided backpropagation would be a plain gradient.
    assert "guided_backprop" in et["skipped_methods"] and "guided_backprop" not in et["methods"]
    rows = {r["bug"]: r["model"] for r in et["table"]}
    assert rows["spurious_patch"].startswith("a linear head on the inspected model's frozen 'relu2' features")
    assert rows["model_randomization"] == "inspected model (exported tinynet.pt2), as it is"
    assert et["details"]["model_randomization"]["layers"]  # parameters re-initialised in the program's sub-modules


def test_torchscript_file_reads_features_from_a_method(tmp_path, user_files):
    from debuggable.models.user_module import user_backbone

    net_pt2 = user_backbone("exported", channels=1, path=user_files / "tinynet.pt2", layer="relu2", mean=[0.5], std=[0.5])
    scripted = user_backbone("exported", channels=1, path=user_files / "tinynet.ts", layer="forward_features",
                             mean=[0.5], std=[0.5], input_shape=(1, 8, 8))
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        a, b = net_pt2(x), scripted(x)
    torch.testing.assert_close(a.features, b.features)
    torch.testing.assert_close(a.logits, b.logits)
    assert scripted.feature_dim == 16 and scripted.has_spatial


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


BAD_SETTINGS = [
    ("factory module missing", dict(model=module_table(factory="nonet.model:build")),
     r"^model\.factory: module 'nonet\.model' of 'nonet\.model:build' cannot be imported \(no module named 'nonet'"),
    ("factory malformed", dict(model=module_table(factory="tinynet.model.build")),
     r"^model\.factory: got 'tinynet\.model\.build', expected 'package\.module:callable'"),
    ("factory callable missing", dict(model=module_table(factory="tinynet.model:bild")),
     r"^model\.factory: module 'tinynet\.model' has no 'bild'; expected one of its callables \['TinyNet', 'build'\]\.$"),
    ("factory params", dict(model=module_table(params={"classes": 10})),
     r"^model\.params: 'tinynet\.model:build' cannot be called with \['classes'\]"),
    ("weights missing", dict(model=module_table(weights="nothere.pt")),
     r"^model\.weights: '.*nothere\.pt' does not exist; expected a state-dict file"),
    ("weights mismatched", dict(model=module_table(weights="wide.pt")),
     r"^model\.weights: .*wide\.pt' does not fit TinyNet built from these params: 5 of another shape \(e\.g\. 'conv1\.weight': \(12, 1, 3, 3\) in the file, \(8, 1, 3, 3\) in the model\); expected"),
    ("weights keys", dict(model=module_table(weights="partial.pt")),
     r"^model\.weights: .*partial\.pt' does not fit TinyNet built from these params: 1 of its keys missing "
     r"\(e\.g\. \['head\.bias'\]\), 1 unexpected \(e\.g\. \['head\.scale'\]\); expected"),
    ("weights pickled", dict(model=module_table(weights="pickled.pt")),
     r"^model\.weights: .*pickled\.pt' holds pickled Python objects besides tensors; expected a weights-only checkpoint"),
    ("layer wrong", dict(model=module_table(layer="relu9")),
     r"^model\.layer: 'relu9' is not a sub-module of TinyNet; closest matches are \['relu2', 'relu1'\]"),
    ("input does not fit", dict(model=module_table(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])),
     r"^model\.image_size: the model cannot take the data's images as preprocessed \(3x8x8: RuntimeError"),
    ("exported file missing", dict(model=exported_table(path="gone.pt2")),
     r"^model\.path: '.*gone\.pt2' does not exist; expected a torch\.export \(\.pt2\) or TorchScript file\.$"),
    ("exported not an archive", dict(model=exported_table(path="weights.pt")),
     r"^model\.path: '.*weights\.pt' is a zip archive but neither a torch\.export program nor a TorchScript module"),
    ("exported layer wrong", dict(model=exported_table(layer="relu9")),
     r"^model\.layer: 'relu9' is not a sub-module of UnflattenedModule"),
    ("torchscript layer is a sub-module", dict(model=exported_table(path="tinynet.ts", layer="relu2")),
     r"^model\.layer: 'relu2' is a sub-module of the TorchScript file, and TorchScript modules cannot be hooked"),
    ("setting of another kind", dict(model=ModelConfig(kind="small_cnn", params={"width": 8, "feature_dim": 16},
                                                         factory="tinynet.model:build")),
     r"^model\.factory: is a setting of kind 'module', not of kind 'small_cnn'"),
    ("robust model too", dict(robust_model=module_table(layer="conv9")),
     r"^robust_model\.layer: 'conv9' is not a sub-module of TinyNet"),
    ("retrain full on exported", dict(model=exported_table(), explain_tests=TINY_TESTS.model_copy(update={"retrain": "full"})),
     r"^explain_tests\.retrain: 'full' rebuilds the network from its factory, and kind 'exported' has none"),
]


@pytest.mark.parametrize("name,sections,message", BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_setting_one_sentence_and_nothing_written(tmp_path, user_files, capsys, name, sections, message):
    config = digits_config(**{k: v for k, v in sections.items() if k != "model"})
    config.model = sections.get("model", module_table())
    run = _run_dir(tmp_path, user_files, config)
    before = _snapshot(run)
    assert main(["run", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("debuggable: error: ")
    msg = err[len("debuggable: error: "):]
    assert re.search(message, msg), msg
    assert msg.endswith(".") and "\n" not in msg and not re.search(r"\.\s+[A-Z]", msg), msg  # one sentence
    assert _snapshot(run) == before, "a bad setting wrote into the run directory"
    assert not (run / "manifest.json").exists()


def test_init_writes_a_commented_template_that_loads(tmp_path, capsys):
    from debuggable.run import load_config

    for kind in ("module", "exported"):
        out = tmp_path / kind
        assert main(["init", str(out), "--model", kind]) == 0
        text = (out / "run.toml").read_text()
        assert "# EDIT" in text and f'kind = "{kind}"' in text
        config = load_config(out / "run.toml")
        assert config.model.kind == kind and config.model.layer == "features"
        assert config.data.name == "image_folder"
    assert "wrote" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "module" / "run.toml")
    assert main(["init", str(tmp_path / "both"), "--demo", "--model", "module"]) == 2
    assert not (tmp_path / "both").exists()
