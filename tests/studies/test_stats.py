"""Study statistics against hand computations, published tables, SciPy and known truths.

Oracles: Newcombe (1998a) Table I (Wilson intervals), Newcombe (1998b) Table II
(hybrid score intervals of a difference, method 10), Fleiss (1971) Table 1 (30
patients, 6 psychiatrists, 5 diagnoses: kappa 0.430), the Wikipedia worked example
of Fleiss' kappa (10 subjects, 14 raters: 0.210), exact binomial tails, SciPy's
chi-square and permutation tests, the closed-form standard error of a bootstrapped
mean, and simulated annotators with known accuracies.
"""

import math
from itertools import product

import numpy as np
import pytest
from scipy.stats import beta, chi2_contingency, permutation_test

from debuggable.errors import DebuggableError
from debuggable.studies.stats import (
    annotator_bootstrap,
    attention_exclusion,
    chance_level,
    chance_test,
    exclusion_rule,
    fleiss_kappa,
    fleiss_kappa_interval,
    kappa_table,
    paired_annotator_test,
    two_proportion_test,
    wilson_interval,
)

# Fleiss (1971), Table 1: psychiatric diagnoses of 30 patients by 6 raters each
# (depression, personality disorder, schizophrenia, neurosis, other).
FLEISS_1971 = np.array([
    [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
    [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
    [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1],
    [0, 0, 5, 0, 1], [3, 0, 0, 1, 2], [5, 1, 0, 0, 0], [0, 2, 0, 4, 0], [1, 0, 2, 0, 3],
    [0, 0, 0, 0, 6], [0, 1, 0, 5, 0], [0, 2, 0, 1, 3], [2, 0, 0, 4, 0], [1, 0, 0, 4, 1],
    [0, 5, 0, 1, 0], [4, 0, 0, 0, 2], [0, 2, 0, 4, 0], [1, 0, 5, 0, 0], [0, 0, 0, 0, 6],
])

# Wikipedia's worked example ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories.
WIKIPEDIA = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


# -- Wilson ----------------------------------------------------------------------

@pytest.mark.parametrize("s, n, low, high", [
    # Newcombe (1998a), Table I, method 3 (score interval without continuity correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998_table_1(s, n, low, high):
    lo, hi = wilson_interval(s, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_by_hand():
    # 63/100, z = 1.959964: centre = (0.63 + z^2/200) / (1 + z^2/100) = 0.625191,
    # half = z / 1.0384146 * sqrt(0.002331 + z^2/40000) = 0.092986.
    lo, hi = wilson_interval(63, 100)
    assert lo == pytest.approx(0.532205, abs=2e-6) and hi == pytest.approx(0.718176, abs=2e-6)
    # At the ends the interval is closed-form: [0, z^2 / (n + z^2)] and [n / (n + z^2), 1].
    z2 = 1.959963984540054 ** 2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.277533, abs=1e-6)
    # A 90% interval is narrower and nested; no answers carry no information.
    lo90, hi90 = wilson_interval(63, 100, confidence=0.90)
    assert lo < lo90 < 0.63 < hi90 < hi
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_covers_the_true_proportion_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    p, n = 0.63, 80
    hits = [lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in rng.binomial(n, p, 2000))]
    assert 0.93 <= np.mean(hits) <= 0.97


@pytest.mark.parametrize("args, match", [
    ((11, 10), "at most 10"), ((-1, 10), "successes"), ((2.5, 10), "whole number"),
    ((1, 10, 1.5), "confidence"), ((True, 10), "successes"),
])
def test_wilson_refuses_bad_input(args, match):
    with pytest.raises(DebuggableError, match=match):
        wilson_interval(*args)


# -- chance ----------------------------------------------------------------------

def test_chance_level_and_exact_binomial_tail_by_hand():
    assert chance_level(3) == pytest.approx(1 / 3) and chance_level(2) == 0.5
    # P(X >= 7 | n = 10, p = 1/3) = (120*2^3 + 45*2^2 + 10*2 + 1) / 3^10 = 1161 / 59049.
    r = chance_test(7, 10, chance_level(3))
    assert r["p_value"] == pytest.approx(1161 / 59049, rel=1e-12)
    assert r["accuracy"] == 0.7 and r["excess"] == pytest.approx(0.7 - 1 / 3)
    # One-sided 95% Clopper-Pearson lower bound: the 5% quantile of Beta(7, 4).
    assert r["low"] == pytest.approx(beta.ppf(0.05, 7, 4), rel=1e-9)
    assert chance_test(0, 10, 0.5)["p_value"] == 1.0
    assert chance_test(0, 0, 0.5)["p_value"] == 1.0 and math.isnan(chance_test(0, 0, 0.5)["accuracy"])


def test_the_papers_simulation_figures():
    # 001 Sec. 3.3: 63.02% (sparse) vs 35.61% (dense) over 1000 tasks, chance 1/3.
    sparse, dense = chance_test(630, 1000, 1 / 3), chance_test(356, 1000, 1 / 3)
    assert sparse["p_value"] < 1e-70 and 0.05 < dense["p_value"] < 0.10  # dense: "near-chance"
    lo, hi = wilson_interval(630, 1000)
    assert (hi - lo) / 2 == pytest.approx(0.030, abs=0.001)  # the paper's +- 3.0 points
    assert two_proportion_test(630, 1000, 356, 1000)["p_value"] < 1e-30


@pytest.mark.parametrize("bad, match", [(1, "n_options"), (2.0, "n_options")])
def test_chance_level_refuses(bad, match):
    with pytest.raises(DebuggableError, match=match):
        chance_level(bad)


def test_chance_test_refuses_a_chance_outside_0_1():
    with pytest.raises(DebuggableError, match="chance"):
        chance_test(3, 10, 1.0)


# -- two independent conditions ----------------------------------------------------

@pytest.mark.parametrize("s1, n1, s2, n2, low, high", [
    # Newcombe (1998b), Table II, method 10 (hybrid score, no continuity correction).
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
    (10, 10, 0, 10, 0.6075, 1.0000),
])
def test_newcombe_interval_matches_newcombe_1998_table_2(s1, n1, s2, n2, low, high):
    r = two_proportion_test(s1, n1, s2, n2)
    assert r["diff"] == pytest.approx(s1 / n1 - s2 / n2)
    assert r["low"] == pytest.approx(low, abs=5e-5) and r["high"] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("s1, n1, s2, n2", [(56, 70, 48, 80), (12, 40, 20, 41), (3, 9, 3, 9), (630, 1000, 356, 1000)])
def test_z_test_is_pearson_chi_square_without_correction(s1, n1, s2, n2):
    r = two_proportion_test(s1, n1, s2, n2)
    chi2, p, _, _ = chi2_contingency([[s1, n1 - s1], [s2, n2 - s2]], correction=False)
    assert r["z"] ** 2 == pytest.approx(chi2, rel=1e-9, abs=1e-12)
    assert r["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert np.sign(r["z"]) == np.sign(s1 / n1 - s2 / n2)


def test_two_proportion_without_variance_and_bad_input():
    r = two_proportion_test(10, 10, 5, 5)
    assert (r["z"], r["p_value"], r["diff"]) == (0.0, 1.0, 0.0)
    with pytest.raises(DebuggableError, match="n2: got 0 answers"):
        two_proportion_test(1, 2, 0, 0)
    with pytest.raises(DebuggableError, match="s1"):
        two_proportion_test(3, 2, 0, 1)


# -- annotators as clusters ----------------------------------------------------------

def test_annotator_bootstrap_with_equal_trials_matches_the_closed_form():
    rng = np.random.default_rng(1)
    m, t = 20, 30
    acc = rng.uniform(0.3, 0.9, m)
    s = rng.binomial(t, acc)
    r = annotator_bootstrap(s, [t] * m, n_boot=4000, seed=2)
    a = s / t
    assert r["mean"] == pytest.approx(s.sum() / (m * t))
    se = a.std(ddof=1) / math.sqrt(m) * math.sqrt((m - 1) / m)
    assert r["se"] == pytest.approx(se, rel=0.05)
    assert r["low"] == pytest.approx(r["mean"] - 1.96 * se, abs=0.25 * se)
    assert r["high"] == pytest.approx(r["mean"] + 1.96 * se, abs=0.25 * se)
    assert (r["n_annotators"], r["successes"], r["trials"]) == (m, int(s.sum()), m * t)


def test_annotator_bootstrap_widens_relative_to_wilson_when_annotators_differ():
    # Ten annotators x 20 answers: five nearly perfect, five near chance.
    s, t = [19] * 5 + [5] * 5, [20] * 10
    r = annotator_bootstrap(s, t, n_boot=2000)
    lo, hi = wilson_interval(sum(s), sum(t))
    assert r["mean"] == pytest.approx(0.6)
    assert r["high"] - r["low"] > 2.5 * (hi - lo)
    # Annotators who share one accuracy: about Wilson's width.
    rng = np.random.default_rng(3)
    s = rng.binomial(20, 0.6, 40)
    r = annotator_bootstrap(s, [20] * 40, n_boot=2000)
    lo, hi = wilson_interval(int(s.sum()), 800)
    assert (r["high"] - r["low"]) / (hi - lo) == pytest.approx(1.0, abs=0.3)


def test_simulated_annotators_with_known_accuracy_are_recovered_and_covered():
    rng = np.random.default_rng(4)
    truth, covered = 0.63, []
    for _ in range(150):
        trials = rng.integers(10, 30, 25)
        s = rng.binomial(trials, truth)
        r = annotator_bootstrap(s, trials, n_boot=400, seed=int(rng.integers(1 << 30)))
        covered.append(r["low"] <= truth <= r["high"])
        assert abs(r["mean"] - truth) < 0.08
    assert 0.88 <= np.mean(covered) <= 0.99


def test_annotator_bootstrap_mappings_zero_trials_and_one_annotator():
    by_id = annotator_bootstrap({"ann-b": 4, "ann-a": 9, "idle": 0}, {"ann-a": 10, "ann-b": 10, "idle": 0}, n_boot=200)
    by_pos = annotator_bootstrap([9, 4], [10, 10], n_boot=200)
    assert by_id["n_annotators"] == 2 and by_id["mean"] == by_pos["mean"] == 0.65
    one = annotator_bootstrap([3], [4])
    assert one["mean"] == 0.75 and math.isnan(one["low"]) and math.isnan(one["se"])
    assert math.isnan(annotator_bootstrap([0, 0], [0, 0])["mean"])
    same = annotator_bootstrap([6, 6, 6], [10, 10, 10], n_boot=100)
    assert (same["low"], same["high"], same["se"]) == (0.6, 0.6, 0.0)


@pytest.mark.parametrize("s, t, kw, match", [
    ([5, 3], [4, 4], {}, "annotator 0 has 5 successes out of 4"),
    ([1, 2], [3], {}, "one per annotator"),
    ({"a": 1}, {"b": 2}, {}, "no entry for annotators"),
    ({"a": 1}, [2], {}, "both mappings"),
    ([1, 2], [3, 3], {"n_boot": 0}, "n_boot"),
    ([1, 2], [3, 3], {"confidence": 95}, "confidence"),
    ([[1, 2]], [[3, 3]], {}, "one value per annotator"),
])
def test_annotator_bootstrap_refuses_bad_input(s, t, kw, match):
    with pytest.raises(DebuggableError, match=match):
        annotator_bootstrap(s, t, **kw)


# -- paired (within-annotator) test ----------------------------------------------------

def test_sign_flip_p_value_by_hand_enumeration():
    # d = (0.2, 0.1, -0.05): |sum| over the 8 sign patterns is
    # 0.25, 0.35, 0.05, 0.15, 0.15, 0.05, 0.35, 0.25; four are >= 0.25 -> p = 4/8.
    r = paired_annotator_test([0.3, 0.2, 0.1], [0.1, 0.1, 0.15])
    assert r["exact"] and r["n_perm"] == 8
    assert r["p_value"] == pytest.approx(0.5) and r["diff"] == pytest.approx(0.25 / 3)
    # Five annotators all better by the same amount: only all-plus and all-minus are
    # as extreme -> p = 2/32.
    r = paired_annotator_test([0.7] * 5, [0.5] * 5)
    assert r["p_value"] == pytest.approx(2 / 32)
    assert (r["low"], r["high"]) == (pytest.approx(0.2), pytest.approx(0.2))
    assert paired_annotator_test([0.5, 0.4], [0.5, 0.4])["p_value"] == 1.0


def test_exact_p_value_matches_scipy_permutation_test():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.3, 0.9, 9), rng.uniform(0.2, 0.8, 9)
    ours = paired_annotator_test(a, b)
    ref = permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                           alternative="two-sided", n_resamples=np.inf, vectorized=True)
    assert ours["exact"] and ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    signs = np.array(list(product([-1, 1], repeat=9)))
    assert ours["p_value"] == pytest.approx(np.mean(np.abs(signs @ (a - b)) >= abs((a - b).sum()) - 1e-12))


def test_random_sign_flips_approach_the_exact_p_value():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0.4, 0.9, 15), rng.uniform(0.3, 0.8, 15)
    exact = paired_annotator_test(a, b, n_perm=2 ** 15)
    approx = paired_annotator_test(a, b, n_perm=4000, seed=1)
    assert exact["exact"] and not approx["exact"] and approx["n_perm"] == 4000
    assert approx["p_value"] == pytest.approx(exact["p_value"], abs=0.03)
    assert approx["p_value"] >= 1 / 4001


def test_paired_interval_is_the_bootstrap_of_the_mean_difference():
    rng = np.random.default_rng(7)
    a = rng.uniform(0.4, 0.9, 40)
    b = np.clip(a - 0.1 + rng.normal(0, 0.1, 40), 0, 1)
    r = paired_annotator_test(dict(zip(range(40), a)), dict(zip(range(40), b)), n_boot=3000, n_perm=2000)
    d = a - b
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert r["diff"] == pytest.approx(d.mean())
    assert r["low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.3 * se)
    assert r["high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.3 * se)
    assert r["p_value"] < 0.001 and r["n_annotators"] == 40


def test_paired_test_refuses_bad_input():
    with pytest.raises(DebuggableError, match="finite"):
        paired_annotator_test([0.5, np.nan], [0.1, 0.2])
    with pytest.raises(DebuggableError, match="no annotators"):
        paired_annotator_test([], [])
    with pytest.raises(DebuggableError, match="n_perm"):
        paired_annotator_test([0.5], [0.4], n_perm=0)
    one = paired_annotator_test([0.5], [0.4])
    assert one["p_value"] == 1.0 and math.isnan(one["low"])


# -- Fleiss' kappa ---------------------------------------------------------------------

def test_fleiss_kappa_matches_fleiss_1971_table_1():
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.430, abs=5e-4)
    # Fleiss' category shares: 0.144, 0.144, 0.167, 0.306, 0.239.
    shares = FLEISS_1971.sum(0) / FLEISS_1971.sum()
    assert shares == pytest.approx([0.144, 0.144, 0.167, 0.306, 0.239], abs=5e-4)


def test_fleiss_kappa_matches_the_wikipedia_worked_example():
    # P_bar = 0.378, P_e = 0.213, kappa = 0.210.
    assert fleiss_kappa(WIKIPEDIA) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_by_hand():
    # Three items x 3 raters: P_i = 1, 1/3, 1 -> P_bar = 7/9; shares (5/9, 4/9) ->
    # P_e = 41/81; kappa = (63 - 41) / (81 - 41) = 0.55.
    assert fleiss_kappa([[3, 0], [2, 1], [0, 3]]) == pytest.approx(0.55)
    # Unequal raters (2 and 3): P_bar = (1 + 1/3) / 2 = 2/3, shares (3/5, 2/5) ->
    # P_e = 13/25, kappa = (2/3 - 13/25) / (12/25) = 11/36.
    assert fleiss_kappa([[2, 0], [1, 2]]) == pytest.approx(11 / 36)
    # Perfect agreement, chance-like splits, and one category only (undefined).
    assert fleiss_kappa([[4, 0, 0], [0, 4, 0], [0, 0, 4]]) == pytest.approx(1.0)
    assert fleiss_kappa([[2, 2], [2, 2]]) == pytest.approx(-1 / 3)
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))


