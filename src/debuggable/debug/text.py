"""Text debugging through word clouds: word-substitution counterfactuals and bias probes.

Both methods treat the model as a frozen text encoder followed by one or more linear
heads (e.g. the sparse decision layer and the dense, least-regularised path point),
and score the same edited sentences with every head so the heads compare directly.

* :class:`WordSubstitution` (paper Sec. 4.2): for a sentence a head predicts as the
  target class, pick at random one of the head's features that (i) is evidence for
  the target class and (ii) is positively activated by a word of the sentence (the
  word is in the feature's positive word cloud); replace that word with a random word
  of the feature's negative cloud; re-encode; count how often the prediction flips.
* :class:`BiasProbe` (paper Sec. 4.1, Table 5): append (or insert) a probe word into
  sentences every head gets right and measure the change of the true class's
  probability and how often the prediction flips.
* :func:`probe_candidates`: words the word clouds say push a class up: candidates to
  probe.

Word clouds are :class:`debuggable.interpret.WordCloudSet` objects (anything with
``positive(feature, n)`` and ``negative(feature, n)`` returning ``(word, weight)``
lists works).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.interpret import split_words

#: a head: (weight (K, D), bias (K,)) on raw features.
Head = tuple[np.ndarray, np.ndarray]
POSITIONS = ("end", "start", "random")


def _encoder(encode: Any, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    """A text backbone or a callable list[str] -> (N, D) features, batched, as NumPy float64."""
    modality = getattr(encode, "modality", None)
    if modality is not None and modality != "text":
        raise DebuggableError(f"encode: this backbone's modality is {modality!r}; text debugging needs a text model.")
    if not callable(encode):
        raise DebuggableError(f"encode: got a {type(encode).__name__}, expected a text backbone or a callable list[str] -> features.")

    def run(texts: list[str]) -> np.ndarray:
        blocks = []
        for lo in range(0, len(texts), batch_size):
            with torch.no_grad():
                out = encode(list(texts[lo : lo + batch_size]))
            f = getattr(out, "features", out)
            if isinstance(f, torch.Tensor):
                f = f.detach().float().cpu().numpy()
            blocks.append(np.asarray(f, dtype=np.float64))
        return np.concatenate(blocks) if blocks else np.zeros((0, 0))

    return run


def _check_heads(heads: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(heads, Mapping) or not heads:
        raise DebuggableError(f"heads: got {type(heads).__name__}, expected a non-empty mapping name -> (weight, bias).")
    out = {}
    shapes = set()
    for name, head in heads.items():
        try:
            w, b = head
        except (TypeError, ValueError):
            raise DebuggableError(f"heads[{name!r}]: expected a (weight, bias) pair.") from None
        w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise DebuggableError(f"heads[{name!r}]: weight {w.shape} and bias {b.shape} are not (K, D) and (K,).")
        out[str(name)] = (w, b)
        shapes.add(w.shape)
    if len(shapes) != 1:
        raise DebuggableError(f"heads: weights have different shapes {sorted(shapes)}; expected one (K, D) for all.")
    return out


def _check_texts(texts: Any, name: str = "texts") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise DebuggableError(f"{name}: got a {type(texts).__name__}, expected a list of strings.")
    if len(texts) == 0:
        raise DebuggableError(f"{name}: the corpus is empty; expected at least one sentence.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DebuggableError(f"{name}: item {i} is a {type(t).__name__}, expected a string.")
    return list(texts)


def _head_probs(heads: dict[str, tuple[np.ndarray, np.ndarray]], run: Callable[[list[str]], np.ndarray],
                texts: list[str], features: Any) -> dict[str, np.ndarray]:
    """Each head's (N, K) class probabilities on ``texts``, encoded with ``run`` unless
    their (N, D) ``features`` are given."""
    d = next(iter(heads.values()))[0].shape[1]
    x = run(texts) if features is None else np.asarray(features, dtype=np.float64)
    if x.shape != (len(texts), d):
        raise DebuggableError(f"features: expected shape ({len(texts)}, {d}) to match texts and heads, got {x.shape}.")
    return {h: _softmax(x @ w.T + b) for h, (w, b) in heads.items()}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def class_evidence(weight: np.ndarray, class_index: int) -> np.ndarray:
    """(D,) how much a unit increase of each feature favours ``class_index`` over the
    others: ``weight[c] - mean_{k != c} weight[k]`` (for two classes, the logit
    difference's weight)."""
    w = np.asarray(weight, dtype=np.float64)
    others = np.delete(w, class_index, axis=0)
    return w[class_index] - others.mean(0)


def replace_word(sentence: str, word: str, replacement: str, *, lowercase: bool = True) -> str:
    """``sentence`` with every occurrence of ``word`` (a whole word, matched as
    :func:`debuggable.interpret.lime_text.split_words` keys it) replaced."""
    tokens, keys = split_words(sentence, lowercase=lowercase)
    key = word.lower() if lowercase else word
    return "".join(replacement if k == key else t for t, k in zip(tokens, keys))


def insert_word(sentence: str, word: str, position: str, rng: np.random.Generator | None = None) -> str:
    """``sentence`` with ``word`` appended (``"end"``), prepended (``"start"``) or put
    before a random word (``"random"``, seeded by ``rng``)."""
    if position == "end":
        return f"{sentence.rstrip()} {word}"
    if position == "start":
        return f"{word} {sentence.lstrip()}"
    tokens, keys = split_words(sentence)
    slots = [i for i, k in enumerate(keys) if k is not None] or [len(tokens)]
    at = slots[int((rng or np.random.default_rng(0)).integers(len(slots)))]
    return "".join(tokens[:at]) + f"{word} " + "".join(tokens[at:])


def _cloud_words(clouds: Any, feature: int, n: int, sign: str) -> list[tuple[str, float]]:
    fn = getattr(clouds, sign, None)
    if fn is None:
        raise DebuggableError(f"clouds: a {type(clouds).__name__} has no {sign}(feature, n); expected a WordCloudSet.")
    try:
        items = fn(int(feature), n)
    except DebuggableError:
        return []  # no cloud for this feature
    out = []
    for item in items:
        if isinstance(item, str):  # a bare word list
            out.append((item, 1.0 if sign == "positive" else -1.0))
        else:
            out.append((str(item[0]), float(item[1])))
    return out


def _cloud_features(clouds: Any) -> set[int] | None:
    feats = getattr(clouds, "features", None)
    return None if feats is None else {int(j) for j in feats}


# ----------------------------------------------------------------------------- counterfactuals


@dataclass
class Substitution:
    """One word-substitution counterfactual.

    Attributes:
        row: index of the sentence in the input list.
        feature: the feature whose positive word was replaced.
        word / replacement: the word taken out and the one put in.
        original / edited: the sentence before and after.
        score_before / score_after: the head's probability of the target class.
        predicted_after: the head's prediction on the edited sentence.
        flipped: the prediction left the target class.
    """

    row: int
    feature: int
    word: str
    replacement: str
    original: str
    edited: str
    score_before: float
    score_after: float
    predicted_after: int
    flipped: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CounterfactualResult:
    """Counterfactuals per head on the same sentences.

    Attributes:
        target: the class the sentences were predicted as.
        rows: indices of the sentences every head predicted as ``target`` and could edit.
        skipped: why the other sentences were left out (reason -> count).
        substitutions: head -> one :class:`Substitution` per row, in ``rows`` order.
    """

    target: int
    rows: list[int]
    skipped: dict[str, int]
    substitutions: dict[str, list[Substitution]] = field(default_factory=dict)

    def flip_rate(self, head: str) -> float:
        subs = self.substitutions[head]
        return float(np.mean([s.flipped for s in subs])) if subs else float("nan")

    def flip_rate_ci(self, head: str, z: float = 1.96) -> float:
        """Half-width of the normal-approximation confidence interval of :meth:`flip_rate`."""
        n = len(self.substitutions[head])
        if not n:
            return float("nan")
        p = self.flip_rate(head)
        return float(z * np.sqrt(p * (1 - p) / n))

    def to_dict(self, max_examples: int = 20) -> dict[str, Any]:
        return {
            "target": self.target,
            "sentences": len(self.rows),
            "skipped": self.skipped,
            "heads": {
                h: {"flip_rate": self.flip_rate(h), "ci95": self.flip_rate_ci(h),
                    "mean_score_change": float(np.mean([s.score_after - s.score_before for s in subs])) if subs else None,
                    "examples": [s.to_dict() for s in subs[:max_examples]]}
                for h, subs in self.substitutions.items()
            },
        }


class WordSubstitution:
    """Word-substitution counterfactuals from word clouds, for one or more linear heads.

    Args:
        encode: the frozen text encoder: a text backbone or a callable list[str] -> (N, D).
        heads: name -> (weight (K, D), bias (K,)) on the encoder's raw features, e.g.
            ``{"sparse": (layer.weight, layer.bias), "dense": (path.coef[-1], path.intercept[-1])}``.
        clouds: word clouds of the features (``positive(j, n)``, ``negative(j, n)``).
        target: the class whose predictions are edited (the paper: positive sentiment).
        n_words: how many top words of each cloud count as its positive / negative words.
        seed: seeds the random choices of feature, word and replacement.
        batch_size: sentences per encoder call.
    """

    def __init__(self, encode: Any, heads: Mapping[str, Head], clouds: Any, *, target: int = 1,
                 n_words: int = 30, seed: int = 0, batch_size: int = 128):
        self.encode = encode
        self.heads = heads
        self.clouds = clouds
        self.target = target
        self.n_words = n_words
        self.seed = seed
        self.batch_size = batch_size

    def _pools(self, heads: dict[str, Head], texts: list[str]) -> dict[str, list[dict[int, list[str]]]]:
        """head -> per sentence {feature: [words of the sentence in its positive cloud]}."""
        pos_cache: dict[int, set[str]] = {}
        known = _cloud_features(self.clouds)
        words_of = [set(k for k in split_words(t)[1] if k is not None) for t in texts]
        out: dict[str, list[dict[int, list[str]]]] = {}
        for name, (w, _) in heads.items():
            ev = class_evidence(w, self.target)
            feats = [int(j) for j in np.flatnonzero(ev > 0) if known is None or int(j) in known]
            for j in feats:
                if j not in pos_cache:
                    pos_cache[j] = {wd for wd, _ in _cloud_words(self.clouds, j, self.n_words, "positive")}
            pools = []
            for ws in words_of:
                pool = {j: sorted(ws & pos_cache[j]) for j in feats}
                pools.append({j: v for j, v in pool.items() if v})
            out[name] = pools
        return out

    def attribute(self, texts: Sequence[str], features: np.ndarray | None = None) -> CounterfactualResult:
        """Counterfactuals for the sentences of ``texts`` that every head predicts as ``target``.

        Args:
            texts: N sentences.
            features: (N, D) their encoder features if already computed (e.g. from a
                feature store); default: encoded here.

        Returns:
            :class:`CounterfactualResult`; sentences where some head has no usable
            feature (no word of the sentence in a positive cloud of a feature that is
            evidence for the target, or an empty negative cloud) are skipped for all
            heads, so every head is measured on the same sentences.
        """
        heads = _check_heads(self.heads)
        texts = _check_texts(texts)
        k, d = next(iter(heads.values()))[0].shape
        if isinstance(self.target, bool) or not isinstance(self.target, (int, np.integer)) or not 0 <= self.target < k:
            raise DebuggableError(f"target={self.target!r} is not a class index; expected 0..{k - 1}.")
        if isinstance(self.n_words, bool) or not isinstance(self.n_words, int) or self.n_words < 1:
            raise DebuggableError(f"n_words={self.n_words!r} is invalid; expected a positive integer.")
        run = _encoder(self.encode, self.batch_size)
        probs = _head_probs(heads, run, texts, features)
        predicted = np.all([p.argmax(1) == self.target for p in probs.values()], axis=0)
        pools = self._pools(heads, texts)
        neg_cache: dict[int, list[str]] = {}

        def negatives(j: int) -> list[str]:
            if j not in neg_cache:
                neg_cache[j] = [wd for wd, _ in _cloud_words(self.clouds, j, self.n_words, "negative")]
            return neg_cache[j]

        skipped = {"not predicted as target by every head": int((~predicted).sum()), "no usable feature for some head": 0}
        plans: dict[str, list[tuple[int, int, str, str]]] = {h: [] for h in heads}
        rows = []
        for i in np.flatnonzero(predicted):
            choice = {}
            for hi, h in enumerate(heads):
                pool = {j: v for j, v in pools[h][i].items() if negatives(j)}
                if not pool:
                    break
                rng = np.random.default_rng([self.seed, int(i), hi])
                feats = sorted(pool)
                j = feats[int(rng.integers(len(feats)))]
                word = pool[j][int(rng.integers(len(pool[j])))]
                negs = [n for n in negatives(j) if n != word]
                if not negs:
                    break
                choice[h] = (int(i), j, word, negs[int(rng.integers(len(negs)))])
            if len(choice) != len(heads):
                skipped["no usable feature for some head"] += 1
                continue
            rows.append(int(i))
            for h, c in choice.items():
                plans[h].append(c)
        result = CounterfactualResult(target=int(self.target), rows=rows, skipped=skipped)
        for h, (w, b) in heads.items():
            edited = [replace_word(texts[i], word, rep) for i, _, word, rep in plans[h]]
            xe = run(edited) if edited else np.zeros((0, d))
            pe = _softmax(xe @ w.T + b) if edited else np.zeros((0, k))
            result.substitutions[h] = [
                Substitution(row=i, feature=j, word=word, replacement=rep, original=texts[i], edited=e,
                             score_before=float(probs[h][i, self.target]), score_after=float(pe[n, self.target]),
                             predicted_after=int(pe[n].argmax()), flipped=bool(pe[n].argmax() != self.target))
                for n, ((i, j, word, rep), e) in enumerate(zip(plans[h], edited))
            ]
        return result


# ----------------------------------------------------------------------------- bias probes


@dataclass
class ProbeResult:
    """Probe words inserted into correctly classified sentences.

    Attributes:
        words: the probe words.
        position: where they were inserted.
        rows: indices of the sentences probed (every head classifies them correctly).
        labels: their classes.
        score_change: head -> (W, R) change of the true class's probability per word and sentence.
        flipped: head -> (W, R) bool, the prediction left the true class.
        examples: a few edited sentences per word.
    """

    words: list[str]
    position: str
    rows: np.ndarray
    labels: np.ndarray
    score_change: dict[str, np.ndarray]
    flipped: dict[str, np.ndarray]
    examples: dict[str, list[str]] = field(default_factory=dict)

    def flip_rate(self, head: str, word: str) -> float:
        i = self.words.index(word)
        return float(self.flipped[head][i].mean()) if self.rows.size else float("nan")

    def mean_score_change(self, head: str, word: str) -> float:
        i = self.words.index(word)
        return float(self.score_change[head][i].mean()) if self.rows.size else float("nan")

    def table(self) -> list[dict[str, Any]]:
        """One row per word: flip rate and mean score change per head."""
        return [
            {"word": w, "sentences": int(self.rows.size),
             **{f"flip_rate_{h}": self.flip_rate(h, w) for h in self.flipped},
             **{f"score_change_{h}": self.mean_score_change(h, w) for h in self.flipped},
             "examples": self.examples.get(w, [])}
            for w in self.words
        ]


class BiasProbe:
    """Insert probe words into sentences the model gets right; measure flips.

    Args:
        encode: the frozen text encoder (a text backbone or a callable list[str] -> (N, D)).
        heads: name -> (weight (K, D), bias (K,)) on raw features.
        position: ``"end"`` (append, as the paper), ``"start"`` or ``"random"``.
        classes: probe only sentences of these classes (default all).
        seed: seeds ``"random"`` positions.
        batch_size: sentences per encoder call.
    """

    def __init__(self, encode: Any, heads: Mapping[str, Head], *, position: str = "end",
                 classes: Sequence[int] | None = None, seed: int = 0, batch_size: int = 128):
        self.encode = encode
        self.heads = heads
        self.position = position
        self.classes = classes
        self.seed = seed
        self.batch_size = batch_size

    def attribute(self, texts: Sequence[str], labels: np.ndarray, words: Sequence[str],
                  features: np.ndarray | None = None) -> ProbeResult:
        """Probe ``words`` (each separately) on the correctly classified sentences of ``texts``.

        Args:
            texts: N sentences; labels: (N,) their classes.
            words: probe words (non-empty strings without spaces at the ends).
            features: (N, D) features of ``texts`` if already computed.
        """
        heads = _check_heads(self.heads)
        texts = _check_texts(texts)
        k = next(iter(heads.values()))[0].shape[0]
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (len(texts),):
            raise DebuggableError(f"labels: expected shape ({len(texts)},) to match texts, got {y.shape}.")
        if isinstance(words, str) or not isinstance(words, Sequence) or not words:
            raise DebuggableError(f"words: got {words!r}, expected a non-empty list of probe words.")
        for wd in words:
            if not isinstance(wd, str) or not wd.strip() or wd != wd.strip():
                raise DebuggableError(f"words: {wd!r} is not a probe word; expected non-empty strings without surrounding spaces.")
        if self.position not in POSITIONS:
            raise DebuggableError(f"position={self.position!r} is not a position; expected one of {list(POSITIONS)}.")
        classes = list(range(k)) if self.classes is None else [int(c) for c in self.classes]
        if any(not 0 <= c < k for c in classes):
            raise DebuggableError(f"classes={self.classes!r}: expected class indices in 0..{k - 1}.")
        run = _encoder(self.encode, self.batch_size)
        probs = _head_probs(heads, run, texts, features)
        ok = np.isin(y, classes) & np.all([p.argmax(1) == y for p in probs.values()], axis=0)
        rows = np.flatnonzero(ok)
        score_change = {h: np.zeros((len(words), rows.size)) for h in heads}
        flipped = {h: np.zeros((len(words), rows.size), dtype=bool) for h in heads}
        examples: dict[str, list[str]] = {}
        for wi, wd in enumerate(words):
            rng = np.random.default_rng([self.seed, wi])
            edited = [insert_word(texts[i], wd, self.position, rng) for i in rows]
            examples[wd] = edited[:3]
            if not edited:
                continue
            xe = run(edited)
            for h, (w, b) in heads.items():
                pe = _softmax(xe @ w.T + b)
                score_change[h][wi] = pe[np.arange(rows.size), y[rows]] - probs[h][rows, y[rows]]
                flipped[h][wi] = pe.argmax(1) != y[rows]
        return ProbeResult(words=list(words), position=self.position, rows=rows, labels=y[rows],
                           score_change=score_change, flipped=flipped, examples=examples)


def probe_candidates(clouds: Any, weight: np.ndarray, class_index: int, *, n: int = 10,
                     n_words: int = 30, features: Sequence[int] | None = None) -> list[tuple[str, float]]:
    """Words the word clouds say push ``class_index`` up: candidates for a bias probe.

    A word's score is the sum over features j of ``|e_j| * |cloud weight|`` where it
    sits on the side that favours the class: the positive cloud of a feature with
    evidence ``e_j > 0`` for the class (:func:`class_evidence`), or the negative cloud
    of one with ``e_j < 0``.

    Args:
        clouds: word clouds (``positive(j, n)``, ``negative(j, n)``).
        weight: (K, D) head weights, preferably standardised (``layer.standardized_weight``)
            so evidence is comparable across features.
        class_index: the class the probe words should push towards.
        n: how many candidates.
        n_words: how many words of each cloud to consider.
        features: which features (default: those with non-zero evidence and a cloud).

    Returns:
        ``[(word, score), ...]``, highest first.
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or not 0 <= class_index < w.shape[0]:
        raise DebuggableError(f"class_index={class_index!r} is not a class of a weight of shape {w.shape}.")
    ev = class_evidence(w, class_index)
    known = _cloud_features(clouds)
    feats = [int(j) for j in (np.flatnonzero(ev != 0) if features is None else features)
             if known is None or int(j) in known]
    scores: dict[str, float] = {}
    for j in feats:
        side = "positive" if ev[j] > 0 else "negative"
        for word, v in _cloud_words(clouds, j, n_words, side):
            scores[word] = scores.get(word, 0.0) + abs(ev[j]) * abs(v)
    return sorted(scores.items(), key=lambda t: (-t[1], t[0]))[:n]
