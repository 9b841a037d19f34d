import numpy as np
import pytest
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret import ImageClassJudge
from debuggable.interpret.judge import image_features


def _stripes(n, vertical, rng, size=16):
    rows = np.arange(size)
    out = []
    for _ in range(n):
        period = rng.choice([4, 5, 6])
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * rows / period + phase)
        img = np.tile(wave[None, :], (size, 1)) if vertical else np.tile(wave[:, None], (1, size))
        out.append(img + 0.3 * rng.normal(size=(size, size)))
    return np.stack(out)[:, None]


def test_spectrum_features_ignore_circular_shifts_brightness_and_contrast():
    x = np.random.default_rng(0).normal(size=(1, 1, 16, 16))
    moved = 3.0 * np.roll(x, shift=(5, -3), axis=(2, 3)) + 7.0
    np.testing.assert_allclose(image_features(x), image_features(moved), atol=1e-9)


def test_judge_recognises_orientation_wherever_the_stripes_are():
    rng = np.random.default_rng(1)
    train = np.concatenate([_stripes(60, True, rng), _stripes(60, False, rng)])
    labels = np.repeat([0, 1], 60)
    judge = ImageClassJudge(C=1.0).fit(torch.as_tensor(train), labels)
    assert judge.chance == 0.5
    test = np.concatenate([_stripes(20, True, rng), _stripes(20, False, rng)])
    p = judge.class_probability(test, np.repeat([0, 1], 20))
    assert p.min() > 0.9
    wrong = judge.class_probability(test, np.repeat([1, 0], 20))
    np.testing.assert_allclose(p + wrong, 1.0, atol=1e-12)


def test_judge_bad_inputs():
    judge = ImageClassJudge()
    with pytest.raises(DebuggableError, match="call fit"):
        judge.class_probability(np.zeros((1, 1, 8, 8)), [0])
    with pytest.raises(DebuggableError, match="at least 2 classes"):
        judge.fit(np.random.default_rng(0).normal(size=(4, 1, 8, 8)), [3, 3, 3, 3])
    with pytest.raises(DebuggableError, match=r"expected \(N, C, H, W\)"):
        judge.fit(np.zeros((4, 8, 8)), [0, 1, 0, 1])
    with pytest.raises(DebuggableError, match="features"):
        ImageClassJudge(features="wavelets")
    rng = np.random.default_rng(2)
    judge.fit(rng.normal(size=(6, 1, 8, 8)), [0, 1, 2, 0, 1, 2])
    with pytest.raises(DebuggableError, match=r"\[7\] never occur"):
        judge.class_probability(rng.normal(size=(1, 1, 8, 8)), [7])
    with pytest.raises(DebuggableError, match="one per image"):
        judge.class_probability(rng.normal(size=(2, 1, 8, 8)), [0])


def test_judge_reaches_the_optimum_of_the_uncentred_problem():
    # Centring is a reparametrisation: the judge must give the probabilities of the
    # L2-penalised logistic regression on the raw judge inputs, solved tightly.
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    images = np.concatenate([_stripes(40, True, rng), _stripes(40, False, rng), rng.normal(size=(40, 1, 16, 16))])
    labels = np.repeat([0, 1, 2], 40)
    judge = ImageClassJudge(C=0.05).fit(torch.as_tensor(images), labels)
    oracle = LogisticRegression(C=0.05, tol=1e-12, max_iter=100_000).fit(image_features(images), labels)
    test = np.concatenate([_stripes(5, True, rng), rng.normal(size=(5, 1, 16, 16))])
    classes = np.array([0] * 5 + [2] * 5)
    expected = oracle.predict_proba(image_features(test))[np.arange(10), classes]
    np.testing.assert_allclose(judge.class_probability(test, classes), expected, atol=2e-3)
