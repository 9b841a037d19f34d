import numpy as np
import pytest
from sklearn.linear_model import Ridge

from debuggable.errors import DebuggableError
from debuggable.interpret import remove_words, split_words, word_lime
from debuggable.interpret._surrogate import cosine_distance_to_ones, lime_kernel

from .conftest import BagOfWordsEncoder, DotBackbone

VOCAB = ["good", "bad", "movie", "plot", "the", "great", "boring"]
TABLE = np.array([[2.0, -1.0], [-3.0, 0.5], [0.1, 0.0], [0.0, 0.7], [0.0, 0.0], [1.5, 0.2], [-2.0, 1.0]])


def test_split_and_remove_words_round_trip():
    tokens, keys = split_words("Good movie, good plot!")
    assert "".join(tokens) == "Good movie, good plot!"
    assert [k for k in keys if k] == ["good", "movie", "good", "plot"]
    assert remove_words(tokens, keys, {"movie", "plot"}) == "movie, plot!"
    assert remove_words(tokens, keys, set()) == ", !"


def test_word_lime_recovers_the_bag_of_words_surrogate():
    enc = BagOfWordsEncoder(VOCAB, TABLE)
    sentences = ["Good movie, good plot", "the plot was boring and bad", "great"]
    res = word_lime(enc, sentences, [0, 1], n_samples=60, alpha=0.0, seed=0, batch_size=50)
    assert len(res) == 3
    first = res[0]
    assert first.words == ["good", "movie", "plot"]
    # removing every "good" removes 2 x its row
    assert first[0] == pytest.approx({"good": 4.0, "movie": 0.1, "plot": 0.0}, abs=1e-6)
    assert first[1] == pytest.approx({"good": -2.0, "movie": 0.0, "plot": 0.7}, abs=1e-6)
    second = res[1]
    assert second[0]["boring"] == pytest.approx(-2.0, abs=1e-6) and second[0]["was"] == pytest.approx(0, abs=1e-6)
    assert second.top(0, 2, sign="negative") == [("bad", pytest.approx(-3.0)), ("boring", pytest.approx(-2.0))]
    np.testing.assert_allclose(second.activation, TABLE[[4, 3, 6, 1]].sum(0), atol=1e-5)
    assert res[2][0] == pytest.approx({"great": 1.5}, abs=1e-6)  # one word: remove it or not
    assert enc.calls == int(np.ceil(3 * 60 / 50))  # perturbations of several sentences share batches


def test_word_lime_weights_match_scikit_learn_ridge():
    enc = BagOfWordsEncoder(VOCAB, TABLE)
    sentence = "great plot, boring movie, bad the"

    def noisy(texts):
        base = enc(texts).numpy()
        return base**2  # not linear: the surrogate is a genuine ridge fit

    res = word_lime(noisy, [sentence], [0], n_samples=40, alpha=0.5, seed=3)[0]
    # Rebuild the same samples: the fit must equal sklearn's weighted ridge on them.
    rng = np.random.default_rng(3)
    m = len(res.words)
    z = np.ones((40, m))
    for r in range(1, 40):
        z[r, rng.choice(m, size=int(rng.integers(1, m + 1)), replace=False)] = 0
    tokens, keys = split_words(sentence)
    texts = [sentence] + [remove_words(tokens, keys, {w for w, on in zip(res.words, z[r]) if on}) for r in range(1, 40)]
    y = noisy(texts)[:, 0]
    s = lime_kernel(cosine_distance_to_ones(z), 0.25)
    ref = Ridge(alpha=0.5).fit(z, y, sample_weight=s)
    np.testing.assert_allclose(res.weights[0], ref.coef_, atol=1e-8)


def test_bad_input():
    enc = BagOfWordsEncoder(VOCAB, TABLE)
    with pytest.raises(DebuggableError, match="sentences: the corpus is empty"):
        word_lime(enc, [], [0])
    with pytest.raises(DebuggableError, match=r"features: index 2 is out of range; expected 0..1"):
        word_lime(enc, ["good"], [2])
    with pytest.raises(DebuggableError, match="word_lime explains text models, but this backbone's modality is 'image'"):
        word_lime(DotBackbone(np.zeros((4, 2))), ["good"], [0])
    with pytest.raises(DebuggableError, match="item 1 is a int"):
        word_lime(enc, ["good", 3], [0])
    with pytest.raises(DebuggableError, match="expected a non-empty list of feature indices"):
        word_lime(enc, ["good"], [])
    with pytest.raises(DebuggableError, match="was not explained here"):
        word_lime(enc, ["good"], [0], n_samples=4)[0][1]
