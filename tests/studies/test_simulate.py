"""Simulated annotators: their policies' known accuracies, and the whole chain (HTTP API,
database, scoring) checked end to end against what must come out."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from debuggable.errors import DebuggableError
from debuggable.run import read_json
from debuggable.run.config import SimulatedAnnotatorsConfig
from debuggable.studies import Block, Option, Question, StudySet, Task
from debuggable.studies.db import StudyDatabase
from debuggable.studies.simulate import (
    NoisyOraclePolicy,
    OraclePolicy,
    RandomPolicy,
    expected_accuracy,
    policy_plan,
)

from tests.studies.tiny_study_run import fresh_copy


def _keyed_task(i: int, n_options: int = 3) -> Task:
    letters = "ABCDE"[:n_options]
    return Task(id=f"s/{i}", study="s", condition="a", blocks=[Block(kind="text", text="t")],
                questions=[Question(key="pick", kind="choice", prompt="?",
                                    options=[Option(value=c, label=c) for c in letters]),
                           Question(key="why", kind="text", prompt="why?", required=False)],
                key={"pick": letters[i % n_options]})


@pytest.mark.parametrize("policy, name, p", [(OraclePolicy(), "oracle", 0.0), (RandomPolicy(), "random", 0.0),
                                             (NoisyOraclePolicy(0.6), "noisy", 0.6), (NoisyOraclePolicy(0.2), "noisy", 0.2)])
def test_each_policy_reaches_its_known_accuracy(policy, name, p):
    rng = np.random.default_rng(1)
    tasks = [_keyed_task(i) for i in range(3000)]
    acc = np.mean([policy.answer(t, rng)["pick"] == t.key["pick"] for t in tasks])
    expected = expected_accuracy(name, 3, p)
    assert abs(acc - expected) <= 3 * np.sqrt(expected * (1 - expected) / 3000) + 1e-12
    for t in tasks[:50]:  # every answer is valid for its task
        t.validate_answer(policy.answer(t, rng))


def test_policies_respect_show_if_and_plans_refuse_too_many_annotators():
    from tests.studies.toy import _questions

    t = Task(id="s/1", study="s", condition="a", blocks=[Block(kind="text", text="t")], questions=_questions(),
             key={"pick": "B"})
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = RandomPolicy().answer(t, rng)
        t.validate_answer(a)  # describe only when pattern == yes
    assert policy_plan(["x1", "x2", "x3"], {"oracle": 1, "noisy": 1, "random": 1}) == {
        "x1": "oracle", "x2": "noisy", "x3": "random"}
    with pytest.raises(DebuggableError, match="4 simulated annotators but the study has 3"):
        policy_plan(["x1", "x2", "x3"], {"oracle": 2, "random": 2})


@pytest.mark.slow
def test_simulated_annotators_answer_every_study_over_http_and_the_scores_are_what_must_come_out(tmp_path_factory, tmp_path):
    from debuggable.studies.run_simulation import simulate_and_score

    run = fresh_copy(tmp_path_factory.mktemp("studies_run"), tmp_path / "run")
    studies = StudySet(run.path / "studies")
    sim = SimulatedAnnotatorsConfig(oracle=1, noisy=1, random=1, reader=1, noisy_accuracy=0.5)
    result = simulate_and_score(run, sim, log=lambda s: None)
    scores = result["scores"]

    db = StudyDatabase(studies.database_url)
    try:
        rows = db.answers()
    finally:
        db.close()
    plan = read_json(studies.root / "simulated.json")["annotators"]
    assert Counter(plan.values()) == Counter({p: len(studies.studies) for p in ("oracle", "noisy", "random", "reader")})
    assigned = sum(len(ids) for a in studies.assignments.values() for who, ids in a.items() if who in plan)
    assert len(rows) == assigned == result["answers"]  # every task of the simulated annotators answered once
    assert len({(r["annotator_id"], r["task_id"]) for r in rows}) == len(rows)

    tasks = {t.id: t for s in studies.studies.values() for t in s.tasks}
    correct = defaultdict(list)
    for r in rows:
        t = tasks[r["task_id"]]
        t.validate_answer(r["answer"])  # what was stored is valid for its task
        for ok in t.correct(r["answer"]).values():
            correct[(r["study"], plan[r["annotator_id"]])].append(ok)
    for name, s in scores["studies"].items():
        for policy, v in s["by_policy"].items():  # recounted here from the database's rows
            assert v["count"] == sum(correct[(name, policy)]) and v["n"] == len(correct[(name, policy)])
        assert s["by_policy"]["oracle"]["rate"] == 1.0
        # Oracles never fail a check; whoever is excluded failed one.
        for annotator, q in scores["annotators"].items():
            if q["study"] == name:
                assert q["excluded"] == (q["total"] == 0 or q["passed"] < q["total"])  # 2 checks, 75%
                if q["policy"] == "oracle":
                    assert not q["excluded"]
    sim_scores = scores["studies"]["simulation"]
    kept = [a for a, q in scores["annotators"].items() if q["study"] == "simulation" and not q["excluded"]]
    for condition, v in sim_scores["conditions"].items():
        oks = [tasks[r["task_id"]].correct(r["answer"])["pick"] for r in rows
               if r["study"] == "simulation" and r["annotator_id"] in kept and tasks[r["task_id"]].condition == condition
               and not tasks[r["task_id"]].attention_check]
        assert v["n"] == len(oks) and v["count"] == sum(oks)
    # The reader picks by the shown features alone: recomputed here from the feature store.
    from debuggable.features import FeatureStore
    from debuggable.layer import SparseDecisionLayer
    from debuggable.pipeline.fit_stage import load_path

    x = np.asarray(FeatureStore(run.path / "features" / "inspected").split("val").to_numpy("features"), np.float64)
    path = load_path(run)
    mean, std = path.feature_mean, np.where(path.feature_std > 0, path.feature_std, 1)
    reader = [a for a, p in plan.items() if p == "reader" and a.startswith("simulation")][0]
    expect = defaultdict(list)
    for r in rows:
        t = tasks[r["task_id"]]
        if r["annotator_id"] == reader and not t.attention_check:
            js = t.meta["features"]
            score = ((x[np.ix_(t.meta["rows"], js)] - mean[js]) / std[js]) @ np.asarray(t.meta["weights"])
            expect[t.condition].append("ABC"[int(np.argmax(score))] == t.key["pick"])
    got = sim_scores["by_policy"]["reader"]["conditions"]
    assert {c: (v["count"], v["n"]) for c, v in got.items()} == {c: (sum(v), len(v)) for c, v in expect.items()}
    mis = scores["studies"]["misclassification"]["conditions"]
    assert set(mis) == {"problematic", "random"}
    assert (run.path / "studies" / "scores.json").is_file()


@pytest.mark.slow
def test_simulated_answers_are_never_mixed_into_a_real_study(tmp_path_factory, tmp_path):
    from debuggable.studies.run_simulation import simulate_and_score

    run = fresh_copy(tmp_path_factory.mktemp("studies_run"), tmp_path / "run")
    studies = StudySet(run.path / "studies")
    db = StudyDatabase(studies.database_url)
    try:
        annotator = sorted(studies.assignments["simulation"])[-1]
        first = studies.assignments["simulation"][annotator][0]
        # Every simulation task and check asks one question, "pick".
        db.record_answer(annotator, 1, first, studies.task(first).validate_answer({"pick": "A"}), 1000)
    finally:
        db.close()
    with pytest.raises(DebuggableError, match="not simulated"):
        simulate_and_score(run, SimulatedAnnotatorsConfig(oracle=1, noisy=0, random=0), log=lambda s: None)

