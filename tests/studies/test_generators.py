"""The five task generators on a tiny finished run, each record checked against the run's
artifacts recomputed here independently (NumPy on the stored features and layers)."""

from collections import Counter

import numpy as np
import pytest

from debuggable.layer import SparseDecisionLayer
from debuggable.pipeline.fit_stage import load_path
from debuggable.run import RunDirectory, read_json
from debuggable.studies import StudySet

from tests.studies.tiny_study_run import tiny_study_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return RunDirectory.open(tiny_study_run(tmp_path_factory.mktemp("studies_run")))


@pytest.fixture(scope="module")
def studies(run):
    return StudySet(run.path / "studies")


def _features(run, role, split):
    from debuggable.features import FeatureStore

    s = FeatureStore(run.path / "features" / role).split(split)
    return np.asarray(s.to_numpy("features"), np.float64), np.asarray(s.labels)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _text_of(task):
    parts = [task.study]
    for b in task.blocks:
        parts += [b.title, b.text] + [im.caption for im in b.images] + [" ".join(r) for r in b.rows]
    for q in task.questions:
        parts += [q.prompt] + [o.label for o in q.options]
    return " ".join(parts)


def test_every_study_is_made_balanced_and_its_images_exist(run, studies):
    assert set(studies.studies) == {"simulation", "spurious", "misclassification", "description", "failure_review"}
    for name, study in studies.studies.items():
        counts = Counter(t.condition for t in study.main_tasks)
        assert len(counts) == 2 and len(set(counts.values())) == 1, (name, counts)
        assert len(study.checks) >= 4 and all(t.key for t in study.checks)
        for t in study.tasks:
            for src in t.images():
                assert studies.image_path(name, src) is not None
        # Each main task goes to 2 annotators, each annotator has 2 checks.
        copies = Counter(i for ids in studies.assignments[name].values() for i in ids)
        assert all(copies[t.id] == 2 for t in study.main_tasks)


def test_simulation_keys_are_the_models_highest_probability_and_hide_the_class(run, studies):
    study = studies.studies["simulation"]
    x, y = _features(run, "inspected", "val")
    sparse = SparseDecisionLayer.load(run.path / "layer")
    path = load_path(run)
    layers = {"sparse": (sparse.weight, sparse.bias), "dense": (path.coef[-1], path.intercept[-1])}
    names = [n for n in sparse.class_names if len(n) > 2]  # digits' names are '0'..'9': too short to search
    for t in study.main_tasks:
        w, b = layers[t.condition]
        rows = t.meta["rows"]
        p = _softmax(x[rows] @ w.T + b)[:, t.meta["target_class"]]
        np.testing.assert_allclose(p, t.meta["probabilities"], rtol=1e-6)
        assert t.key["pick"] == "ABC"[int(np.argmax(p))]
        assert min(p) >= 0.05 and np.sort(p)[-1] - np.sort(p)[-2] >= 0.05 - 1e-12
        # The features shown are among the class's top-k of that layer, with their standardised weights.
        std_w = (w * path.feature_std[None, :])[t.meta["target_class"]]
        top = np.argsort(-np.abs(std_w), kind="stable")[:10]
        assert set(t.meta["features"]) <= set(top[std_w[top] != 0].tolist())
        np.testing.assert_allclose(t.meta["weights"], std_w[t.meta["features"]], rtol=1e-6)
        assert all(n not in _text_of(t) for n in names)
        assert "class" not in " ".join(b.title for b in t.blocks).lower()


def test_spurious_tasks_show_each_class_top_activating_images_with_names(run, studies):
    study = studies.studies["spurious"]
    x, y = _features(run, "inspected", "test")
    for t in study.main_tasks:
        j = t.meta["feature"]
        for side, cls in zip("AB", t.meta["pair"]):
            rows = np.flatnonzero(y == cls)
            expected = rows[np.argsort(-x[rows, j], kind="stable")[:2]]
            assert t.meta["rows"][side] == expected.tolist()
        titles = [b.title for b in t.blocks]
        assert all(name in " ".join(titles) for name in t.meta["pair_names"])
        assert t.meta["class"] in t.meta["pair"] and t.meta["weight"] > 0


