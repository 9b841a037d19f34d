"""Study scoring on hand-made answers, against values computed by hand."""

import math

import pytest

from debuggable.studies import Block, Option, Question, Study, Task
from debuggable.studies.score import finite, headline, score_studies


class _Set:
    """The parts of a StudySet that scoring reads."""

    def __init__(self, study: Study, assignments: dict[str, list[str]], root):
        self.studies = {study.name: study}
        self.assignments = {study.name: assignments}
        self.root = root


def _pick(key: str) -> list[Question]:
    return [Question(key="pick", kind="choice", prompt="?", options=[Option(value=c, label=c) for c in "ABC"])]


def _simulation_study() -> Study:
    tasks = [Task(id=f"simulation/{i}", study="simulation", condition=c, blocks=[Block(kind="text", text="t")],
                  questions=_pick("A"), key={"pick": "A"}, meta={"correct_is_target_class": i % 2 == 0})
             for i, c in enumerate(["sparse", "sparse", "dense", "dense"], 1)]
    tasks += [Task(id=f"simulation/{i}", study="simulation", condition="attention", attention_check=True,
                   blocks=[Block(kind="text", text="choose B")], questions=_pick("B"), key={"pick": "B"})
              for i in (5, 6)]
    return Study(name="simulation", kind="simulation", title="t", instructions=[], conditions=["sparse", "dense"],
                 tasks=tasks, replication=3)


def _answers():
    # (annotator, task number, pick): a1 and a2 pass both checks, a3 fails both.
    table = [("a1", 1, "A"), ("a1", 2, "A"), ("a1", 3, "B"), ("a1", 4, "A"), ("a1", 5, "B"), ("a1", 6, "B"),
             ("a2", 1, "A"), ("a2", 2, "C"), ("a2", 3, "C"), ("a2", 4, "B"), ("a2", 5, "B"), ("a2", 6, "B"),
             ("a3", 1, "A"), ("a3", 2, "A"), ("a3", 3, "A"), ("a3", 4, "A"), ("a3", 5, "A"), ("a3", 6, "C")]
    return [{"study": "simulation", "task_id": f"simulation/{n}", "annotator_id": a, "answer": {"pick": p},
             "condition": None, "attention_check": n > 4} for a, n, p in table]


def _wilson(s, n, z=1.959963984540054):
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_simulation_scores_by_hand(tmp_path):
    study = _simulation_study()
    assignments = {a: [t.id for t in study.tasks] for a in ("a1", "a2", "a3")}
    scores = finite(score_studies(_Set(study, assignments, tmp_path), _answers(), min_check_accuracy=0.75))
    s = scores["studies"]["simulation"]
    assert s["excluded"] == ["a3"] and s["answers"] == 12 and s["answers_kept"] == 8
    assert scores["annotators"]["a3"]["reason"] and scores["annotators"]["a1"]["excluded"] is False
    sparse, dense = s["conditions"]["sparse"], s["conditions"]["dense"]
    assert (sparse["count"], sparse["n"], dense["count"], dense["n"]) == (3, 4, 1, 4)
    assert (sparse["low"], sparse["high"]) == pytest.approx(_wilson(3, 4), abs=1e-12)
    assert (dense["low"], dense["high"]) == pytest.approx(_wilson(1, 4), abs=1e-12)
    # P(X >= 3), X ~ Binomial(4, 1/3) = (4 * 2 + 1) / 81.
    assert sparse["chance_test"]["p_value"] == pytest.approx(9 / 81)
    assert s["chance"] == pytest.approx(1 / 3)
    # Pooled z-test: p1 = 3/4, p2 = 1/4, pooled 1/2 -> z = 0.5 / sqrt(0.25 * 0.5).
    assert s["comparison"]["two_proportion"]["z"] == pytest.approx(0.5 / math.sqrt(0.125))
    # The paired test over a1 (1.0 vs 0.5) and a2 (0.5 vs 0.0): mean difference 0.5.
    assert s["comparison"]["paired"]["diff"] == pytest.approx(0.5)
    # Accuracy split by whether the correct image is of the target class: tasks 2 and 4 are.
    assert s["by_correct_image_class"]["sparse"]["target_class"]["n"] == 2
    # Fleiss' kappa of the sparse choices: items [A, A] and [A, C] with categories A, B, C:
    # P = (1 + 0) / 2 = 0.5; shares A 3/4, C 1/4 -> Pe = 0.625; kappa = (0.5 - 0.625) / 0.375.
    assert s["kappa"]["sparse"]["kappa"] == pytest.approx((0.5 - 0.625) / 0.375)
    lines = headline(scores)
    assert lines[0].startswith("simulation: 12 answers from 3 of 3 annotators, 1 excluded")
    assert "sparse 75.0%" in lines[1] and "chance 33.3%" in lines[1]


def test_no_answers_give_empty_but_valid_scores(tmp_path):
    study = _simulation_study()
    scores = finite(score_studies(_Set(study, {"a1": [t.id for t in study.tasks]}, tmp_path), [],
                                  min_check_accuracy=0.75))
    s = scores["studies"]["simulation"]
    assert s["answers"] == 0 and "conditions" not in s
    assert scores["annotators"]["a1"]["excluded"]  # answered no check yet
