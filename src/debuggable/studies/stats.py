"""The statistics of study scoring: intervals, tests, agreement, annotator quality.

Pure numeric functions (NumPy, SciPy); no web, no database. Counts are plain integers,
accuracies are fractions in [0, 1] (not percent), and every interval is two-sided
at ``confidence`` unless its docstring says otherwise.

* :func:`wilson_interval`: the Wilson (1927) score interval of one proportion.
* :func:`annotator_bootstrap`: pooled accuracy with a cluster bootstrap over
  annotators (answers by one annotator are not independent).
* :func:`two_proportion_test`: two independent conditions: pooled z-test and
  Newcombe's (1998) hybrid score interval of the difference.
* :func:`paired_annotator_test`: a within-annotator design: sign-flip permutation
  test and bootstrap interval of the mean per-annotator difference.
* :func:`chance_level`, :func:`chance_test`: exact one-sided binomial test against
  guessing.
* :func:`kappa_table`, :func:`fleiss_kappa`, :func:`fleiss_kappa_interval`: Fleiss'
  (1971) kappa for categorical answers, with a bootstrap over items.
* :func:`attention_exclusion`, :func:`exclusion_rule`: per-annotator quality from
  attention checks and the stated exclusion rule.

Per-annotator inputs are either two sequences (annotator ``i`` at position ``i``) or
two mappings ``{annotator id: value}`` with the same keys; results keyed by
annotator use the same ids (positions for sequences).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _sp

from debuggable.bootstrap import bootstrap_ci, bootstrap_replicates, check_confidence, check_n_boot, percentile_interval
from debuggable.errors import DebuggableError

#: Annotators are excluded when fewer than this share of their attention checks are correct.
DEFAULT_MIN_ATTENTION_ACCURACY = 0.75

_NAN = float("nan")


# -- input checks -----------------------------------------------------------

def _count(name: str, value: Any) -> int:
    """A non-negative whole number (int, NumPy integer, or an integral float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DebuggableError(f"{name}: got {value!r}, expected a non-negative whole number.")
    if not math.isfinite(float(value)) or float(value) < 0 or float(value) != int(value):
        raise DebuggableError(f"{name}: got {value!r}, expected a non-negative whole number.")
    return int(value)


def _proportion_counts(s_name: str, successes: Any, n_name: str, n: Any) -> tuple[int, int]:
    s, n = _count(s_name, successes), _count(n_name, n)
    if s > n:
        raise DebuggableError(f"{s_name}: got {s} successes out of {n_name}={n} trials, expected at most {n}.")
    return s, n


def _z(confidence: float) -> float:
    return float(_sp.norm.ppf(0.5 + confidence / 2.0))


def _per_annotator(a_name: str, a: Any, b_name: str, b: Any) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    """Two per-annotator inputs aligned: ids and two float64 arrays (mappings: same keys)."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise DebuggableError(f"{b_name}: expected the same kind of input as {a_name} (both mappings or both sequences).")
        missing_b = [k for k in a if k not in b]
        missing_a = [k for k in b if k not in a]
        if missing_a or missing_b:
            name, keys = (b_name, missing_b) if missing_b else (a_name, missing_a)
            raise DebuggableError(f"{name}: has no entry for annotators {keys[:5]}, "
                                  f"expected the same annotators in {a_name} and {b_name}.")
        ids = list(a)
        va, vb = [a[k] for k in ids], [b[k] for k in ids]
    else:
        for name, x in ((a_name, a), (b_name, b)):
            if isinstance(x, (str, bytes)):
                raise DebuggableError(f"{name}: got the string {x!r}, expected a sequence of numbers or a mapping.")
        arr_a, arr_b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
        for name, arr in ((a_name, arr_a), (b_name, arr_b)):
            if arr.ndim != 1:
                raise DebuggableError(f"{name}: got shape {arr.shape}, "
                                      "expected one value per annotator (a flat sequence or a mapping).")
        va, vb = list(arr_a), list(arr_b)
        if len(va) != len(vb):
            raise DebuggableError(f"{b_name}: got {len(vb)} values for {len(va)} annotators in {a_name}, "
                                  "expected one per annotator.")
        ids = list(range(len(va)))
    try:
        xa, xb = np.asarray(va, dtype=np.float64), np.asarray(vb, dtype=np.float64)
    except (TypeError, ValueError):
        raise DebuggableError(f"{a_name}, {b_name}: expected numbers for every annotator.") from None
    return ids, xa, xb


def _counts_per_annotator(s_name: str, s: Any, n_name: str, n: Any) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    ids, xs, xn = _per_annotator(s_name, s, n_name, n)
    for name, x in ((s_name, xs), (n_name, xn)):
        bad = ~(np.isfinite(x) & (x >= 0) & (x == np.round(x)))
        if bad.any():
            i = int(np.argmax(bad))
            raise DebuggableError(f"{name}: annotator {ids[i]!r} has {float(x[i])!r}, expected a non-negative whole number.")
    over = xs > xn
    if over.any():
        i = int(np.argmax(over))
        raise DebuggableError(
            f"{s_name}: annotator {ids[i]!r} has {int(xs[i])} successes out of {int(xn[i])} trials, "
            f"expected at most {int(xn[i])}."
        )
    return ids, xs.astype(np.int64), xn.astype(np.int64)


# -- one proportion -----------------------------------------------------------

def chance_level(n_options: int) -> float:
    """The accuracy of guessing uniformly among ``n_options`` answers: ``1 / n_options``.

    Args:
        n_options: the number of options of the question, >= 2 (the simulation
            study's three images: 1/3).
    """
    if isinstance(n_options, bool) or not isinstance(n_options, (int, np.integer)) or n_options < 2:
        raise DebuggableError(f"n_options: got {n_options!r}, "
                              "expected an integer >= 2 (a question with options to choose from).")
    return 1.0 / int(n_options)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson (1927) score interval of a proportion ``successes / n``.

    With p = s/n and z the two-sided normal quantile of ``confidence``::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    The interval is ``centre -/+ half``; it stays inside [0, 1], is exactly 0 below
    at ``s = 0`` and exactly 1 above at ``s = n``, and, unlike the Wald interval, it
    does not collapse to a point there.

    Args:
        successes: correct answers, 0 <= successes <= n.
        n: answers.
        confidence: coverage in (0, 1).

    Returns:
        ``(low, high)`` as fractions in [0, 1]. ``n = 0`` gives ``(0.0, 1.0)``: no
        answers carry no information, and that is also the interval's limit as n -> 0.
    """
    s, n = _proportion_counts("successes", successes, "n", n)
    confidence = check_confidence("confidence", confidence)
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = s / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if s == 0 else max(0.0, centre - half)
    high = 1.0 if s == n else min(1.0, centre + half)
    return low, high


def chance_test(successes: int, n: int, chance: float, *, confidence: float = 0.95) -> dict[str, Any]:
    """Is accuracy above chance? The exact one-sided binomial test (``scipy.stats.binomtest``).

    H0: every answer is correct with probability ``chance``; H1: with a larger
    probability. ``p_value = P(X >= successes)`` for X ~ Binomial(n, chance).

    Args:
        successes: correct answers, 0 <= successes <= n.
        n: answers.
        chance: the accuracy of guessing, in (0, 1) (see :func:`chance_level`).
        confidence: coverage of the one-sided lower bound.

    Returns:
        ``{"p_value", "accuracy", "chance", "excess", "low", "successes", "n"}``:
        ``excess = accuracy - chance``; ``low`` is the one-sided exact
        (Clopper-Pearson) lower confidence bound of the accuracy. ``n = 0`` gives
        ``p_value = 1.0``, ``low = 0.0`` and NaN accuracy and excess (no evidence).
    """
    s, n = _proportion_counts("successes", successes, "n", n)
    confidence = check_confidence("confidence", confidence)
    if isinstance(chance, bool) or not isinstance(chance, (int, float, np.floating)) or not 0 < float(chance) < 1:
        raise DebuggableError(f"chance: got {chance!r}, expected a probability in (0, 1) such as chance_level(3) = 1/3.")
    chance = float(chance)
    if n == 0:
        return {"p_value": 1.0, "accuracy": _NAN, "chance": chance, "excess": _NAN, "low": 0.0, "successes": 0, "n": 0}
    result = _sp.binomtest(s, n, p=chance, alternative="greater")
    low = float(result.proportion_ci(confidence_level=confidence, method="exact").low)
    return {"p_value": float(result.pvalue), "accuracy": s / n, "chance": chance, "excess": s / n - chance,
            "low": low, "successes": s, "n": n}


# -- annotators as clusters ---------------------------------------------------

def _pooled_rows(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    return successes.sum(axis=-1) / trials.sum(axis=-1)


def annotator_bootstrap(
    successes_per_annotator: Sequence[int] | Mapping[Hashable, int],
    trials_per_annotator: Sequence[int] | Mapping[Hashable, int],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Pooled accuracy with a cluster bootstrap over annotators.

    The statistic is the pooled accuracy ``sum(s_i) / sum(t_i)`` over annotators
    ``i``. Each replicate draws the m annotators with replacement (all answers of a
    drawn annotator come along), so differences between annotators widen the
    interval; with one shared accuracy the interval is about as wide as Wilson's.
    With equal trials per annotator the bootstrap standard error tends to
    ``sd(a) / sqrt(m) * sqrt((m - 1) / m)``, ``a`` the annotators' accuracies (``sd``
    with ddof 1).

    Args:
        successes_per_annotator: correct answers per annotator (a sequence, or a
            mapping annotator id -> count).
        trials_per_annotator: answers per annotator, in the same form and order.
            Annotators with no answers are left out (they carry no information).
        n_boot: bootstrap replicates, >= 1.
        confidence: coverage of the percentile interval.
        seed: seeds the resampling.

    Returns:
        ``{"mean", "low", "high", "se", "n_annotators", "successes", "trials",
        "n_boot", "confidence"}``: ``mean`` the pooled accuracy of the data, ``low`` /
        ``high`` the percentile interval, ``se`` the standard deviation of the
        replicates (ddof 1). With fewer than 2 annotators there is nothing to
        resample: ``low``, ``high`` and ``se`` are NaN (``mean`` too, with none).
    """
    ids, s, t = _counts_per_annotator("successes_per_annotator", successes_per_annotator,
                                      "trials_per_annotator", trials_per_annotator)
    n_boot = check_n_boot("n_boot", n_boot, minimum=1)
    confidence = check_confidence("confidence", confidence)
    keep = t > 0
    s, t = s[keep], t[keep]
    m = int(s.size)
    out: dict[str, Any] = {"mean": _NAN, "low": _NAN, "high": _NAN, "se": _NAN, "n_annotators": m,
                           "successes": int(s.sum()), "trials": int(t.sum()), "n_boot": n_boot, "confidence": confidence}
    if m == 0:
        return out
    out["mean"] = float(s.sum() / t.sum())
    if m < 2:
        return out
    _, reps = bootstrap_replicates(lambda a, b: float(a.sum() / b.sum()), [s, t], n_boot=n_boot, seed=seed,
                                   paired=True, vectorized=_pooled_rows)
    out["low"], out["high"] = percentile_interval(reps, confidence)
    out["se"] = float(reps.std(ddof=1)) if n_boot > 1 else _NAN
    return out


# -- two conditions -------------------------------------------------------------

def two_proportion_test(s1: int, n1: int, s2: int, n2: int, *, confidence: float = 0.95) -> dict[str, Any]:
    """Two independent conditions: pooled z-test and Newcombe's hybrid score interval.

    With p1 = s1/n1, p2 = s2/n2 and the pooled p = (s1 + s2) / (n1 + n2)::

        z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2))         two-sided p = 2 (1 - Phi(|z|))

    (the same test as Pearson's chi-square on the 2x2 table, without continuity
    correction). The interval of ``p1 - p2`` is Newcombe's (1998, method 10) hybrid
    score interval, from the Wilson intervals (l1, u1), (l2, u2) of each proportion::

        low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)

    Args:
        s1, n1: correct answers and answers in condition 1 (n1 >= 1).
        s2, n2: the same for condition 2 (n2 >= 1).
        confidence: coverage of the interval.

    Returns:
        ``{"diff", "z", "p_value", "low", "high", "p1", "p2"}``: ``diff = p1 - p2``.
        When both conditions are all correct or all wrong the test has no variance:
        ``z = 0`` and ``p_value = 1``.
    """
    s1, n1 = _proportion_counts("s1", s1, "n1", n1)
    s2, n2 = _proportion_counts("s2", s2, "n2", n2)
    confidence = check_confidence("confidence", confidence)
    for name, n in (("n1", n1), ("n2", n2)):
        if n == 0:
            raise DebuggableError(f"{name}: got 0 answers, expected at least one answer in each condition.")
    p1, p2 = s1 / n1, s2 / n2
    diff = p1 - p2
    pooled = (s1 + s2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se0 > 0:
        z = diff / se0
        p_value = min(1.0, float(2.0 * _sp.norm.sf(abs(z))))
    else:
        z, p_value = 0.0, 1.0
    l1, u1 = wilson_interval(s1, n1, confidence)
    l2, u2 = wilson_interval(s2, n2, confidence)
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return {"diff": diff, "z": float(z), "p_value": p_value, "low": max(-1.0, low), "high": min(1.0, high),
            "p1": p1, "p2": p2}


def _sign_flip_p(d: np.ndarray, n_perm: int, seed: int) -> tuple[float, bool, int]:
    """Two-sided sign-flip p-value of mean(d): exact over all 2^m signs when 2^m <= n_perm."""
    m = d.size
    observed = abs(d.sum())
    # Sums that equal the observed one up to rounding count as "at least as extreme".
    threshold = observed - 1e-12 * max(1.0, float(np.abs(d).sum()))
    if m <= 62 and 2 ** m <= n_perm:
        patterns = np.arange(2 ** m, dtype=np.int64)[:, None]
        signs = ((patterns >> np.arange(m, dtype=np.int64)) & 1) * 2 - 1
        extreme = np.abs(signs @ d) >= threshold
        return float(extreme.mean()), True, 2 ** m
    rng = np.random.default_rng([int(seed), 1])
    hits = 0
    chunk = max(1, 1_000_000 // max(m, 1))
    for start in range(0, n_perm, chunk):
        rows = min(chunk, n_perm - start)
        signs = rng.integers(0, 2, (rows, m)) * 2 - 1
        hits += int((np.abs(signs @ d) >= threshold).sum())
    # The observed labelling counts as one of the permutations (Phipson & Smyth, 2010).
    return (hits + 1) / (n_perm + 1), False, n_perm


def paired_annotator_test(
    per_annotator_acc_a: Sequence[float] | Mapping[Hashable, float],
    per_annotator_acc_b: Sequence[float] | Mapping[Hashable, float],
    *,
    n_perm: int = 10000,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """A within-annotator design: does condition A beat condition B for the same people?

    With d_i = a_i - b_i for each of the m annotators who did both conditions, the
    statistic is the mean difference. Under H0 (no effect) each d_i is as likely
    to have the opposite sign, so the two-sided p-value is the share of sign
    patterns s in {-1, +1}^m with ``|sum(s_i d_i)| >= |sum(d_i)|``: all 2^m patterns
    when ``2^m <= n_perm`` (exact), otherwise ``n_perm`` random patterns with
    p = (hits + 1) / (n_perm + 1). The interval is a percentile bootstrap of the
    mean of d over annotators.

    Args:
        per_annotator_acc_a: each annotator's accuracy in condition A (a sequence,
            or a mapping annotator id -> accuracy); any finite numbers work (e.g.
            mean Likert ratings).
        per_annotator_acc_b: the same annotators' accuracies in condition B, in the
            same form. Mappings must have the same keys.
        n_perm: random sign patterns when exact enumeration would need more than
            this many, >= 1.
        n_boot: bootstrap replicates of the interval, >= 1.
        confidence: coverage of the interval.
        seed: seeds the permutations and the bootstrap.

    Returns:
        ``{"diff", "p_value", "low", "high", "n_annotators", "exact", "n_perm"}``:
        ``diff`` the mean of a - b, ``exact`` whether every sign pattern was
        enumerated, ``n_perm`` the patterns used. With one annotator the interval
        is NaN (and the exact p-value 1).
    """
    ids, a, b = _per_annotator("per_annotator_acc_a", per_annotator_acc_a, "per_annotator_acc_b", per_annotator_acc_b)
    for name, x in (("per_annotator_acc_a", a), ("per_annotator_acc_b", b)):
        if not np.isfinite(x).all():
            i = int(np.argmax(~np.isfinite(x)))
            raise DebuggableError(f"{name}: annotator {ids[i]!r} has {float(x[i])!r}, expected a finite number.")
    n_perm = check_n_boot("n_perm", n_perm, minimum=1)
    n_boot = check_n_boot("n_boot", n_boot, minimum=1)
    confidence = check_confidence("confidence", confidence)
    if a.size == 0:
        raise DebuggableError("per_annotator_acc_a: got no annotators, expected at least one who did both conditions.")
    d = a - b
    p_value, exact, used = _sign_flip_p(d, n_perm, seed)
    low = high = _NAN
    if d.size >= 2:
        _, low, high = bootstrap_ci(np.mean, [d], n_boot=n_boot, ci=confidence, seed=seed)
    return {"diff": float(d.mean()), "p_value": p_value, "low": low, "high": high, "n_annotators": int(d.size),
            "exact": exact, "n_perm": used}


# -- agreement between annotators ----------------------------------------------

def kappa_table(labels_per_item: Sequence[Sequence[Hashable]] | Mapping[Hashable, Sequence[Hashable]],
                categories: Sequence[Hashable]) -> np.ndarray:
    """The (items, categories) count table of categorical answers, for :func:`fleiss_kappa`.

    Args:
        labels_per_item: for each item (task), the labels its annotators chose (a
            sequence of sequences, or a mapping item id -> labels, taken in the
            mapping's order).
        categories: the possible labels, distinct; column ``j`` counts ``categories[j]``.

    Returns:
        (N, K) int64 array: ``counts[i, j]`` = annotators who gave item ``i`` label
        ``categories[j]``.
    """
    if isinstance(categories, (str, bytes)) or not isinstance(categories, Sequence) or len(categories) == 0:
        raise DebuggableError(f"categories: got {categories!r}, expected a non-empty list of the possible labels.")
    column = {c: j for j, c in enumerate(categories)}
    if len(column) != len(categories):
        raise DebuggableError(f"categories: got {list(categories)!r}, expected distinct labels.")
    items = list(labels_per_item.items()) if isinstance(labels_per_item, Mapping) else list(enumerate(labels_per_item))
    counts = np.zeros((len(items), len(categories)), dtype=np.int64)
    for i, (item, labels) in enumerate(items):
        if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
            raise DebuggableError(f"labels_per_item: item {item!r} has {labels!r}, expected a list of labels.")
        for label in labels:
            j = column.get(label)
            if j is None:
                raise DebuggableError(f"labels_per_item: item {item!r} has label {label!r}, "
                                      f"expected one of {list(categories)!r}.")
            counts[i, j] += 1
    return counts


def _check_counts(counts: Any) -> np.ndarray:
    try:
        c = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise DebuggableError("counts: expected an (items, categories) table of whole numbers.") from None
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise DebuggableError(f"counts: got shape {c.shape}, expected (items, categories) with at least one of each.")
    if not (np.isfinite(c) & (c >= 0) & (c == np.round(c))).all():
        raise DebuggableError("counts: expected non-negative whole numbers (raters per item and category).")
    raters = c.sum(1)
    if (raters < 2).any():
        i = int(np.argmax(raters < 2))
        raise DebuggableError(f"counts: item {i} has {int(raters[i])} rating(s), "
                              "expected at least 2 per item (drop items with fewer).")
    return c


def _kappa_rows(c: np.ndarray) -> np.ndarray:
    """Fleiss' kappa of every (N, K) table in a (..., N, K) stack; NaN where chance agreement is 1."""
    n = c.sum(-1)
    agreement = ((c * (c - 1.0)).sum(-1) / (n * (n - 1.0))).mean(-1)
    shares = c.sum(-2) / n.sum(-1)[..., None]
    expected = (shares ** 2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = (agreement - expected) / (1.0 - expected)
    return np.where(1.0 - expected > 1e-12, kappa, np.nan)


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' (1971) kappa: agreement among raters beyond chance, for categorical answers.

    For N items, K categories and ``n_ij`` raters putting item i in category j, with
    n_i = sum_j n_ij raters of item i::

        P_i   = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))      agreeing rater pairs of item i
        P_bar = mean_i P_i
        p_j   = sum_i n_ij / sum_i n_i                      share of all ratings in category j
        P_e   = sum_j p_j^2
        kappa = (P_bar - P_e) / (1 - P_e)

    With the same number of raters per item this is exactly Fleiss' formula. With
    unequal numbers (some answers missing or excluded) each item's agreement uses its
    own n_i, items count equally in P_bar and the category shares pool all ratings;
    this reduces to Fleiss' formula when the n_i are equal.

    Args:
        counts: (N, K) whole numbers, e.g. from :func:`kappa_table`; every item needs
            at least 2 ratings.

    Returns:
        kappa: 1 for perfect agreement, 0 for chance-level agreement, negative below
        chance. NaN when every rating falls in one category (P_e = 1: agreement beyond
        chance is undefined).
    """
    return float(_kappa_rows(_check_counts(counts))[()])


def fleiss_kappa_interval(counts: Any, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Fleiss' kappa with a percentile bootstrap over items.

    Each replicate draws the N items (rows of ``counts``) with replacement and
    recomputes :func:`fleiss_kappa`; replicates where kappa is undefined are left out.

    Args:
        counts: (N, K) count table (see :func:`fleiss_kappa`).
        n_boot: bootstrap replicates, >= 1.
        confidence: coverage of the interval.
        seed: seeds the resampling.

    Returns:
        ``{"kappa", "low", "high", "se", "n_items", "n_ratings"}``; ``se`` is the
        standard deviation of the finite replicates (ddof 1). With one item the
        interval and ``se`` are NaN.
    """
    c = _check_counts(counts)
    n_boot = check_n_boot("n_boot", n_boot, minimum=1)
    confidence = check_confidence("confidence", confidence)
    kappa = float(_kappa_rows(c)[()])
    out: dict[str, Any] = {"kappa": kappa, "low": _NAN, "high": _NAN, "se": _NAN, "n_items": int(c.shape[0]),
                           "n_ratings": int(c.sum())}
    if c.shape[0] < 2:
        return out
    _, reps = bootstrap_replicates(lambda x: float(_kappa_rows(x)[()]), [c], n_boot=n_boot, seed=seed,
                                   vectorized=_kappa_rows)
    out["low"], out["high"] = percentile_interval(reps, confidence)
    finite = reps[np.isfinite(reps)]
    if finite.size > 1:
        out["se"] = float(finite.std(ddof=1))
    return out


