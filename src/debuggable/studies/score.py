"""``debuggable study score``: the answers scored per study and condition into ``studies/scores.json``.

For every study: attention-check quality per annotator and who is excluded (the
rule of :func:`debuggable.studies.stats.attention_exclusion`, quoted in the scores),
then, on the kept annotators' answers, what the study measures:

* simulation: accuracy per condition with a Wilson interval, a cluster bootstrap over
  annotators, the chance level and an exact test against it; sparse vs dense by a
  two-proportion test and a paired test over the annotators who did both; Fleiss'
  kappa of the choices; accuracy split by whether the right image is of the target
  class (001 Table 25);
* spurious correlation: how often a shared pattern is seen, how often it is called
  part of the surroundings (spurious), the agreement of the descriptions, word
  clouds, and, where the run planted a patch, how the planted feature was judged;
* misclassification: how often the predicted class's feature (or the random control)
  is seen in the image and judged the better match, with the true class's feature
  for comparison; problematic vs random tested;
* feature description: ease and confidence (Likert 1-5), the most helpful section,
  agreement of the 3-word and 15-word descriptions, word clouds;
* failure review: the answers' distributions and the statements' mean agreement.

With simulated annotators (``studies/simulated.json``) each policy's accuracy on the
keyed questions is reported next to what it must be.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from debuggable.run import RunDirectory, atomic_write_json, read_json
from debuggable.studies import stats
from debuggable.studies.files import FIGURES_DIR, SCORES_FILE, SIMULATED_FILE, STUDIES_DIR, StudySet
from debuggable.studies.schema import Study, Task


#: What the seed texts report, for the report's comparison.
PAPER = {
    "simulation": {"sparse": 0.6302, "dense": 0.3561, "source": "001 Sec. 3.3 (MTurk, ImageNet, 1000 tasks)"},
    "misclassification": {"predicted_present": 0.70, "predicted_better": 0.60, "random_present": 0.16,
                          "source": "001 Sec. 4.3 / 000 (MTurk, ImageNet)"},
    "description": {"helpful": {"B": 0.4318, "C": 0.1767, "both": 0.3214, "none": 0.07},
                    "source": "002 Sec. 8 (5,971 answers)"},
}


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = stats.wilson_interval(successes, n) if n else (float("nan"), float("nan"))
    return {"n": n, "count": successes, "rate": successes / n if n else float("nan"), "low": low, "high": high}


def _distribution(values: Iterable[Any], categories: list[Any]) -> dict[str, Any]:
    values = list(values)
    counts = {str(c): sum(v == c for v in values) for c in categories}
    n = len(values)
    return {"n": n, "counts": counts, "shares": {c: (k / n if n else float("nan")) for c, k in counts.items()}}


def _likert(values: list[int], low: int = 1, high: int = 5) -> dict[str, Any]:
    out = _distribution(values, list(range(low, high + 1)))
    out["mean"] = float(np.mean(values)) if values else float("nan")
    return out


def _kappa(answers: list[dict], key: str, categories: list[str]) -> dict[str, Any] | None:
    """Fleiss' kappa of one choice question over the tasks answered at least twice."""
    by_task: dict[str, list] = defaultdict(list)
    for a in answers:
        v = a["answer"].get(key)
        if v is not None:
            by_task[a["task_id"]].append(v)
    items = [v for v in by_task.values() if len(v) >= 2]
    if len(items) < 2:
        return None
    table = stats.kappa_table(items, categories)
    k = stats.fleiss_kappa_interval(table, n_boot=1000, seed=0)
    return {"kappa": k["kappa"], "low": k["low"], "high": k["high"], "items": k["n_items"], "ratings": k["n_ratings"]}


def _text_agreement(answers: list[dict], keys: list[str]) -> dict[str, Any] | None:
    """Mean pairwise cosine agreement (MiniLM) of the free-text answers to ``keys`` per task."""
    from debuggable.studies.text_agreement import description_agreement

    texts, groups = [], []
    for a in answers:
        parts = [a["answer"].get(k) for k in keys]
        parts = [p for p in parts if isinstance(p, str) and p.strip()]
        if parts:
            texts.append(" ".join(parts))
            groups.append(a["task_id"])
    if len(set(g for g in groups if groups.count(g) >= 2)) == 0:
        return None
    res = description_agreement(texts, groups)
    return {"overall": res["overall"], "tasks": res["n_groups"], "texts": len(texts)}