def test_kappa_table_from_raw_answers():
    labels = {"t1": ["A", "B", "B"], "t2": ["C", "C", "C"], "t3": ["A", "A", "C"]}
    counts = kappa_table(labels, ["A", "B", "C"])
    assert counts.dtype == np.int64 and counts.tolist() == [[1, 2, 0], [0, 0, 3], [2, 0, 1]]
    raw = [[c for c, k in enumerate(row) for _ in range(k)] for row in FLEISS_1971]
    assert (kappa_table(raw, range(5)) == FLEISS_1971).all()
    with pytest.raises(DebuggableError, match="item 't1' has label 'D'"):
        kappa_table({"t1": ["A", "D"]}, ["A", "B"])
    with pytest.raises(DebuggableError, match="distinct"):
        kappa_table([["A"]], ["A", "A"])
    with pytest.raises(DebuggableError, match="list of labels"):
        kappa_table(["AB"], ["A", "B"])


def test_fleiss_kappa_interval_is_a_bootstrap_over_items():
    r = fleiss_kappa_interval(FLEISS_1971, n_boot=1500, seed=0)
    assert r["kappa"] == pytest.approx(0.430, abs=5e-4) and (r["n_items"], r["n_ratings"]) == (30, 180)
    assert r["low"] < r["kappa"] < r["high"] and r["se"] > 0
    # The same replicates by hand: rows drawn with NumPy's default_rng(0).
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 30, (1500, 30))
    reps = np.array([fleiss_kappa(FLEISS_1971[i]) for i in idx])
    reps = reps[np.isfinite(reps)]
    assert (r["low"], r["high"]) == (pytest.approx(np.quantile(reps, 0.025)), pytest.approx(np.quantile(reps, 0.975)))
    assert r["se"] == pytest.approx(reps.std(ddof=1))