# -- annotator quality --------------------------------------------------------

def _check_min_accuracy(min_accuracy: Any) -> float:
    if isinstance(min_accuracy, bool) or not isinstance(min_accuracy, (int, float, np.floating)) \
            or not 0 <= float(min_accuracy) <= 1:
        raise DebuggableError(f"min_accuracy: got {min_accuracy!r}, expected a share in [0, 1] such as 0.75.")
    return float(min_accuracy)


def _percent(share: float) -> str:
    """0.75 -> "75%", 2/3 -> "66.7%"."""
    pct = 100.0 * share
    return f"{round(pct)}%" if abs(pct - round(pct)) < 1e-9 else f"{pct:.1f}%"


def exclusion_rule(min_accuracy: float = DEFAULT_MIN_ATTENTION_ACCURACY) -> str:
    """The exclusion rule of :func:`attention_exclusion` as one sentence a report can quote."""
    share = _check_min_accuracy(min_accuracy)
    return (f"An annotator is excluded when they answered none of their attention checks, or when fewer than "
            f"{_percent(share)} of the attention checks they answered were correct.")


def attention_exclusion(
    passed_per_annotator: Sequence[int] | Mapping[Hashable, int],
    checks_per_annotator: Sequence[int] | Mapping[Hashable, int],
    *,
    min_accuracy: float = DEFAULT_MIN_ATTENTION_ACCURACY,
) -> dict[Hashable, dict[str, Any]]:
    """Per-annotator quality from attention checks, and who is excluded.

    Rule (default ``min_accuracy = 0.75``): *An annotator is excluded when they
    answered none of their attention checks, or when fewer than 75% of the
    attention checks they answered were correct.* (With 4 checks, 3 correct keep an
    annotator and 2 exclude them; with 2 checks both must be correct.)
    :func:`exclusion_rule` returns this sentence for any ``min_accuracy``.

    Args:
        passed_per_annotator: attention checks answered correctly per annotator (a
            sequence, or a mapping annotator id -> count).
        checks_per_annotator: attention checks answered per annotator, same form.
        min_accuracy: the least share of correct checks that keeps an annotator, in
            [0, 1] (0 keeps everyone who answered a check).

    Returns:
        ``{annotator: {"passed", "total", "accuracy", "excluded", "reason"}}`` in
        input order: ``accuracy = passed / total`` (NaN when total is 0), ``reason``
        a short phrase for excluded annotators (``""`` for kept ones).
    """
    ids, passed, total = _counts_per_annotator("passed_per_annotator", passed_per_annotator,
                                               "checks_per_annotator", checks_per_annotator)
    share = _check_min_accuracy(min_accuracy)
    out: dict[Hashable, dict[str, Any]] = {}
    for key, p, t in zip(ids, passed.tolist(), total.tolist()):
        if t == 0:
            out[key] = {"passed": 0, "total": 0, "accuracy": _NAN, "excluded": True,
                        "reason": "answered no attention check"}
            continue
        accuracy = p / t
        # A share exactly at the threshold (3 of 4 at 75%) keeps the annotator despite rounding.
        excluded = accuracy < share - 1e-12
        reason = (f"passed {p} of {t} attention checks ({_percent(accuracy)}), below the {_percent(share)} required"
                  if excluded else "")
        out[key] = {"passed": p, "total": t, "accuracy": accuracy, "excluded": excluded, "reason": reason}
    return out
