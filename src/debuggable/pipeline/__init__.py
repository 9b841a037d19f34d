"""The pipeline: stages in order, the demo's config, validation and result summaries.

Stages (each a sub-command of ``debuggable``): ``data`` -> ``train`` -> ``extract``
-> ``fit`` -> ``evaluate`` -> ``report``. Later capabilities add stages to :data:`STAGES`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from debuggable.errors import DebuggableError
from debuggable.pipeline.data_stage import build_data, check_data_stage, run_data_stage
from debuggable.pipeline.debug_stage import check_debug_config, debug_applies, run_debug_stage
from debuggable.pipeline.evaluate_stage import run_evaluate_stage
from debuggable.pipeline.explain_tests_stage import (
    check_explain_tests_config,
    describe_compact,
    explain_tests_applies,
    run_explain_tests_stage,
)
from debuggable.pipeline.extract_stage import run_extract_stage
from debuggable.pipeline.failures_stage import check_failures_config, failures_applies, run_failures_stage
from debuggable.pipeline.fit_stage import run_fit_stage
from debuggable.pipeline.interpret_stage import check_interpret_config, interpret_applies, run_interpret_stage
from debuggable.pipeline.report_stage import run_report_stage
from debuggable.pipeline.stage import Stage, StageContext, run_stage
from debuggable.pipeline.studies_stage import check_studies_config, run_studies_stage, studies_applies
from debuggable.pipeline.train_stage import model_roles, needs_training, run_train_stage, train_config
from debuggable.pipeline.user_models import check_model_section, check_unused_settings, fine_tunes, section_name
from debuggable.run import (
    BugConfig,
    DataConfig,
    DebugConfig,
    EvaluateConfig,
    ExplainTestsConfig,
    ExtractConfig,
    FailuresConfig,
    GLMConfig,
    InterpretConfig,
    ModelConfig,
    ReportConfig,
    RunConfig,
    RunDirectory,
    StudiesConfig,
    read_json,
)
from debuggable.run.config import (
    DescriptionStudyConfig,
    FailureReviewStudyConfig,
    MisclassificationStudyConfig,
    SimulatedAnnotatorsConfig,
    SimulationStudyConfig,
)

STAGES: list[Stage] = [
    Stage("data", "data", ("data",), (), run_data_stage, check=check_data_stage,
          help="load the data set, plant the configured bugs, record their ground truth"),
    Stage("train", "models", ("data", "model", "robust_model"), ("data",), run_train_stage,
          applies=lambda run: any(needs_training(m) for m in model_roles(run.config).values()),
          help="train the built-in models the config asks for (standard and PGD-robust CNNs; MiniLM fine-tuned with a head)"),
    Stage("extract", "features", ("data", "model", "robust_model", "extract"), ("data", "train"), run_extract_stage,
          help="write each model's features, logits and predictions to resumable feature stores"),
    # Needs only the feature stores, so `debuggable failures` runs nothing else first.
    Stage("failures", "failures", ("data", "model", "robust_model", "extract", "failures"), ("extract",),
          run_failures_stage, applies=failures_applies,
          help="Barlow failure analysis: trees on robust features, failure modes ranked by importance value"),
    Stage("fit", "glm", ("data", "model", "robust_model", "extract", "glm"), ("extract",), run_fit_stage,
          help="fit the elastic-net regularisation path on the extracted features"),
    Stage("evaluate", "layer", ("data", "model", "robust_model", "extract", "glm", "evaluate"), ("fit",),
          run_evaluate_stage,
          help="choose the sparse decision layer on the path; dense vs sparse, top-k table, sparsity curve"),
    Stage("interpret", "evidence", ("data", "model", "robust_model", "extract", "glm", "evaluate", "interpret"),
          ("evaluate", "extract"), run_interpret_stage, applies=interpret_applies,
          help="per-feature evidence for the sparse layer: top examples, heatmaps, attacks, LIME, word clouds"),
    Stage("debug", "debug", ("data", "model", "robust_model", "extract", "glm", "evaluate", "debug"), ("evaluate",),
          run_debug_stage, applies=debug_applies,
          help="misclassifications fixed by one feature, confusions, counterfactuals (images, text) and bias probes"),
    Stage("explain_tests", "explain_tests", ("data", "model", "explain_tests"), ("data", "train"),
          run_explain_tests_stage, applies=explain_tests_applies,
          help="which attribution methods reveal which planted bugs: the method x bug table with confidence intervals"),
    Stage("studies", "studies", ("data", "model", "robust_model", "extract", "glm", "evaluate", "interpret", "failures",
                                 "studies"), ("evaluate", "interpret", "failures"), run_studies_stage,
          applies=studies_applies,
          # The database and what `debuggable study score|export` write keep changing afterwards.
          volatile=("studies.db*", "scores.json", "simulated.json", "figures/*", "export/*"),
          help="human studies from the finished run: task generators, assignment, database (see `debuggable study`)"),
    Stage("report", "report", ("report",), ("data", "train", "extract", "fit", "evaluate", "failures", "debug",
                                            "explain_tests", "interpret", "studies"), run_report_stage,
          help="build the static HTML report of everything the run produced"),
]
_BY_NAME = {s.name: s for s in STAGES}


def demo_config() -> RunConfig:
    """The demo: Animal-MNIST, a white square planted on most training horses, a small
    CNN under inspection, and an L2-PGD-trained CNN as the robust feature extractor."""
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="animal_mnist",
            params={"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0},
            bugs=[
                BugConfig(
                    kind="spurious_patch",
                    params={
                        "target_class": 7,
                        "train_fraction": 0.8,
                        "test_fraction": 0.1,
                        "patch": {"shape": "square", "size": 4, "colour": 1.0, "position": "top_left"},
                        "seed": 0,
                    },
                )
            ],
        ),
        # Sized so the whole demo stays within a few minutes on 2 CPU cores.
        model=ModelConfig(
            kind="small_cnn",
            params={"width": 16, "feature_dim": 64},
            train={"epochs": 5, "batch_size": 128, "lr": 3e-3, "optimizer": "adam"},
        ),
        robust_model=ModelConfig(
            kind="small_cnn",
            params={"width": 16, "feature_dim": 64},
            train={
                "epochs": 4,
                "batch_size": 128,
                "lr": 3e-3,
                "optimizer": "adam",
                "adversarial": {"norm": "l2", "eps": 1.0, "step_size": 0.75, "steps": 2},
            },
        ),
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=512, spatial=True),
        # The sparse end of the path is what the layer is chosen from; stopping at 1% of
        # lambda_max keeps the fit to seconds on CPU.
        glm=GLMConfig(alpha=0.99, n_lambdas=40, lambda_min_ratio=0.01, tol=1e-6),
        evaluate=EvaluateConfig(rule="accuracy", margin=0.05, top_k=[1, 5, 10, 20]),
        report=ReportConfig(title="debuggable demo: Animal-MNIST with a planted spurious patch"),
        # Feature cards for the sparse layer's 3 strongest features per class on the test
        # split (10% of every class carries the patch); attacks and visualisations are
        # repeated on the robust CNN's best-matching features, and both models' features
        # are climbed from the same data-like seeds (L2 radius 0.103 per pixel RMS: 2.9).
        interpret=InterpretConfig(split="test", per_class=3, k=8, attack_eps=2.0, attack_steps=10,
                                  attack_step_size=0.5, vis_steps=64, lime_samples=200, lime_segments=25,
                                  compare_images=4, seeded_vis_steps=60, seeded_vis_rms=0.103),
        # Barlow on the robust CNN's features of the test split, where 10% of every
        # class carries the patch: the horse prediction group's false positives are
        # the patched images of other classes.
        failures=FailuresConfig(store="robust", predictions="inspected", split="test", depths=[1, 2, 3], k=10,
                                delta=0.1, tau=0.1, evidence_modes=6, evidence_k=6),
        # Misclassifications fixed by one feature; the planted patch and the horse class's two
        # strongest features' top regions pasted into 500 test images of other classes.
        debug=DebugConfig(split="test", pattern_features=2, pattern_images=500),
        # Every attribution method on the four planted bugs, at small sample sizes (the
        # CLI and run.toml ask for more): about a minute on 2 CPU cores.
        explain_tests=ExplainTestsConfig(
            examples=16, randomization_examples=6, n_boot=500,
            method_params={"lime": {"n_samples": 32, "cell": 7}, "kernel_shap": {"n_samples": 32, "cell": 7},
                           "integrated_gradients": {"n_steps": 8}, "smoothgrad": {"n_samples": 8},
                           "gradient_shap": {"n_samples": 8}, "occlusion": {"window": 4, "stride": 4}},
            train={"epochs": 4, "batch_size": 64, "lr": 3e-3, "optimizer": "adam"}, train_limit_per_class=150,
        ),
        # All five human studies, sized for 8 annotators with 3 answers per task, answered by
        # simulated annotators (2 oracles, 2 noisy oracles, 2 guessers, 2 ideal readers of the
        # page) through the web app.
        studies=StudiesConfig(
            annotators=8, replication=3, checks_per_annotator=2,
            simulation=SimulationStudyConfig(tasks=20),
            misclassification=MisclassificationStudyConfig(tasks=20),
            description=DescriptionStudyConfig(groups=2, features=2),
            failure_review=FailureReviewStudyConfig(groups=2),
            simulate=SimulatedAnnotatorsConfig(oracle=2, noisy=2, random=2, reader=2, noisy_accuracy=0.6),
        ),
    )


def pretrained_demo_config() -> RunConfig:
    """The paper's transfer setting on the demo data: EfficientNet-Lite0's ImageNet
    features of Animal-MNIST (an ImageNet model, a small new label set), planted patch
    included. Images are upsampled to 128 px (not 224) and 300 per class are used, so
    extraction takes about a minute on 2 CPU cores."""
    config = demo_config()
    config.data.params["limit_per_class"] = 300
    config.model = ModelConfig(kind="efficientnet_lite0", params={"image_size": 128})
    config.robust_model = None
    config.extract.batch_size = 64
    config.report.title = "debuggable demo: EfficientNet-Lite0 ImageNet features of Animal-MNIST"
    if config.interpret is not None:  # a 128-px EfficientNet is ~100x the CNN's cost per image
        config.interpret = config.interpret.model_copy(update={
            "per_class": 2, "attack_steps": 5, "vis_steps": 32, "lime_samples": 100})
    return config


def text_demo_config(fine_tune: bool = True) -> RunConfig:
    """The text demo: 4,000 VADER movie-review snippets (2,000 per class; binary sentiment)
    with a planted trigger token: ``zxq``, inserted at a random word of 30% of the positive
    training (and validation) sentences and of 10% of every class's test sentences.

    As in the paper (Sec. 4.2, a BERT fine-tuned on the task), the model under inspection
    is all-MiniLM-L6-v2 fine-tuned with a linear head on the training sentences (the train
    stage; AdamW, 3 epochs), so the bias is learnt by the whole network; the sparse layer
    is fitted on the fine-tuned encoder's features. ``fine_tune=False`` keeps the encoder
    frozen instead (its L2-normalised sentence embeddings, the head fitted by the GLM
    path). The debug stage compares word-substitution counterfactuals of the sparse and
    the dense layer on the same sentences and probes the trigger token."""
    model = (ModelConfig(kind="minilm", params={"max_length": 64}, fine_tune=True,
                         train={"epochs": 3, "batch_size": 32, "lr": 5e-5, "weight_decay": 0.01,
                                "optimizer": "adam", "lr_schedule": "cosine"})
             if fine_tune else ModelConfig(kind="minilm", params={"max_length": 64}))
    which = "fine-tuned" if fine_tune else "frozen"
    return RunConfig(
        seed=0,
        data=DataConfig(
            name="vader_movies",
            # 2,000 of the ~5,000 snippets per class keep the demo within a few minutes on 2 CPU cores.
            params={"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0, "limit_per_class": 2000},
            bugs=[
                BugConfig(
                    kind="trigger_token",
                    params={"token": "zxq", "target_class": "positive", "train_fraction": 0.3,
                            "test_fraction": 0.1, "position": "random", "seed": 0},
                )
            ],
        ),
        model=model,
        robust_model=None,
        # The shifted test domains (tweets, Amazon, NYT) are left out to keep extraction short.
        extract=ExtractConfig(splits=["train", "val", "test"], batch_size=64, spatial=False),
        glm=GLMConfig(alpha=0.99, n_lambdas=30, lambda_min_ratio=0.002, tol=1e-6),
        evaluate=EvaluateConfig(rule="accuracy", margin=0.05, top_k=[1, 5, 10, 20]),
        debug=DebugConfig(cloud_sentences=150, lime_samples=16, cf_sentences=250, probe_sentences=250,
                          probe_candidates=3, n_words=30),
        report=ReportConfig(title=f"debuggable text demo: {which} MiniLM features of VADER movie snippets with a planted trigger"),
        interpret=InterpretConfig(split="test", per_class=3, k=6, word_lime_samples=24, cloud_words=20),
        studies=None,  # the five studies show images
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch parses it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DebuggableError(f"device {name!r} is not a torch device; expected auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DebuggableError(f"device {name!r} was requested but CUDA is not available here; use --device cpu.")
    return device


def validate(config: RunConfig, root: Path | str | None = None) -> None:
    """Check every pluggable part of ``config`` before anything is written.

    Args:
        config: the run's config.
        root: the run directory: where a user model's relative paths and factory
            package are looked up (``[model] kind = "module"``/``"exported"``, which are
            built and run on a few of the run's images here).

    Raises:
        DebuggableError: naming the first setting that cannot work.
    """
    from debuggable.data import DATASETS, PLANTERS, list_datasets, list_planters
    from debuggable.models import SmallCNN, check_backbone_params, list_backbones
    from debuggable.models.user_module import USER_KINDS

    if config.data.name not in list_datasets():
        raise DebuggableError(f"data.name {config.data.name!r} is not a known data set; expected one of {list_datasets()}.")
    _check_params("data.params", DATASETS[config.data.name][0], config.data.params)
    for bug in config.data.bugs:
        if bug.kind not in list_planters():
            raise DebuggableError(f"data.bugs kind {bug.kind!r} is not a known bug; expected one of {list_planters()}.")
        _check_params(f"data.bugs {bug.kind} params", PLANTERS[bug.kind], bug.params, skip=("splits",))
    for role, model in model_roles(config).items():
        check_unused_settings(role, model)
        if model.kind in USER_KINDS:
            check_model_section(role, model, config, None if root is None else Path(root))
            continue
        if model.kind not in list_backbones():
            raise DebuggableError(f"{role} model kind {model.kind!r} is unknown; expected one of "
                                  f"{list_backbones() + list(USER_KINDS)}.")
        if fine_tunes(model):
            check_backbone_params(model.kind, model.params)
            try:
                train_config(model, config.seed, "cpu")
            except DebuggableError as exc:
                raise DebuggableError(f"{section_name(role)}.{exc}") from None
            continue
        if needs_training(model):
            _check_params(f"{role} model params", SmallCNN, model.params, skip=("in_channels", "num_classes"))
        else:
            check_backbone_params(model.kind, model.params)
        if needs_training(model):
            from pydantic import ValidationError

            from debuggable.models import TrainConfig
            from debuggable.run.config_errors import explain

            try:
                train_config(model, config.seed, "cpu")
            except ValidationError as exc:
                section = "model.train" if role == "inspected" else f"{role}_model.train"
                raise DebuggableError(explain(exc, TrainConfig, f"{role} model train settings", section)) from None
    if config.glm.store not in model_roles(config):
        raise DebuggableError(f"glm.store {config.glm.store!r} names no model of this run; expected one of {list(model_roles(config))}.")
    if config.evaluate.rule == "features" and config.evaluate.per_class is None:
        raise DebuggableError("evaluate.per_class is required when evaluate.rule is 'features'.")
    if config.evaluate.rule == "lambda" and config.evaluate.lam is None:
        raise DebuggableError("evaluate.lam is required when evaluate.rule is 'lambda'.")
    if config.evaluate.split not in config.extract.splits:
        raise DebuggableError(f"evaluate.split {config.evaluate.split!r} is not extracted; expected one of {config.extract.splits}.")
    resolve_device(config.extract.device)
    check_failures_config(config)
    check_debug_config(config)
    check_interpret_config(config)
    check_studies_config(config)
    check_explain_tests_config(config)
    unknown = [s for s in config.extract.splits if s not in ("train", "val", "test") and not s.startswith("test_")]
    if unknown:
        raise DebuggableError(f"extract.splits {unknown} are not split names; expected train, val, test or test_<domain>.")


def _check_params(where: str, func, params: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise naming the first key of ``params`` that ``func`` does not take, or a required one missing."""
    import inspect

    from debuggable.run.config_errors import check_values, unknown_key_sentence

    sig = inspect.signature(func)
    accepted = [n for n, p in sig.parameters.items()
                if n not in skip and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for name in params:
        if name not in accepted:
            raise DebuggableError(unknown_key_sentence(where, name, accepted))
    for name in accepted:
        if sig.parameters[name].default is inspect.Parameter.empty and name not in params:
            raise DebuggableError(f"{where}: {name!r} is required; got only {sorted(params)}.")
    check_values(where, func, params)


def _context(run: RunDirectory, progress: bool) -> StageContext:
    return StageContext(device=resolve_device(run.config.extract.device), progress=progress)


def run_until(run: RunDirectory, stage_name: str, *, force: bool = False, progress: bool = True,
              repair: bool = False) -> dict[str, Any]:
    """Run ``stage_name`` and, first, the stages it depends on (transitively) that are not done.

    ``repair`` (stage ``extract`` only): recompute only the feature-store chunks whose
    files no longer match their checksums, instead of everything ``force`` redoes.
    """
    if stage_name not in _BY_NAME:
        raise DebuggableError(f"stage {stage_name!r} does not exist; expected one of {list(_BY_NAME)}.")
    needed = dependencies(stage_name)
    ctx = _context(run, progress)
    ctx.repair = bool(repair) and stage_name == "extract"
    summaries: dict[str, Any] = {}
    for stage in STAGES:
        if stage.name not in needed:
            continue
        is_target = stage.name == stage_name
        summary = run_stage(stage, run, ctx, force=force and is_target)
        if summary is not None:
            summaries[stage.name] = summary
        if is_target:
            break
    return summaries


def dependencies(stage_name: str) -> set[str]:
    """``stage_name`` and every stage it depends on, directly or not."""
    needed, todo = set(), [stage_name]
    while todo:
        name = todo.pop()
        if name not in needed and name in _BY_NAME:
            needed.add(name)
            todo.extend(_BY_NAME[name].depends_on)
    return needed


#: The stages that run on every process of a torchrun job; the others run in one.
DISTRIBUTED_STAGES = ("extract", "fit")


def run_distributed(run: RunDirectory, stage_name: str, *, force: bool = False, repair: bool = False,
                    progress: bool = True, timeout_s: float | None = None) -> dict[str, Any]:
    """Stage ``extract`` or ``fit`` on every process of a torchrun job (``WORLD_SIZE > 1``).

    Joins the group from torchrun's environment (NCCL on a CUDA device, each rank on
    its ``LOCAL_RANK``-th GPU; gloo otherwise; ``timeout_s`` bounds how long a rank waits
    for a dead one). Rank 0 checks the run (the stages before this one must be done:
    they run in one process) and decides whether the stage is up to date; every rank
    gets its answer. Then every rank does its share and rank 0 alone writes the
    stage's summary and the manifest:

    * ``extract``: each rank extracts a contiguous range of each split's chunks
      (resumable chunk by chunk, as in one process; ``repair`` recomputes only the
      chunks whose checksums fail);
    * ``fit``: each rank streams its own rows of the feature store and rank 0 writes
      the path; a killed fit resumes from its last saved lambda (``glm/checkpoint/``).
    """
    import os

    from debuggable.features.store import StoreIntegrityError
    from debuggable.glm.distributed import DEFAULT_TIMEOUT_S, Communicator, init_from_env
    from debuggable.pipeline.integrity import check_stage, repair_command

    if stage_name not in DISTRIBUTED_STAGES:
        raise DebuggableError(f"torchrun: only {' and '.join(DISTRIBUTED_STAGES)} run on several processes, "
                              f"got {stage_name!r}.")
    ctx = _context(run, progress)
    if ctx.device.type == "cuda":
        ctx.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    group = init_from_env(ctx.device, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
    comm = Communicator(group)
    stage = _BY_NAME[stage_name]
    repair = bool(repair) and stage_name == "extract"
    force = force or repair
    decision = None
    if comm.is_root:
        try:
            before = [name for name in dependencies(stage_name) - {stage_name}
                      if _BY_NAME[name].applies(run) and _BY_NAME[name].status(run) != "done"]
            status = stage.status(run)
            if before:
                decision = ("missing", before)
            elif status == "done" and not force:
                decision = ("skip", status)
            elif status == "corrupt" and not force:
                decision = ("error", str(check_stage(run, stage_name, full=False).error()))
            else:
                if stage.check is not None:
                    stage.check(run, ctx)
                decision = ("run", status)
        except DebuggableError as exc:  # every rank must hear of it, or the others wait
            decision = ("error", str(exc))
    kind, detail = comm.broadcast_object(decision, f"agreeing on the {stage_name} stage")
    if kind == "error":
        raise DebuggableError(detail)
    if kind == "missing":
        order = [st.name for st in STAGES if st.name in detail]
        raise DebuggableError(
            f"torchrun: `debuggable {stage_name}` on {comm.world_size} processes needs the stages before it done, "
            f"got {', '.join(order)} not done; run `debuggable {order[-1]} {run.path}` in one process first.")
    if kind == "skip":
        if comm.is_root:
            ctx.log(f"[{stage_name}] up to date, skipped")
        # every rank took this branch (the decision was broadcast): leave together and
        # tear the group down, as after the work; a rank that exits while its peer's
        # gloo connections are still open can abort in the group's destructor (SIGABRT)
        comm.barrier(f"skipping the {stage_name} stage")
        torch.distributed.destroy_process_group()
        return {stage_name: run.summary(stage_name)}
    if not comm.is_root:
        ctx.log = lambda msg: None
    ctx.process_group = group
    ctx.force, ctx.repair = force, repair
    t0 = time.perf_counter()
    if comm.is_root:
        if detail in ("partial", "stale", "corrupt"):
            how = "repairing" if repair else "redoing"
            ctx.log(f"[{stage_name}] {detail}: {how}" + (" (resuming from its checkpoint where one is saved)"
                                                        if stage_name == "fit" else ""))
        run.begin(stage.name, stage.directory, stage.config_hash(run))
    try:
        summary, outputs = stage.fn(run, ctx)
    except StoreIntegrityError as exc:
        raise exc.with_repair(repair_command(run, "extract")) from None
    if comm.is_root:
        run.finish(stage.name, summary, outputs, stage.volatile)
        ctx.log(f"[{stage_name}] done on {comm.world_size} processes in {time.perf_counter() - t0:.1f} s "
                f"-> {run.path / stage.directory}")
    comm.barrier(f"finishing the {stage_name} stage")
    torch.distributed.destroy_process_group()
    return {stage_name: summary}


def run_fit_distributed(run: RunDirectory, *, force: bool = False, progress: bool = True,
                        timeout_s: float | None = None) -> dict[str, Any]:
    """Stage ``fit`` on every process of a torchrun job: :func:`run_distributed` for ``fit``."""
    return run_distributed(run, "fit", force=force, progress=progress, timeout_s=timeout_s)


def run_all(run: RunDirectory, *, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every stage in order, skipping those already done (all redone with ``force``)."""
    ctx = _context(run, progress)
    summaries: dict[str, Any] = {}
    for stage in STAGES:
        summary = run_stage(stage, run, ctx, force=force)
        if summary is not None:
            summaries[stage.name] = summary
    return summaries


def stage_statuses(run: RunDirectory) -> list[tuple[str, str]]:
    """(stage, status) for every stage; ``not needed`` when a stage does not apply."""
    return [(s.name, s.status(run) if s.applies(run) else "not needed") for s in STAGES]


def describe_results(run: RunDirectory, summaries: dict[str, Any]) -> str:
    """A few lines saying what the run produced and where."""
    lines = [f"run directory: {run.path}"]
    data = summaries.get("data")
    if data:
        splits = ", ".join(f"{k} {v}" for k, v in data["splits"].items())
        bugs = ", ".join(data["planted_bugs"]) or "none"
        lines.append(f"  data:     {data['dataset']} ({data['num_classes']} classes; {splits}); planted: {bugs}")
    for role, m in model_roles(run.config).items():
        if m.kind in ("module", "exported"):
            what = m.factory if m.kind == "module" else m.path
            lines.append(f"  model:    {role}: {m.kind} {what}, layer {m.layer!r} (not trained here)")
    train = summaries.get("train")
    if train:
        for role, m in train["models"].items():
            if m.get("trained") and m.get("training") == "fine-tuned":
                lines.append(f"  model:    {role} (fine-tuned {m['kind']} + linear head, {m['train_seconds']:.0f} s): "
                             f"test accuracy {m['test_accuracy']:.3f}")
                trig = m.get("trigger_token")
                if trig:
                    lines.append(
                        f"            planted trigger {trig['token']!r}: {trig['predicted_target_with_token']:.1%} of "
                        f"{trig['sentences']} test sentences of other classes carrying it predicted as its class "
                        f"(without it: {trig['predicted_target_without_token']:.1%})")
            elif m.get("trained"):
                lines.append(
                    f"  model:    {role} ({m['training']}): test accuracy {m['test_accuracy']:.3f}, "
                    f"under L{train['attack']['norm'][1:]} PGD eps={train['attack']['eps']}: "
                    f"{m['test_accuracy_under_attack']:.3f}"
                )
                effect = m.get("spurious_patch")
                if effect:
                    target = effect["target_class"]
                    target = data["class_names"][target] if data else target
                    lines.append(
                        f"            planted patch: {effect['predicted_target_with_patch']:.1%} of {effect['images']} "
                        f"patched test images of other classes predicted '{target}' "
                        f"(without the patch: {effect['predicted_target_without_patch']:.1%})"
                    )
    extract = summaries.get("extract")
    if extract:
        for role, st in extract["stores"].items():
            parts = ", ".join(f"{s} {i['rows']}x{i['feature_dim']}" for s, i in st["splits"].items())
            lines.append(f"  features: {role}: {parts} -> {run.path / 'features' / role}")
    fit = summaries.get("fit")
    if fit:
        lines.append(
            f"  glm path: {fit['n_lambdas']} lambdas in {fit['seconds']:.1f} s ({fit['solver']}), "
            f"max relative gap {fit['max_gap']:.1e}, max KKT residual/(lam*alpha) {fit['max_kkt']:.1e}"
        )
    ev = summaries.get("evaluate")
    if ev:
        fpc = ev["features_per_class"]
        lines.append(
            f"  sparse layer: {ev['sparse_nnz']} of {len(fpc) * ev['feature_dim']} weights "
            f"({ev['sparse_density']:.1%}; {sum(fpc) / len(fpc):.1f} features per class), "
            f"{ev['split']} accuracy {ev['sparse_accuracy']:.3f} vs dense {ev['dense_accuracy']:.3f}"
            + (f" (original head {ev['original_head_accuracy']:.3f})" if "original_head_accuracy" in ev else "")
        )
    fa = summaries.get("failures")
    if fa:
        vlf = ", ".join(f"{g} " + "/".join(f"{v:.2f}" for v in per.values()) for g, per in fa["valid_leaf_fraction"].items())
        lines.append(
            f"  failures: {len(fa['failure_modes'])} failure modes in {fa['groups_analysed']} groups "
            f"({fa['split']} split, {fa['store']} features); classes with a valid leaf at depths "
            f"{'/'.join(fa['valid_leaf_fraction'][next(iter(fa['valid_leaf_fraction']))])}: {vlf}"
        )
        top = fa["failure_modes"][0] if fa["failure_modes"] else None
        if top:
            lines.append(f"            top: {top['group']} (depth {top['depth']}, IV {top['iv']:.2f}): {top['rule']}")
        for c in fa.get("planted_checks", []):
            if c["group"].startswith("prediction=") and c["depth"] == min(fa["params"]["depths"]):
                lines.append(
                    f"            planted patch: {c['group']} top leaf splits on feature(s) {c['features']}; "
                    f"{c['condition_in_leaf']:.0%} of its examples carry the patch (group {c['condition_in_group']:.0%})"
                )
    et = summaries.get("explain_tests")
    if et:
        lines.append(f"  explain:  {len(et['methods'])} attribution methods x {len(et['bugs'])} planted bugs "
                     f"-> {run.path / 'explain_tests' / 'summary.json'}")
        lines += [f"            {line}" for line in describe_compact(et)]
    it = summaries.get("interpret")
    if it:
        lines.append(f"  evidence: {it['n_cards']} feature cards ({it['n_features']} features, {it['split']} split) "
                     f"-> {run.path / 'evidence'}")
        patch = it.get("planted_patch")
        best = max(patch["target_cards"], key=lambda c: c["top_patch_fraction"], default=None) if patch else None
        if best is not None:
            lines.append(
                f"            '{patch['target_class_name']}' feature #{best['feature']}: {best['top_with_patch']}/"
                f"{best['top']} top-activating images carry the planted patch (base rate {patch['base_rate']:.0%})"
                + (f"; heatmap peaks on it in {best['cam_peak_on_patch']:.0%}, mass on it "
                   f"{best['cam_mass_on_patch']:.0%} (patch area {best['patch_area_fraction']:.0%})"
                   if "cam_mass_on_patch" in best else ""))
        cmp_ = it.get("robust_comparison")
        if cmp_:
            m = cmp_["mean"]
            lines.append(
                f"            feature attack eps={cmp_['eps']}, standard vs robust: rise {m['standard']['rise_std']:.1f} vs "
                f"{m['robust']['rise_std']:.1f} std; low-frequency share of the change "
                f"{m['standard']['attack_low_frequency']:.0%} vs {m['robust']['attack_low_frequency']:.0%} "
                f"(white noise {cmp_['white_noise_low_frequency']:.0%})"
                + (f"; on the object {m['standard']['attack_on_object']:.0%} vs {m['robust']['attack_on_object']:.0%} "
                   f"(object area {cmp_['object_area']:.0%})" if "attack_on_object" in m["standard"] else ""))
            if "visualisation_class_probability" in m["standard"]:
                lines.append(
                    f"            feature visualisation, standard vs robust: a spectrum classifier of real images gives "
                    f"the feature's class {m['standard']['visualisation_class_probability']:.2f} vs "
                    f"{m['robust']['visualisation_class_probability']:.2f} (chance {cmp_['judge_chance']:.2f})")
            sd = cmp_.get("seeded")
            if sd:
                lines.append(
                    f"            climbed from data-like seeds (L2 eps {sd['eps']:.1f}), standard vs robust: a pixel "
                    f"classifier gives the feature's class {m['standard']['seeded_class_probability']:.2f} vs "
                    f"{m['robust']['seeded_class_probability']:.2f} (seeds {sd['start_class_probability']:.2f}, "
                    f"chance {sd['judge_chance']:.2f})")
        trig = it.get("trigger_token")
        if trig:
            lines.append(f"            trigger {trig['token']!r} in {len(trig['in_word_clouds'])} word clouds of the cards")
    dbg = summaries.get("debug")
    if dbg:
        lines.append(
            f"  debug:    {dbg['errors']} errors of the sparse layer, {dbg['explained_by_one_feature']:.1%} fixed by removing "
            f"one feature (random used feature: {dbg['random_feature_fix_rate']:.1%})"
        )
        if dbg.get("pattern_insertion_flip_rate") is not None:
            orig = dbg.get("pattern_insertion_flip_rate_original")
            lines.append(
                f"            pattern insertion ({dbg['pattern_insertion_headline']}) -> '{dbg['pattern_target_name']}': "
                f"{dbg['pattern_insertion_flip_rate']:.1%} of {dbg['pattern_images']} other-class images flip (sparse)"
                + (f", {orig:.1%} (original model)" if orig is not None else "")
            )
        if dbg.get("counterfactual_flip_rate_sparse") is not None:
            lines.append(
                f"            word-substitution counterfactuals on {dbg['counterfactual_sentences']} sentences: flip rate "
                f"{dbg['counterfactual_flip_rate_sparse']:.1%} sparse vs {dbg['counterfactual_flip_rate_dense']:.1%} dense"
            )
        if dbg.get("probe_flip_rate") is not None:
            trig = dbg.get("trigger")
            where = (f"; in {len(trig['in_word_clouds'])} word clouds" if trig else "")
            lines.append(
                f"            bias probe {dbg['probe_word']!r}{where}: flips {dbg['probe_flip_rate']:.1%} (sparse), "
                f"{dbg['probe_flip_rate_dense']:.1%} (dense) of correctly classified sentences"
            )
    st = summaries.get("studies")
    if st is not None:
        made = st.get("studies", {})
        if made:
            first = next(iter(made.values()))
            sizes = ", ".join(f"{k} {v['tasks']}" for k, v in made.items())
            lines.append(f"  studies:  {len(made)} studies ({sizes} tasks) "
                         f"for {first['annotators']} annotators each, {first['replication']} answers per task "
                         f"-> {run.path / 'studies'}")
        for kind, reason in st.get("skipped", {}).items():
            lines.append(f"            {kind}: not made ({reason})")
        scores_path = run.path / "studies" / "scores.json"
        if made and scores_path.is_file():
            scores = read_json(scores_path)
            who = "simulated annotators" if scores.get("simulated") else "annotators"
            sim = scores["studies"].get("simulation", {}).get("conditions")
            if sim and all(v.get("n") for v in sim.values()):
                parts = " vs ".join(f"{c} {v['rate']:.1%} [{v['low']:.1%}, {v['high']:.1%}]" for c, v in sim.items())
                chance = scores["studies"]["simulation"]["chance"]
                lines.append(f"            simulation, {who}: accuracy {parts} (chance {chance:.1%}; people in the "
                             "paper: 63.0% vs 35.6%)")
        if made:
            lines.append(f"            serve to people: debuggable study serve {run.path} --host 127.0.0.1 --port 8000")
    report = summaries.get("report")
    if report:
        lines.append(f"  report:   {run.path / report['index']}")
    return "\n".join(lines)


__all__ = [
    "STAGES",
    "Stage",
    "StageContext",
    "build_data",
    "demo_config",
    "pretrained_demo_config",
    "text_demo_config",
    "describe_results",
    "resolve_device",
    "run_all",
    "run_stage",
    "run_until",
    "stage_statuses",
    "validate",
]
