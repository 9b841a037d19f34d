import numpy as np
import pytest

from debuggable.debug import (
    BiasProbe,
    WordSubstitution,
    class_evidence,
    insert_word,
    probe_candidates,
    replace_word,
)
from debuggable.errors import DebuggableError
from debuggable.interpret import WordCloudSet

VOCAB = ["good", "great", "bad", "awful", "movie", "plot", "zxq"]


def bag_of_words(texts):
    """A frozen 'encoder' whose feature j counts vocabulary word j: exact and linear."""
    out = np.zeros((len(texts), len(VOCAB)))
    for i, t in enumerate(texts):
        for w in t.lower().replace(",", " ").split():
            if w in VOCAB:
                out[i, VOCAB.index(w)] += 1
    return out


def clouds_for(pos, neg):
    feats = sorted(set(pos) | set(neg))
    totals = {j: {**{w: 1.0 for w in pos.get(j, [])}, **{w: -1.0 for w in neg.get(j, [])}} for j in feats}
    counts = {j: {w: 1 for w in totals[j]} for j in feats}
    return WordCloudSet(features=feats, totals=totals, counts=counts)


def heads():
    # class 1 = positive; evidence for class 1 is weight[1] - weight[0].
    sparse_w = np.zeros((2, 7))
    sparse_w[1, 0] = 2.0   # 'good' is strong evidence
    dense_w = np.zeros((2, 7))
    dense_w[1, [0, 1, 2, 3, 4]] = [1.0, 1.0, -1.0, -1.0, 0.5]  # + a small 'movie' bias
    return {"sparse": (sparse_w, np.array([0.0, -1.0])), "dense": (dense_w, np.array([0.0, -0.25]))}


def test_helpers():
    assert replace_word("Good, good movie!", "good", "bad") == "bad, bad movie!"
    assert replace_word("goodness good", "good", "bad") == "goodness bad"
    assert insert_word("a b", "zxq", "end") == "a b zxq" and insert_word("a b", "zxq", "start") == "zxq a b"
    s = insert_word("one two three", "zxq", "random", np.random.default_rng(0))
    assert s.split().count("zxq") == 1 and s.replace("zxq ", "") == "one two three"
    w = np.array([[1.0, 0.0], [3.0, 1.0], [2.0, -1.0]])
    np.testing.assert_allclose(class_evidence(w, 1), [3.0 - 1.5, 1.0 - (0.0 - 1.0) / 2])


def test_word_substitution_by_hand():
    clouds = clouds_for(pos={0: ["good"], 1: ["great"], 4: ["movie"]}, neg={0: ["bad"], 1: ["awful"], 4: ["plot"]})
    texts = ["good movie", "great movie", "good great", "bad plot", "movie"]
    ws = WordSubstitution(bag_of_words, heads(), clouds, target=1, n_words=5, seed=0)
    res = ws.attribute(texts)
    # Predicted positive by both heads: 'good movie' (sparse 2-1=1>0; dense 1.5-.25>0) and 'good great'.
    # 'great movie': sparse logit diff -1 -> not positive for sparse. 'movie': sparse -1.
    assert res.rows == [0, 2]
    assert res.skipped["not predicted as target by every head"] == 3
    sparse = res.substitutions["sparse"]
    # Sparse can only use feature 0 ('good' -> 'bad'): good movie -> bad movie (diff -1): flips.
    assert [(s.feature, s.word, s.replacement, s.edited) for s in sparse] == [
        (0, "good", "bad", "bad movie"), (0, "good", "bad", "bad great")]
    assert all(s.flipped for s in sparse)
    assert res.flip_rate("sparse") == 1.0
    # Dense: each substitution computed by hand from the bag-of-words logits.
    for s in res.substitutions["dense"]:
        x = bag_of_words([s.edited])[0]
        w, b = heads()["dense"]
        logits = w @ x + b
        assert s.flipped == (logits.argmax() != 1)
        p1 = np.exp(logits[1]) / np.exp(logits).sum()
        assert s.score_after == pytest.approx(p1)
        assert s.word in {"good", "great", "movie"} and s.replacement in {"bad", "awful", "plot"}
    d = res.to_dict()
    assert d["sentences"] == 2 and set(d["heads"]) == {"sparse", "dense"}
    # Seeded: the same choices again.
    again = WordSubstitution(bag_of_words, heads(), clouds, target=1, n_words=5, seed=0).attribute(texts)
    assert [s.edited for s in again.substitutions["dense"]] == [s.edited for s in res.substitutions["dense"]]