def _accuracy_block(correct_by_annotator: dict[str, list[bool]], chance: float) -> dict[str, Any]:
    s = {a: int(sum(v)) for a, v in correct_by_annotator.items() if v}
    n = {a: len(v) for a, v in correct_by_annotator.items() if v}
    total_s, total_n = sum(s.values()), sum(n.values())
    out = _rate(total_s, total_n)
    out["chance"] = chance
    if total_n:
        out["chance_test"] = stats.chance_test(total_s, total_n, chance)
    if len(n) >= 2:
        out["bootstrap"] = stats.annotator_bootstrap(s, n, n_boot=2000, seed=0)
    out["annotators"] = len(n)
    return out


def _compare(a: dict[str, list[bool]], b: dict[str, list[bool]], name_a: str, name_b: str) -> dict[str, Any]:
    sa, na = sum(sum(v) for v in a.values()), sum(len(v) for v in a.values())
    sb, nb = sum(sum(v) for v in b.values()), sum(len(v) for v in b.values())
    out: dict[str, Any] = {"a": name_a, "b": name_b}
    if na and nb:
        out["two_proportion"] = stats.two_proportion_test(int(sa), na, int(sb), nb)
    both = sorted(k for k in a if a[k] and b.get(k))
    if len(both) >= 2:
        out["paired"] = stats.paired_annotator_test({k: float(np.mean(a[k])) for k in both},
                                                    {k: float(np.mean(b[k])) for k in both}, seed=0)
    return out


# ------------------------------------------------------------------------------------- per study


def _simulation(study: Study, answers: list[dict], tasks: dict[str, Task]) -> dict[str, Any]:
    n_options = len(study.main_tasks[0].questions[0].options)
    chance = stats.chance_level(n_options)
    per: dict[str, dict[str, list[bool]]] = {c: defaultdict(list) for c in study.conditions}
    by_target: dict[str, dict[bool, list[bool]]] = {c: {True: [], False: []} for c in study.conditions}
    for a in answers:
        t = tasks[a["task_id"]]
        ok = t.correct(a["answer"])["pick"]
        per[t.condition][a["annotator_id"]].append(ok)
        by_target[t.condition][bool(t.meta.get("correct_is_target_class"))].append(ok)
    out = {"measure": "accuracy: the image the model scores highest was picked", "chance": chance,
           "conditions": {c: _accuracy_block(per[c], chance) for c in study.conditions},
           "by_correct_image_class": {c: {"target_class": _rate(sum(v[True]), len(v[True])),
                                          "other_class": _rate(sum(v[False]), len(v[False]))}
                                      for c, v in by_target.items()},
           "kappa": {c: _kappa([a for a in answers if tasks[a["task_id"]].condition == c], "pick",
                               [o.value for o in study.main_tasks[0].questions[0].options]) for c in study.conditions},
           "paper": PAPER["simulation"]}
    if {"sparse", "dense"} <= set(study.conditions):
        out["comparison"] = _compare(per["sparse"], per["dense"], "sparse", "dense")
    return out


def _spurious(study: Study, answers: list[dict], tasks: dict[str, Task], figures: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"conditions": {}, "agreement": {}, "word_clouds": {}}
    shared_by: dict[str, dict[str, list[bool]]] = {c: defaultdict(list) for c in study.conditions}
    for c in study.conditions:
        rows = [a for a in answers if tasks[a["task_id"]].condition == c]
        yes = [a for a in rows if a["answer"].get("shared") == "yes"]
        for a in rows:
            shared_by[c][a["annotator_id"]].append(a["answer"].get("shared") == "yes")
        sides = [a["answer"].get(k) for a in yes for k in ("where_A", "where_B") if a["answer"].get(k)]
        out["conditions"][c] = {"shared": _rate(len(yes), len(rows)),
                                "surroundings": _rate(sum(s == "surroundings" for s in sides), len(sides))}
        out["agreement"][c] = _text_agreement(yes, ["describe"])
        out["word_clouds"][c] = _cloud([a["answer"].get("describe") for a in yes], figures / f"{study.name}_{c}.png")
    out["kappa"] = {c: _kappa([a for a in answers if tasks[a["task_id"]].condition == c], "shared", ["yes", "no"])
                    for c in study.conditions}
    if {"sparse", "dense"} <= set(study.conditions):
        out["comparison"] = _compare(shared_by["sparse"], shared_by["dense"], "sparse", "dense")
    planted_sides = []
    for a in answers:
        t = tasks[a["task_id"]]
        for side, frac in t.meta.get("planted_patch_by_side", {}).items():
            if frac > 0.5:
                planted_sides.append(a["answer"].get(f"where_{side}"))
    if planted_sides:
        out["planted_patch"] = {
            "answers": len(planted_sides),
            "shared_seen": _rate(sum(v is not None for v in planted_sides), len(planted_sides)),
            "called_surroundings": _rate(sum(v == "surroundings" for v in planted_sides),
                                         sum(v is not None for v in planted_sides)),
        }
    return out


