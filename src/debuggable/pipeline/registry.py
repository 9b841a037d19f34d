"""The stage table: every stage in order, what makes it stale, when it applies.

Reading it imports neither torch nor the methods: each stage's work (and its check) is
a :class:`~debuggable.pipeline.stage.Deferred` function, imported when the stage runs,
and the ``applies`` predicates below only read the config. ``debuggable status`` and
``debuggable --help`` need nothing more.
"""

from __future__ import annotations

from debuggable.pipeline.explain_tests_cli import TESTABLE_KINDS
from debuggable.pipeline.roles import model_roles, needs_training
from debuggable.pipeline.stage import Deferred, Stage
from debuggable.run import RunDirectory


def _work(module: str, name: str) -> Deferred:
    return Deferred(f"debuggable.pipeline.{module}:{name}")


def train_applies(run: RunDirectory) -> bool:
    """Some model of the run is a built-in one to train or a text encoder to fine-tune."""
    return any(needs_training(m) for m in model_roles(run.config).values())


def failures_applies(run: RunDirectory) -> bool:
    """The stage runs when it is enabled and its feature store names a model of the run."""
    cfg = run.config.failures
    return cfg is not None and cfg.enabled and cfg.store in model_roles(run.config)


def interpret_applies(run: RunDirectory) -> bool:
    cfg = run.config.interpret
    return cfg is not None and cfg.enabled


def debug_applies(run: RunDirectory) -> bool:
    cfg = run.config.debug
    return cfg is not None and cfg.enabled


def explain_tests_applies(run: RunDirectory) -> bool:
    """The stage runs when enabled and the inspected model is the small CNN or a user's image model."""
    cfg = run.config.explain_tests
    return cfg is not None and cfg.enabled and run.config.model.kind in TESTABLE_KINDS


def studies_applies(run: RunDirectory) -> bool:
    cfg = run.config.studies
    return cfg is not None and cfg.enabled


STAGES: list[Stage] = [
    Stage("data", "data", ("data",), (), _work("data_stage", "run_data_stage"),
          check=_work("data_stage", "check_data_stage"),
          help="load the data set, plant the configured bugs, record their ground truth"),
    Stage("train", "models", ("data", "model", "robust_model"), ("data",), _work("train_stage", "run_train_stage"),
          applies=train_applies,
          help="train the built-in models the config asks for (standard and PGD-robust CNNs; MiniLM fine-tuned with a head)"),
    Stage("extract", "features", ("data", "model", "robust_model", "extract"), ("data", "train"),
          _work("extract_stage", "run_extract_stage"),
          help="write each model's features, logits and predictions to resumable feature stores"),
    # Needs only the feature stores, so `debuggable failures` runs nothing else first.
    Stage("failures", "failures", ("data", "model", "robust_model", "extract", "failures"), ("extract",),
          _work("failures_stage", "run_failures_stage"), applies=failures_applies,
          help="Barlow failure analysis: trees on robust features, failure modes ranked by importance value"),
    Stage("fit", "glm", ("data", "model", "robust_model", "extract", "glm"), ("extract",),
          _work("fit_stage", "run_fit_stage"),
          help="fit the elastic-net regularisation path on the extracted features"),
    Stage("evaluate", "layer", ("data", "model", "robust_model", "extract", "glm", "evaluate"), ("fit",),
          _work("evaluate_stage", "run_evaluate_stage"),
          help="choose the sparse decision layer on the path; dense vs sparse, top-k table, sparsity curve"),
    Stage("interpret", "evidence", ("data", "model", "robust_model", "extract", "glm", "evaluate", "interpret"),
          ("evaluate", "extract"), _work("interpret_stage", "run_interpret_stage"), applies=interpret_applies,
          help="per-feature evidence for the sparse layer: top examples, heatmaps, attacks, LIME, word clouds"),
    Stage("debug", "debug", ("data", "model", "robust_model", "extract", "glm", "evaluate", "debug"), ("evaluate",),
          _work("debug_stage", "run_debug_stage"), applies=debug_applies,
          help="misclassifications fixed by one feature, confusions, counterfactuals (images, text) and bias probes"),
    Stage("explain_tests", "explain_tests", ("data", "model", "explain_tests"), ("data", "train"),
          _work("explain_tests_stage", "run_explain_tests_stage"), applies=explain_tests_applies,
          help="which attribution methods reveal which planted bugs: the method x bug table with confidence intervals"),
    Stage("studies", "studies", ("data", "model", "robust_model", "extract", "glm", "evaluate", "interpret", "failures",
                                 "studies"), ("evaluate", "interpret", "failures"),
          _work("studies_stage", "run_studies_stage"), applies=studies_applies,
          # The database and what `debuggable study score|export` write keep changing afterwards.
          volatile=("studies.db*", "scores.json", "simulated.json", "figures/*", "export/*"),
          help="human studies from the finished run: task generators, assignment, database (see `debuggable study`)"),
    Stage("report", "report", ("report",), ("data", "train", "extract", "fit", "evaluate", "failures", "debug",
                                            "explain_tests", "interpret", "studies"), _work("report_stage", "run_report_stage"),
          help="build the static HTML report of everything the run produced"),
]
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def dependencies(stage_name: str) -> set[str]:
    """``stage_name`` and every stage it depends on, directly or not."""
    needed, todo = set(), [stage_name]
    while todo:
        name = todo.pop()
        if name not in needed and name in BY_NAME:
            needed.add(name)
            todo.extend(BY_NAME[name].depends_on)
    return needed


def stage_statuses(run: RunDirectory) -> list[tuple[str, str]]:
    """(stage, status) for every stage; ``not needed`` when a stage does not apply."""
    return [(s.name, s.status(run) if s.applies(run) else "not needed") for s in STAGES]
