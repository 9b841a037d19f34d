"""The ``failures`` stage on a tiny run: summary.json as the issue specifies, trees.json,
evidence files, the report section and the CLI sub-command."""

import numpy as np
import pytest

from debuggable.cli import main
from debuggable.errors import DebuggableError
from debuggable.pipeline import validate
from debuggable.run import FailureGroupConfig, RunDirectory, dumps_config, read_json

from tests.failures.conftest import run_stages, tiny_failures_config

MODE_KEYS = {"class", "grouping", "depth", "features", "rule", "ber", "er", "ec", "iv", "aler", "n", "failures"}

pytestmark = pytest.mark.slow


def test_stage_writes_the_summary_trees_evidence_and_report(tiny_extracted_run):
    run = RunDirectory.open(tiny_extracted_run)
    summaries = run_stages(run, ("failures", "report"))
    s = summaries["failures"]
    assert s == read_json(run.path / "failures" / "summary.json")
    modes = s["failure_modes"]
    assert modes, "the tiny model fails often enough to have failure modes"
    assert all(MODE_KEYS <= set(m) for m in modes)
    assert [m["iv"] for m in modes] == sorted((m["iv"] for m in modes), reverse=True)
    for m in modes:
        assert m["grouping"] in ("label", "prediction") and m["depth"] in (1, 2)
        assert all(0 <= j < s["feature_dim"] for j in m["features"])
        assert m["er"] >= m["ber"] + 0.1 - 1e-9 and m["ec"] >= 0.1 - 1e-9
        assert m["iv"] == pytest.approx(m["er"] * m["ec"])
    assert set(s["valid_leaf_fraction"]) == {"label", "prediction"}
    assert all(set(per) == {"1", "2"} for per in s["valid_leaf_fraction"].values())
    trees = read_json(run.path / "failures" / "trees.json")
    assert len(trees["trees"]) == s["trees"]
    # the trees.json root of every tree holds the whole group
    for t in trees["trees"]:
        assert t["tree"]["n"] == t["group"]["n"]
    assert 1 <= len(s["evidence"]) <= 2
    for rec in s["evidence"]:
        with np.load(run.path / rec["file"]) as z:
            assert z["top_images"].shape[:2] == (len(rec["features"]), 3)
            assert z["cams"].min() >= 0 and z["cams"].max() <= 1
    # the planted patch (class 3 of the test split) is checked on every tree of class 3
    checks = s["planted_checks"]
    assert {c["group"] for c in checks} <= {"label=3", "prediction=3"} and checks
    for c in checks:
        assert c["er"] == pytest.approx(c["er_by_hand"]) and c["ec"] == pytest.approx(c["ec_by_hand"])
    page = (run.path / "report" / "index.html").read_text()
    assert "Failure modes (Barlow, on robust features)" in page and "failures_mode_00.png" in page
    assert (run.path / "report" / "figures" / "failures_scatter.png").is_file()


def test_row_reader_over_the_store_gives_the_same_analysis(tiny_extracted_run):
    from debuggable.failures import analyze_failures
    from debuggable.pipeline.extract_stage import open_store
    from debuggable.pipeline.failures_stage import StoreRows

    run = RunDirectory.open(tiny_extracted_run)
    reader = open_store(run, "robust").split("test")
    preds = open_store(run, "inspected").split("test").read("preds")
    kw = dict(depths=(2,), k=4, min_failures=3, progress=False)
    a = analyze_failures(reader.to_numpy(), reader.labels, preds, **kw)
    b = analyze_failures(StoreRows(reader), reader.labels, preds, **kw)
    assert a.to_dict()["trees"] == b.to_dict()["trees"] and a.trees


def test_cli_subcommand_and_config_checks(tiny_extracted_run, tmp_path, capsys):
    assert main(["failures", str(tiny_extracted_run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[failures]" in out and "failures:" in out
    config = tiny_failures_config()
    config.failures.split = "nope"
    with pytest.raises(DebuggableError, match="failures.split 'nope' is not extracted"):
        validate(config)
    config = tiny_failures_config()
    config.failures.store = "other"
    with pytest.raises(DebuggableError, match="failures.store 'other'"):
        validate(config)
    config = tiny_failures_config()
    config.failures.groups = [FailureGroupConfig(name="pair", labels=[3, 5], preds=[3, 5])]
    assert "[[failures.groups]]" in dumps_config(config)