def _misclassification(study: Study, answers: list[dict], tasks: dict[str, Task]) -> dict[str, Any]:
    out: dict[str, Any] = {"conditions": {}}
    present_by: dict[str, dict[str, list[bool]]] = {c: defaultdict(list) for c in study.conditions}
    for c in study.conditions:
        second_present, second_better, true_present = [], [], []
        for a in answers:
            t = tasks[a["task_id"]]
            if t.condition != c:
                continue
            roles = {letter: o["role"] for letter, o in t.meta["options"].items()}
            second = next(k for k, r in roles.items() if r != "true")
            true = next(k for k, r in roles.items() if r == "true")
            present = a["answer"].get("present", [])
            second_present.append(second in present)
            true_present.append(true in present)
            second_better.append(a["answer"].get("better") == second)
            present_by[c][a["annotator_id"]].append(second in present)
        role = "predicted" if c == "problematic" else "random"
        out["conditions"][c] = {
            f"{role}_feature_present": _rate(sum(second_present), len(second_present)),
            f"{role}_feature_better": _rate(sum(second_better), len(second_better)),
            "true_feature_present": _rate(sum(true_present), len(true_present)),
        }
    if {"problematic", "random"} <= set(study.conditions):
        out["comparison"] = _compare(present_by["problematic"], present_by["random"], "problematic", "random")
    out["kappa"] = {c: _kappa([a for a in answers if tasks[a["task_id"]].condition == c], "better", ["A", "B"])
                    for c in study.conditions}
    out["paper"] = PAPER["misclassification"]
    return out


def _description(study: Study, answers: list[dict], tasks: dict[str, Task], figures: Path) -> dict[str, Any]:
    from debuggable.studies.generators.description import SECTIONS

    out: dict[str, Any] = {"conditions": {}, "paper": PAPER["description"]}
    for c in study.conditions:
        rows = [a for a in answers if tasks[a["task_id"]].condition == c]
        helpful = _distribution([a["answer"].get("helpful") for a in rows], SECTIONS[0])
        by_task: dict[str, list[str]] = defaultdict(list)
        for a in rows:
            by_task[a["task_id"]].append(a["answer"].get("helpful"))
        none_majority = sum(v.count("none") > len(v) / 2 for v in by_task.values())
        out["conditions"][c] = {
            "ease": _likert([a["answer"]["ease"] for a in rows if "ease" in a["answer"]]),
            "confidence": _likert([a["answer"]["confidence"] for a in rows if "confidence" in a["answer"]]),
            "helpful": helpful,
            "features_with_none_majority": _rate(none_majority, len(by_task)),
            "agreement": {"short": _text_agreement(rows, ["short"]), "long": _text_agreement(rows, ["long"]),
                          "both": _text_agreement(rows, ["short", "long"])},
            "word_cloud": _cloud([a["answer"].get("short") for a in rows] + [a["answer"].get("long") for a in rows],
                                 figures / f"{study.name}_{c}.png"),
        }
    return out


