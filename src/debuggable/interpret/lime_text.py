"""LIME over words for deep features of a text model (the paper's Fig. 2 and 8(a)).

For each sentence, random subsets of its distinct words are removed (every occurrence
of a word together, as LIME's bag-of-words mode), the encoder embeds each perturbed
sentence, and a weighted ridge regression of each requested feature's activation on
the word on/off pattern gives every word a weight: how much its presence raises the
feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_feature, check_float, check_int
from debuggable.interpret._surrogate import cosine_distance_to_ones, lime_kernel, weighted_ridge

_SPLIT = re.compile(r"(\W+)")
_SEPARATOR = re.compile(r"\W+")


def split_words(sentence: str, *, lowercase: bool = True) -> tuple[list[str], list[str | None]]:
    """Tokens of ``sentence`` (words and the separators between them) and, per token, its
    word key (lower-cased with ``lowercase``) or ``None`` for a separator.

    ``"".join(tokens) == sentence``.
    """
    tokens = [t for t in _SPLIT.split(sentence) if t != ""]
    keys = [None if _SEPARATOR.fullmatch(t) else (t.lower() if lowercase else t) for t in tokens]
    return tokens, keys


def remove_words(tokens: Sequence[str], keys: Sequence[str | None], keep: set[str]) -> str:
    """The sentence with every word whose key is not in ``keep`` removed (spaces collapsed)."""
    text = "".join(t for t, k in zip(tokens, keys) if k is None or k in keep)
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class WordLime:
    """LIME weights of the words of one sentence for several features.

    Attributes:
        sentence: the text explained.
        words: its M distinct words (keys), in order of first appearance.
        features: the F feature indices explained.
        weights: (F, M) surrogate weight of each word per feature (activation units;
            positive: the word raises the feature).
        intercept: (F,) the surrogate with every word removed.
        activation: (F,) each feature on the unperturbed sentence.
        score: (F,) weighted R^2 of each surrogate.
        n_samples: perturbed sentences evaluated.

    ``result[j]`` is ``{word: weight}`` for feature j.
    """

    sentence: str
    words: list[str]
    features: list[int]
    weights: np.ndarray
    intercept: np.ndarray
    activation: np.ndarray
    score: np.ndarray
    n_samples: int

    def _row(self, feature: int) -> int:
        try:
            return self.features.index(int(feature))
        except (ValueError, TypeError):
            raise DebuggableError(f"feature: {feature!r} was not explained here; expected one of {self.features}.") from None

    def as_dict(self, feature: int) -> dict[str, float]:
        """``{word: weight}`` for ``feature``."""
        row = self.weights[self._row(feature)]
        return {w: float(v) for w, v in zip(self.words, row)}

    def __getitem__(self, feature: int) -> dict[str, float]:
        return self.as_dict(feature)

    def top(self, feature: int, n: int = 5, *, sign: str = "positive") -> list[tuple[str, float]]:
        """The ``n`` words that raise (``"positive"``) or lower (``"negative"``) ``feature`` most."""
        row = self.weights[self._row(feature)]
        if sign not in ("positive", "negative"):
            raise DebuggableError(f"sign: got {sign!r}, expected 'positive' or 'negative'.")
        order = np.argsort(-row if sign == "positive" else row, kind="stable")
        keep = [i for i in order if (row[i] > 0 if sign == "positive" else row[i] < 0)]
        return [(self.words[i], float(row[i])) for i in keep[:n]]

    def to_dict(self) -> dict[str, Any]:
        return {"sentence": self.sentence, "words": self.words, "features": self.features,
                "weights": self.weights.tolist(), "intercept": self.intercept.tolist(),
                "activation": self.activation.tolist(), "score": self.score.tolist(), "n_samples": self.n_samples}


def _embedder(embed_fn: Any, device: Any) -> Callable[[list[str]], np.ndarray]:
    modality = getattr(embed_fn, "modality", None)
    if modality is not None and modality != "text":
        raise DebuggableError(
            f"embed_fn: word_lime explains text models, but this backbone's modality is {modality!r}; "
            "use image_lime for image models."
        )
    if not callable(embed_fn):
        raise DebuggableError(f"embed_fn: got a {type(embed_fn).__name__}, expected a callable list[str] -> (N, D) features.")
    if isinstance(embed_fn, torch.nn.Module) and device is not None:
        embed_fn = embed_fn.to(device)

    def run(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            out = embed_fn(list(texts))
        feats = getattr(out, "features", out)
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().float().cpu().numpy()
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != len(texts):
            raise DebuggableError(f"embed_fn: returned shape {feats.shape}, expected ({len(texts)}, D) features.")
        return feats

    return run


def word_lime(
    embed_fn: Any,
    sentences: Sequence[str],
    features: Sequence[int],
    *,
    n_samples: int = 200,
    seed: int = 0,
    batch_size: int = 256,
    alpha: float = 1.0,
    kernel_width: float = 0.25,
    lowercase: bool = True,
    progress: bool = False,
    device: Any = None,
) -> list[WordLime]:
    """LIME over words for each sentence and each requested feature.

    Args:
        embed_fn: a text :class:`debuggable.models.Backbone` (its ``features``) or any
            callable mapping a list of N strings to (N, D) features.
        sentences: the corpus, at least one string.
        features: feature indices j to explain (each in ``0..D-1``).
        n_samples: perturbed versions per sentence; the first is the sentence itself,
            each other removes a uniformly random number (1..M) of its M distinct words.
        seed: seeds the perturbations.
        batch_size: texts per ``embed_fn`` call (perturbations of several sentences share
            a batch).
        alpha: ridge penalty of the surrogate (>= 0).
        kernel_width: width of LIME's kernel on the cosine distance to the full sentence.
        lowercase: treat ``Good`` and ``good`` as one word.
        progress: show a progress bar over batches.
        device: where to move a backbone ``embed_fn`` (default: leave it).

    Returns:
        One :class:`WordLime` per sentence, in order; ``result[i][j]`` is the
        ``{word: weight}`` dict of sentence i for feature j.

    Raises:
        DebuggableError: for an empty corpus, a non-string sentence, no or out-of-range
            features, or an image model.
    """
    run = _embedder(embed_fn, device)
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise DebuggableError(f"sentences: got a {type(sentences).__name__}, expected a list of strings.")
    if len(sentences) == 0:
        raise DebuggableError("sentences: the corpus is empty; expected at least one sentence.")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise DebuggableError(f"sentences: item {i} is a {type(s).__name__}, expected a string.")
    if isinstance(features, (int, np.integer)) or not isinstance(features, Sequence) or len(features) == 0:
        raise DebuggableError(f"features: got {features!r}, expected a non-empty list of feature indices.")
    n_samples = check_int("n_samples", n_samples, minimum=2)
    seed = check_int("seed", seed)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    alpha = check_float("alpha", alpha)
    kernel_width = check_float("kernel_width", kernel_width, strict=True)
    dim = getattr(embed_fn, "feature_dim", None)
    if isinstance(dim, (int, np.integer)):
        feats = [check_feature(j, int(dim), "features") for j in features]
    else:
        feats = [j for j in features]

    rng = np.random.default_rng(seed)
    plans = []  # per sentence: (tokens, keys, words, z)
    texts: list[str] = []
    for s in sentences:
        tokens, keys = split_words(s, lowercase=lowercase)
        words = list(dict.fromkeys(k for k in keys if k is not None))
        m = len(words)
        z = np.ones((n_samples, m))
        if m:
            for r in range(1, n_samples):
                off = rng.choice(m, size=int(rng.integers(1, m + 1)), replace=False)
                z[r, off] = 0.0
        plans.append((words, z))
        for r in range(n_samples):
            keep = {w for w, on in zip(words, z[r]) if on}
            texts.append(s if r == 0 else remove_words(tokens, keys, keep))

    columns = np.empty((len(texts), len(feats)))
    checked = False
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="word LIME", unit="batch", leave=False)
    for lo in starts:
        out = run(texts[lo : lo + batch_size])
        if not checked:
            feats = [check_feature(j, out.shape[1], "features") for j in feats]
            checked = True
        columns[lo : lo + out.shape[0]] = out[:, feats]

    results = []
    for i, (s, (words, z)) in enumerate(zip(sentences, plans)):
        y = columns[i * n_samples : (i + 1) * n_samples]
        kernel = lime_kernel(cosine_distance_to_ones(z), kernel_width) if z.shape[1] else np.ones(n_samples)
        coef, intercept, r2 = weighted_ridge(z, y, kernel, alpha)
        results.append(WordLime(sentence=s, words=words, features=list(feats), weights=coef, intercept=intercept,
                                activation=y[0].copy(), score=r2, n_samples=n_samples))
    return results