def test_fleiss_kappa_refuses_bad_tables():
    for bad, match in [([[1, 0], [2, 0]], "item 0 has 1 rating"), ([1, 2], "shape"), ([[1.5, 1]], "whole numbers"),
                       ([[-1, 3]], "whole numbers")]:
        with pytest.raises(DebuggableError, match=match):
            fleiss_kappa(bad)


# -- attention checks --------------------------------------------------------------------

def test_attention_exclusion_rule():
    r = attention_exclusion({"ann1": 4, "ann2": 3, "ann3": 2, "ann4": 0}, {"ann1": 4, "ann2": 4, "ann3": 4, "ann4": 0})
    assert list(r) == ["ann1", "ann2", "ann3", "ann4"]
    assert [r[k]["excluded"] for k in r] == [False, False, True, True]
    assert r["ann2"] == {"passed": 3, "total": 4, "accuracy": 0.75, "excluded": False, "reason": ""}
    assert r["ann3"]["reason"] == "passed 2 of 4 attention checks (50%), below the 75% required"
    assert r["ann4"]["reason"] == "answered no attention check" and math.isnan(r["ann4"]["accuracy"])
    # Thresholds that are not exact binary fractions: 2 of 3 is kept at 2/3.
    assert not attention_exclusion([2], [3], min_accuracy=2 / 3)[0]["excluded"]
    assert attention_exclusion([1], [2], min_accuracy=0.0)[0]["excluded"] is False
    assert exclusion_rule() == ("An annotator is excluded when they answered none of their attention checks, "
                                "or when fewer than 75% of the attention checks they answered were correct.")
    assert "60%" in exclusion_rule(0.6) and "66.7%" in exclusion_rule(2 / 3)
    assert attention_exclusion([1], [3])[0]["reason"] == "passed 1 of 3 attention checks (33.3%), below the 75% required"
    with pytest.raises(DebuggableError, match="min_accuracy"):
        attention_exclusion([1], [2], min_accuracy=75)
    with pytest.raises(DebuggableError, match="at most 2"):
        attention_exclusion([3], [2])