def _failure_review(study: Study, answers: list[dict], tasks: dict[str, Task]) -> dict[str, Any]:
    from debuggable.studies.generators.failure_review import ACTIONS, STATEMENTS

    out: dict[str, Any] = {"conditions": {}, "statements": STATEMENTS}
    for c in study.conditions:
        rows = [a["answer"] for a in answers if tasks[a["task_id"]].condition == c]
        actions = {v: sum(v in r.get("actions", []) for r in rows) for v, _ in ACTIONS}
        out["conditions"][c] = {
            "answers": len(rows),
            "describable": _distribution([r.get("describable") for r in rows], ["yes", "partly", "no"]),
            "necessary": _distribution([r.get("necessary") for r in rows], ["necessary", "spurious", "unsure"]),
            "actions": actions,
            "statements": [_likert([r[f"s{i}"] for r in rows if f"s{i}" in r]) for i in range(1, len(STATEMENTS) + 1)],
        }
    return out


def _cloud(texts: list[Any], path: Path) -> str | None:
    from debuggable.studies.text_agreement import description_word_cloud

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        return None
    written = description_word_cloud(texts, path)
    return None if written is None else f"{STUDIES_DIR}/{FIGURES_DIR}/{Path(written).name}"


_MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "simulation": lambda s, a, t, f: _simulation(s, a, t),
    "spurious": _spurious,
    "misclassification": lambda s, a, t, f: _misclassification(s, a, t),
    "description": _description,
    "failure_review": lambda s, a, t, f: _failure_review(s, a, t),
}


def _by_policy(study: Study, answers: list[dict], tasks: dict[str, Task], simulated: dict[str, Any]) -> dict[str, Any]:
    """Each simulated policy's accuracy on the keyed questions (checks included), with what it must be."""
    from debuggable.studies.simulate import expected_accuracy

    plan = simulated.get("annotators", {})
    p = float(simulated.get("noisy_accuracy", 0.0))
    per: dict[str, list[bool]] = defaultdict(list)
    options: dict[str, set[int]] = defaultdict(set)
    for a in answers:
        policy = plan.get(a["annotator_id"])
        t = tasks[a["task_id"]]
        if policy is None or not t.key:
            continue
        for qkey, ok in t.correct(a["answer"]).items():
            per[policy].append(ok)
            options[policy].add(len(next(q for q in t.questions if q.key == qkey).options))
    out = {}
    for policy, v in per.items():
        m = options[policy]
        expected = expected_accuracy(policy, m.pop(), p) if len(m) == 1 else None
        out[policy] = {**_rate(sum(v), len(v)), "expected": expected}
        # Per condition, main tasks only: where a policy's accuracy depends on what is shown.
        by_condition: dict[str, list[bool]] = defaultdict(list)
        for a in answers:
            t = tasks[a["task_id"]]
            if plan.get(a["annotator_id"]) == policy and t.key and not t.attention_check:
                by_condition[t.condition].extend(t.correct(a["answer"]).values())
        if by_condition:
            out[policy]["conditions"] = {c: _rate(sum(v), len(v)) for c, v in by_condition.items()}
    return out


def score_studies(studies: StudySet, answers: list[dict], *, min_check_accuracy: float,
                  simulated: dict[str, Any] | None = None) -> dict[str, Any]:
    """Scores of every study from the database's ``answers`` (see module docstring)."""
    tasks = {t.id: t for s in studies.studies.values() for t in s.tasks}
    figures = studies.root / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "scored_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exclusion_rule": stats.exclusion_rule(min_check_accuracy),
        "simulated": bool(simulated), "studies": {}, "annotators": {},
    }
    for name, study in studies.studies.items():
        rows = [a for a in answers if a["study"] == name and a["task_id"] in tasks]
        annotators = list(studies.assignments[name])
        passed = {a: 0 for a in annotators}
        checked = {a: 0 for a in annotators}
        for a in rows:
            t = tasks[a["task_id"]]
            if t.attention_check:
                checked[a["annotator_id"]] += 1
                passed[a["annotator_id"]] += int(all(t.correct(a["answer"]).values()))
        quality = stats.attention_exclusion(passed, checked, min_accuracy=min_check_accuracy)
        main = [a for a in rows if not tasks[a["task_id"]].attention_check]
        kept = [a for a in main if not quality[a["annotator_id"]]["excluded"]]
        answered = {a["annotator_id"] for a in rows}
        for annotator in annotators:
            q = dict(quality[annotator])
            q["study"] = name
            q["answers"] = sum(a["annotator_id"] == annotator for a in main)
            if simulated:
                q["policy"] = simulated.get("annotators", {}).get(annotator)
            out["annotators"][annotator] = q
        record: dict[str, Any] = {
            "kind": study.kind, "title": study.title, "answers": len(main), "answers_kept": len(kept),
            "annotators": len(annotators), "annotators_answering": len(answered),
            "excluded": sorted(a for a in answered if quality[a]["excluded"]),
            "attention": {"checks_answered": sum(checked.values()), "checks_passed": sum(passed.values())},
            "conditions_answered": {c: sum(tasks[a["task_id"]].condition == c for a in kept) for c in study.conditions},
        }
        measure = _MEASURES.get(study.kind)
        if measure is not None and kept:
            record.update(measure(study, kept, tasks, figures))
        if simulated:
            record["by_policy"] = _by_policy(study, rows, tasks, simulated)
            if study.kind == "simulation" and main:  # every simulated annotator, the excluded ones included
                record["all_annotators"] = _simulation(study, main, tasks)
        out["studies"][name] = record
    return out


