"""Word clouds per feature: LIME word weights aggregated over a corpus (the paper's Fig. 2, 8(a)).

For each feature, every word's LIME weights across the sentences it occurs in are
summed (or averaged); words with the largest positive totals drive the feature up,
those with the most negative totals drive it down. :func:`draw_word_cloud` draws
either list with the ``wordcloud`` package, word size proportional to |weight|.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.interpret._checks import check_int
from debuggable.interpret.lime_text import WordLime

AGGREGATES = ("sum", "mean")


@dataclass
class WordCloudSet:
    """Aggregated word weights per feature.

    Attributes:
        features: the feature indices covered.
        totals: feature -> {word: summed LIME weight over the corpus}.
        counts: feature -> {word: number of sentences the word was weighted in}.
        aggregate: ``"sum"`` or ``"mean"``: what :meth:`weights`, :meth:`positive` and
            :meth:`negative` report.
        n_sentences: sentences aggregated.
        min_count: words seen in fewer sentences are left out of the lists.
    """

    features: list[int]
    totals: dict[int, dict[str, float]]
    counts: dict[int, dict[str, int]]
    aggregate: str = "sum"
    n_sentences: int = 0
    min_count: int = 1
    _cache: dict[int, dict[str, float]] = field(default_factory=dict, repr=False)

    def _check(self, feature: Any) -> int:
        if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or int(feature) not in self.totals:
            raise DebuggableError(f"feature: {feature!r} has no word cloud here; expected one of {self.features}.")
        return int(feature)

    def weights(self, feature: int) -> dict[str, float]:
        """``{word: aggregated weight}`` for ``feature`` (words seen at least ``min_count`` times)."""
        feature = self._check(feature)
        if feature not in self._cache:
            tot, cnt = self.totals[feature], self.counts[feature]
            self._cache[feature] = {
                w: (v if self.aggregate == "sum" else v / cnt[w]) for w, v in tot.items() if cnt[w] >= self.min_count
            }
        return self._cache[feature]

    def positive(self, feature: int, n: int = 20) -> list[tuple[str, float]]:
        """The ``n`` words with the largest positive weight for ``feature``, largest first."""
        n = check_int("n", n)
        items = [(w, v) for w, v in self.weights(feature).items() if v > 0]
        return sorted(items, key=lambda t: (-t[1], t[0]))[:n]

    def negative(self, feature: int, n: int = 20) -> list[tuple[str, float]]:
        """The ``n`` words with the most negative weight for ``feature`` (weights < 0), most negative first."""
        n = check_int("n", n)
        items = [(w, v) for w, v in self.weights(feature).items() if v < 0]
        return sorted(items, key=lambda t: (t[1], t[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "aggregate": self.aggregate, "n_sentences": self.n_sentences,
                "min_count": self.min_count,
                "totals": {str(j): self.totals[j] for j in self.features},
                "counts": {str(j): self.counts[j] for j in self.features}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WordCloudSet":
        return cls(features=[int(j) for j in d["features"]],
                   totals={int(j): {w: float(v) for w, v in t.items()} for j, t in d["totals"].items()},
                   counts={int(j): {w: int(v) for w, v in t.items()} for j, t in d["counts"].items()},
                   aggregate=d.get("aggregate", "sum"), n_sentences=int(d.get("n_sentences", 0)),
                   min_count=int(d.get("min_count", 1)))


def word_clouds(
    results: Sequence[WordLime],
    *,
    features: Sequence[int] | None = None,
    aggregate: str = "sum",
    min_count: int = 1,
) -> WordCloudSet:
    """Aggregate per-sentence word LIME weights into one word cloud per feature.

    Args:
        results: :func:`word_lime` output over a corpus (at least one sentence).
        features: which features (default: every feature the results explain).
        aggregate: ``"sum"`` (total effect over the corpus: frequent, consistent words
            stand out) or ``"mean"`` (average effect per sentence the word occurs in).
        min_count: leave out words weighted in fewer sentences than this.

    Returns:
        :class:`WordCloudSet`.
    """
    if isinstance(results, WordLime) or not isinstance(results, Sequence):
        raise DebuggableError(f"results: got a {type(results).__name__}, expected a list of WordLime (word_lime's output).")
    if len(results) == 0:
        raise DebuggableError("results: the corpus is empty; expected word_lime results for at least one sentence.")
    for i, r in enumerate(results):
        if not isinstance(r, WordLime):
            raise DebuggableError(f"results: item {i} is a {type(r).__name__}, expected a WordLime.")
    if aggregate not in AGGREGATES:
        raise DebuggableError(f"aggregate: got {aggregate!r}, expected one of {list(AGGREGATES)}.")
    min_count = check_int("min_count", min_count, minimum=1)
    available = list(dict.fromkeys(j for r in results for j in r.features))
    feats = available if features is None else [int(j) for j in features]
    missing = [j for j in feats if j not in available]
    if missing or not feats:
        raise DebuggableError(f"features: {missing or feats} were not explained by word_lime; expected some of {available}.")
    totals: dict[int, dict[str, float]] = {j: {} for j in feats}
    counts: dict[int, dict[str, int]] = {j: {} for j in feats}
    for r in results:
        for j in feats:
            if j not in r.features:
                continue
            row = r.weights[r.features.index(j)]
            tot, cnt = totals[j], counts[j]
            for w, v in zip(r.words, row):
                tot[w] = tot.get(w, 0.0) + float(v)
                cnt[w] = cnt.get(w, 0) + 1
    return WordCloudSet(features=feats, totals=totals, counts=counts, aggregate=aggregate,
                        n_sentences=len(results), min_count=min_count)


def draw_word_cloud(
    weights: dict[str, float] | Sequence[tuple[str, float]],
    path: str | os.PathLike,
    *,
    width: int = 400,
    height: int = 240,
    max_words: int = 60,
    colormap: str | None = None,
    seed: int = 0,
) -> Path:
    """Draw a word cloud, word size proportional to |weight|, into a PNG file.

    Args:
        weights: ``{word: weight}`` or ``[(word, weight), ...]`` (e.g.
            ``WordCloudSet.positive(j)`` or ``.negative(j)``); signs are ignored.
        path: the PNG to write (atomically).
        width, height: image size in pixels.
        max_words: draw at most this many words (the heaviest).
        colormap: a matplotlib colour map (default: greens when every weight is
            positive, reds when every weight is negative, else viridis).
        seed: seeds the layout.

    Returns:
        ``path`` as a ``Path``.
    """
    from wordcloud import WordCloud

    from debuggable.run import atomic_write_file

    items = list(weights.items()) if isinstance(weights, dict) else list(weights)
    try:
        freqs = {str(w): abs(float(v)) for w, v in items if float(v) != 0 and np.isfinite(float(v))}
    except (TypeError, ValueError):
        raise DebuggableError("weights: expected {word: number} or (word, number) pairs.") from None
    if not freqs:
        raise DebuggableError("weights: no word has a non-zero weight; expected at least one word to draw.")
    width = check_int("width", width, minimum=16)
    height = check_int("height", height, minimum=16)
    max_words = check_int("max_words", max_words, minimum=1)
    if colormap is None:
        signs = {np.sign(float(v)) for _, v in items if float(v) != 0}
        colormap = "Greens" if signs == {1.0} else "Reds" if signs == {-1.0} else "viridis"
    import matplotlib

    cmap = matplotlib.colormaps[colormap]
    top = max(freqs.values())

    def colour(word: str, **_: Any) -> str:
        # Heavier words darker; the pale end of the map is skipped so words stay legible on white.
        r, g, b, _a = cmap(0.45 + 0.55 * freqs.get(word, 0.0) / top)
        return f"rgb({int(255 * r)}, {int(255 * g)}, {int(255 * b)})"

    cloud = WordCloud(width=width, height=height, max_words=max_words, background_color="white",
                      color_func=colour, random_state=seed, prefer_horizontal=0.9, min_font_size=6)
    cloud.generate_from_frequencies(freqs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_file(path, lambda tmp: cloud.to_image().save(str(tmp), format="PNG"))
    return path