def test_bias_probe_by_hand():
    w = np.zeros((2, 7))
    w[1, 0], w[1, 2], w[1, 6] = 1.0, -1.0, 3.0  # the trigger 'zxq' is strong evidence for class 1
    hs = {"sparse": (w, np.array([0.0, 0.0])), "dense": (w * 0.5, np.array([0.0, 0.0]))}
    texts = ["bad movie", "bad bad plot", "good movie", "bad good", "plot"]
    labels = np.array([0, 0, 1, 0, 1])
    probe = BiasProbe(bag_of_words, hs, classes=[0])
    res = probe.attribute(texts, labels, ["zxq", "movie"])
    # Correct and class 0: 'bad movie' (-1), 'bad bad plot' (-2); 'bad good' ties at 0 -> argmax 0, correct.
    assert res.rows.tolist() == [0, 1, 3]
    # +3 with zxq: logits diff 2, 1, 3 -> all flip (sparse); dense: 1, 0.5, 1.5 -> all flip.
    assert res.flip_rate("sparse", "zxq") == 1.0 and res.flip_rate("dense", "zxq") == 1.0
    assert res.flip_rate("sparse", "movie") == 0.0
    p_before = 1 / (1 + np.exp(-1.0))  # class-0 probability of 'bad movie' (diff -1)
    p_after = 1 / (1 + np.exp(2.0))
    assert res.score_change["sparse"][0, 0] == pytest.approx(p_after - p_before)
    assert res.examples["zxq"][0] == "bad movie zxq"
    table = res.table()
    assert table[0]["word"] == "zxq" and table[0]["flip_rate_sparse"] == 1.0


def test_probe_candidates_rank_the_trigger_first():
    clouds = clouds_for(pos={0: ["good"], 6: ["zxq"]}, neg={2: ["bad"], 0: ["awful"]})
    totals = clouds.totals
    totals[6]["zxq"] = 5.0
    w = np.zeros((2, 7))
    w[1, 0], w[1, 2], w[1, 6] = 1.0, -1.0, 3.0
    cands = probe_candidates(clouds, w, 1, n=5)
    # zxq: 3*5 = 15; good: 1*1; bad is in feature 2's negative cloud and e_2 < 0 -> pushes class 1 up: 1*1.
    assert cands[0] == ("zxq", pytest.approx(15.0))
    assert {c for c, _ in cands[1:]} == {"good", "bad"}


def test_bad_input():
    clouds = clouds_for(pos={0: ["good"]}, neg={0: ["bad"]})
    with pytest.raises(DebuggableError, match="empty"):
        WordSubstitution(bag_of_words, heads(), clouds).attribute([])
    with pytest.raises(DebuggableError, match="heads"):
        WordSubstitution(bag_of_words, {}, clouds).attribute(["good"])
    with pytest.raises(DebuggableError, match="target"):
        WordSubstitution(bag_of_words, heads(), clouds, target=5).attribute(["good"])
    with pytest.raises(DebuggableError, match="words"):
        BiasProbe(bag_of_words, heads()).attribute(["good"], np.array([1]), [" zxq"])
    with pytest.raises(DebuggableError, match="position"):
        BiasProbe(bag_of_words, heads(), position="middle").attribute(["good"], np.array([1]), ["zxq"])

    class ImageModel:
        modality = "image"

        def __call__(self, x):
            return x

    with pytest.raises(DebuggableError, match="modality"):
        BiasProbe(ImageModel(), heads()).attribute(["good"], np.array([1]), ["zxq"])