def score_run(run: RunDirectory, *, database=None, rebuild_report: bool = True) -> dict[str, Any]:
    """Score ``run``'s studies from its database, write ``studies/scores.json`` and, by
    default, rebuild the HTML report so the scores show there."""
    from debuggable.studies.db import StudyDatabase

    studies = StudySet(run.path / STUDIES_DIR)
    own = database is None
    db = database or StudyDatabase(studies.database_url)
    try:
        if own:
            db.migrate()
        answers = db.answers()
    finally:
        if own:
            db.close()
    sim_path = studies.root / SIMULATED_FILE
    simulated = read_json(sim_path) if sim_path.is_file() else None
    cfg = run.config.studies
    min_acc = cfg.min_check_accuracy if cfg is not None else stats.DEFAULT_MIN_ATTENTION_ACCURACY
    scores = finite(score_studies(studies, answers, min_check_accuracy=min_acc, simulated=simulated))
    atomic_write_json(studies.root / SCORES_FILE, scores)
    if rebuild_report and run.summary("report") is not None:
        from debuggable import pipeline

        pipeline.run_until(run, "report", force=True, progress=False)
    return scores


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has no NaN), NumPy scalars as Python's."""
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def load_scores(run: RunDirectory) -> dict[str, Any] | None:
    path = run.path / STUDIES_DIR / SCORES_FILE
    return read_json(path) if path.is_file() else None


def _pct(r: dict[str, Any] | None) -> str:
    if not r or not r.get("n"):
        return "n/a"
    return f"{r['rate']:.1%} [{r['low']:.1%}, {r['high']:.1%}] of {r['n']}"


def headline(scores: dict[str, Any]) -> list[str]:
    """One or two lines per study: what a person reads first."""
    lines = []
    for name, s in scores.get("studies", {}).items():
        head = (f"{name}: {s['answers']} answers from {s['annotators_answering']} of {s['annotators']} annotators, "
                f"{len(s['excluded'])} excluded by the attention checks")
        lines.append(head)
        if s["kind"] == "simulation" and "conditions" in s:
            parts = [f"{c} {_pct(v)}" for c, v in s["conditions"].items()]
            lines.append(f"    accuracy (chance {s['chance']:.1%}): " + "; ".join(parts))
        elif s["kind"] == "spurious" and "conditions" in s:
            lines.append("    shared pattern seen: " + "; ".join(f"{c} {_pct(v['shared'])}" for c, v in s["conditions"].items()))
        elif s["kind"] == "misclassification" and "conditions" in s:
            parts = []
            for c, v in s["conditions"].items():
                key = next(k for k in v if k.endswith("_feature_present") and not k.startswith("true"))
                parts.append(f"{c}: {key.split('_')[0]} feature seen {_pct(v[key])}")
            lines.append("    " + "; ".join(parts))
        elif s["kind"] == "description" and "conditions" in s:
            parts = [f"{c} ease {v['ease']['mean']:.2f}, confidence {v['confidence']['mean']:.2f}"
                     for c, v in s["conditions"].items()]
            lines.append("    " + "; ".join(parts))
        if s.get("by_policy"):
            lines.append("    simulated policies (keyed questions): " + "; ".join(
                f"{p} {v['rate']:.1%} (expected {v['expected']:.1%})" if v.get("expected") is not None
                else f"{p} {v['rate']:.1%}" for p, v in sorted(s["by_policy"].items())))
    return lines
