import numpy as np
import pytest
from PIL import Image

from debuggable.errors import DebuggableError
from debuggable.interpret import WordCloudSet, WordLime, draw_word_cloud, word_clouds


def _wl(words, weights, features=(0, 1)):
    w = np.asarray(weights, dtype=float)
    return WordLime(sentence=" ".join(words), words=list(words), features=list(features), weights=w,
                    intercept=np.zeros(len(features)), activation=np.zeros(len(features)),
                    score=np.ones(len(features)), n_samples=10)


def test_aggregation_by_hand():
    results = [
        _wl(["good", "plot"], [[1.0, 0.5], [-0.2, 0.1]]),
        _wl(["good", "bad"], [[0.5, -2.0], [0.3, 0.4]]),
        _wl(["bad", "dull"], [[-1.0, -0.5], [0.0, 0.9]]),
    ]
    clouds = word_clouds(results)
    assert clouds.features == [0, 1] and clouds.n_sentences == 3
    assert clouds.weights(0) == pytest.approx({"good": 1.5, "plot": 0.5, "bad": -3.0, "dull": -0.5})
    assert clouds.positive(0, 5) == [("good", pytest.approx(1.5)), ("plot", pytest.approx(0.5))]
    assert clouds.negative(0, 1) == [("bad", pytest.approx(-3.0))]
    assert clouds.positive(1, 2) == [("dull", pytest.approx(0.9)), ("bad", pytest.approx(0.4))]
    mean = word_clouds(results, aggregate="mean", features=[0])
    assert mean.weights(0)["bad"] == pytest.approx(-1.5) and mean.features == [0]
    frequent = word_clouds(results, min_count=2)
    assert set(frequent.weights(0)) == {"good", "bad"}
    again = WordCloudSet.from_dict(clouds.to_dict())
    assert again.weights(0) == clouds.weights(0) and again.negative(1) == clouds.negative(1)


def test_draw_word_cloud_writes_a_png(tmp_path):
    path = draw_word_cloud({"good": 3.0, "great": 1.0, "fine": 0.2}, tmp_path / "pos.png", width=200, height=120)
    assert Image.open(path).size == (200, 120)
    path = draw_word_cloud([("bad", -2.0), ("dull", -0.5)], tmp_path / "neg.png", width=200, height=120)
    assert path.is_file()


def test_bad_input(tmp_path):
    with pytest.raises(DebuggableError, match="the corpus is empty"):
        word_clouds([])
    with pytest.raises(DebuggableError, match="aggregate: got 'max'"):
        word_clouds([_wl(["a"], [[1.0], [1.0]])], aggregate="max")
    with pytest.raises(DebuggableError, match=r"features: \[7\] were not explained"):
        word_clouds([_wl(["a"], [[1.0], [1.0]])], features=[7])
    clouds = word_clouds([_wl(["a"], [[1.0], [1.0]])])
    with pytest.raises(DebuggableError, match="feature: 5 has no word cloud here"):
        clouds.positive(5)
    with pytest.raises(DebuggableError, match="no word has a non-zero weight"):
        draw_word_cloud({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
