from collections import Counter

import pytest

from debuggable.errors import DebuggableError
from debuggable.studies import assign_tasks

from tests.studies.toy import make_toy_study


@pytest.mark.parametrize("per_condition, annotators, replication", [(6, 4, 2), (7, 5, 3), (5, 3, 3), (10, 7, 1)])
def test_each_task_goes_to_r_distinct_annotators_and_conditions_are_balanced(tmp_path, per_condition, annotators, replication):
    study, lists = make_toy_study(tmp_path, tasks_per_condition=per_condition, annotators=annotators,
                                  replication=replication)
    copies = Counter(t for ids in lists.values() for t in ids if not study.task(t).attention_check)
    assert set(copies) == {t.id for t in study.main_tasks}
    assert set(copies.values()) == {replication}
    for ids in lists.values():
        main = [t for t in ids if not study.task(t).attention_check]
        assert len(main) == len(set(main))
        assert sum(study.task(t).attention_check for t in ids) == 2
    for condition in study.conditions:
        counts = [sum(study.task(t).condition == condition for t in ids) for ids in lists.values()]
        assert max(counts) - min(counts) <= 1
    totals = [len(ids) for ids in lists.values()]
    assert max(totals) - min(totals) <= 1


def test_the_same_seed_gives_the_same_assignment_and_another_seed_another_order(tmp_path):
    study, lists = make_toy_study(tmp_path)
    assert assign_tasks(study, 4) == lists
    other = assign_tasks(study, 4, seed=99)
    assert other != lists


def test_too_few_annotators_is_one_sentence(tmp_path):
    study, _ = make_toy_study(tmp_path, replication=2, annotators=2)
    with pytest.raises(DebuggableError, match="cannot give each task to 2 different annotators"):
        assign_tasks(study, 1)