def test_misclassification_tasks_pair_the_true_classs_top_feature_with_the_error_fixing_one(run, studies):
    study = studies.studies["misclassification"]
    layer = SparseDecisionLayer.load(run.path / "layer")
    x, y = _features(run, "inspected", "test")
    z = (x - layer.mean) / np.where(layer.std > 0, layer.std, 1)
    w = layer.weight * layer.std  # standardised weights: logits = z @ w.T + b'
    for t in study.main_tasks:
        row = t.meta["row"]
        assert layer.predict(x[[row]])[0] == t.meta["predicted"] != t.meta["label"] == y[row]
        f = t.meta["problematic_feature"]
        zz = z[row].copy()
        zz[f] = 0.0
        logits = zz @ w.T + (layer.bias + (layer.mean / np.where(layer.std > 0, layer.std, 1)) @ w.T)
        assert np.argmax(logits) == y[row]  # removing it fixes the error
        roles = {o["role"]: o["feature"] for o in t.meta["options"].values()}
        assert roles["true"] == t.meta["top_feature_true"]
        if t.condition == "problematic":
            assert roles["predicted"] == f
        else:
            assert roles["random"] not in (f, t.meta["top_feature_true"])
            assert roles["random"] in np.flatnonzero(np.any(layer.weight != 0, axis=0))
        assert "present" in [q.key for q in t.questions] and "better" in [q.key for q in t.questions]


def test_barlow_studies_use_the_groups_top_mutual_information_features_and_their_trees(run, studies):
    trees = read_json(run.path / "failures" / "trees.json")["trees"]
    by_group = {(t["group"]["name"], t["depth"]): t for t in trees}
    for t in studies.studies["description"].main_tasks:
        tree = by_group[(t.meta["group"], 1)]
        assert t.meta["feature"] == tree["selected_features"][0]
        assert [b.data.get("section") for b in t.blocks[1:]] == ["A", "B", "C"]
    x, y = _features(run, "robust", "test")
    from debuggable.features import FeatureStore
    from debuggable.studies.generators.failure_review import nodes, route

    preds = np.asarray(FeatureStore(run.path / "features" / "inspected").split("test").read("preds"))
    for t in studies.studies["failure_review"].main_tasks:
        tree = by_group[(t.meta["group"], 2)]
        grouping, cls = t.meta["group"].split("=")[0], t.meta["class"]
        rows = np.flatnonzero((y if grouping == "label" else preds) == cls)
        members = route(tree["tree"], x, rows)
        for node, _ in nodes(tree["tree"]):  # routing reproduces the tree's own counts
            r = members[int(node["id"])]
            assert r.size == node["n"]
            assert int((y[r] != preds[r]).sum()) == node["failures"]
        table = next(b for b in t.blocks if b.kind == "table")
        assert len(table.rows) == len(nodes(tree["tree"]))
        assert {"describable", "necessary", "actions", "s1", "s6"} <= {q.key for q in t.questions}


def test_the_same_run_and_seed_make_the_same_studies(run, studies, tmp_path):
    from debuggable.studies.generators import GENERATORS
    from debuggable.studies.source import RunSource
    from debuggable.studies.create import study_seed

    cfg = run.config.studies
    source = RunSource(run)
    again = GENERATORS["simulation"](source, tmp_path / "simulation", cfg.simulation, name="simulation",
                                     seed=study_seed(run.config.seed, "simulation"), replication=cfg.replication,
                                     checks=4)
    original = studies.studies["simulation"]
    assert [t.model_dump(exclude={"meta"}) for t in again.tasks] == [t.model_dump(exclude={"meta"}) for t in original.tasks]
