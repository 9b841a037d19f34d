"""The pipeline: stages in order, the demo's config, validation and result summaries.

Stages (each a sub-command of ``debuggable``): ``data`` -> ``train`` -> ``extract``
-> ``fit`` -> ``evaluate`` -> ``report``. Later capabilities add stages to :data:`STAGES`.
"""

from __future__ import annotations

from typing import Any

import torch

from debuggable.errors import DebuggableError
from debuggable.pipeline.data_stage import build_data, run_data_stage
from debuggable.pipeline.evaluate_stage import run_evaluate_stage
from debuggable.pipeline.extract_stage import run_extract_stage
from debuggable.pipeline.fit_stage import run_fit_stage
from debuggable.pipeline.report_stage import run_report_stage
from debuggable.pipeline.stage import Stage, StageContext, run_stage
from debuggable.pipeline.train_stage import model_roles, needs_training, run_train_stage, train_config
from debuggable.run import (
    BugConfig,
    DataConfig,
    EvaluateConfig,
    ExtractConfig,
    GLMConfig,
    ModelConfig,
    ReportConfig,
    RunConfig,
    RunDirectory,
)

STAGES: list[Stage] = [
    Stage("data", "data", ("data",), (), run_data_stage,
          help="load the data set, plant the configured bugs, record their ground truth"),
    Stage("train", "models", ("data", "model", "robust_model"), ("data",), run_train_stage,
          applies=lambda run: any(needs_training(m) for m in model_roles(run.config).values()),
          help="train the built-in models (standard and PGD-robust) the config asks for"),
    Stage("extract", "features", ("data", "model", "robust_model", "extract"), ("data", "train"), run_extract_stage,
          help="write each model's features, logits and predictions to resumable feature stores"),
    Stage("fit", "glm", ("data", "model", "robust_model", "extract", "glm"), ("extract",), run_fit_stage,
          help="fit the elastic-net regularisation path on the extracted features"),
    Stage("evaluate", "layer", ("data", "model", "robust_model", "extract", "glm", "evaluate"), ("fit",),
          run_evaluate_stage,
          help="choose the sparse decision layer on the path; dense vs sparse, top-k table, sparsity curve"),
    Stage("report", "report", ("report",), ("data", "train", "extract", "fit", "evaluate"), run_report_stage,
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
    return config


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


def validate(config: RunConfig) -> None:
    """Check every pluggable part of ``config`` before anything is written.

    Raises:
        DebuggableError: naming the first setting that cannot work.
    """
    from debuggable.data import DATASETS, PLANTERS, list_datasets, list_planters
    from debuggable.models import SmallCNN, check_backbone_params, list_backbones

    if config.data.name not in list_datasets():
        raise DebuggableError(f"data.name {config.data.name!r} is not a known data set; expected one of {list_datasets()}.")
    _check_params("data.params", DATASETS[config.data.name][0], config.data.params)
    for bug in config.data.bugs:
        if bug.kind not in list_planters():
            raise DebuggableError(f"data.bugs kind {bug.kind!r} is not a known bug; expected one of {list_planters()}.")
        _check_params(f"data.bugs {bug.kind} params", PLANTERS[bug.kind], bug.params, skip=("splits",))
    for role, model in model_roles(config).items():
        if model.kind not in list_backbones():
            raise DebuggableError(f"{role} model kind {model.kind!r} is unknown; expected one of {list_backbones()}.")
        if needs_training(model):
            _check_params(f"{role} model params", SmallCNN, model.params, skip=("in_channels", "num_classes"))
        else:
            check_backbone_params(model.kind, model.params)
        if needs_training(model):
            try:
                train_config(model, config.seed, "cpu")
            except Exception as exc:  # pydantic's message, reduced to its first line
                first = str(exc).splitlines()
                raise DebuggableError(f"{role} model train settings are invalid: {' '.join(first[:3])}.") from None
    if config.glm.store not in model_roles(config):
        raise DebuggableError(f"glm.store {config.glm.store!r} names no model of this run; expected one of {list(model_roles(config))}.")
    if config.evaluate.rule == "features" and config.evaluate.per_class is None:
        raise DebuggableError("evaluate.per_class is required when evaluate.rule is 'features'.")
    if config.evaluate.rule == "lambda" and config.evaluate.lam is None:
        raise DebuggableError("evaluate.lam is required when evaluate.rule is 'lambda'.")
    if config.evaluate.split not in config.extract.splits:
        raise DebuggableError(f"evaluate.split {config.evaluate.split!r} is not extracted; expected one of {config.extract.splits}.")
    resolve_device(config.extract.device)
    unknown = [s for s in config.extract.splits if s not in ("train", "val", "test") and not s.startswith("test_")]
    if unknown:
        raise DebuggableError(f"extract.splits {unknown} are not split names; expected train, val, test or test_<domain>.")


def _check_params(where: str, func, params: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raise naming the first key of ``params`` that ``func`` does not take, or a required one missing."""
    import inspect

    sig = inspect.signature(func)
    accepted = [n for n, p in sig.parameters.items()
                if n not in skip and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for name in params:
        if name not in accepted:
            raise DebuggableError(f"{where}: {name!r} is not a setting here; expected some of {accepted}.")
    for name in accepted:
        if sig.parameters[name].default is inspect.Parameter.empty and name not in params:
            raise DebuggableError(f"{where}: {name!r} is required; got only {sorted(params)}.")


def _context(run: RunDirectory, progress: bool) -> StageContext:
    return StageContext(device=resolve_device(run.config.extract.device), progress=progress)


def run_until(run: RunDirectory, stage_name: str, *, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run ``stage_name`` and, first, whatever it depends on that is not done."""
    if stage_name not in _BY_NAME:
        raise DebuggableError(f"stage {stage_name!r} does not exist; expected one of {list(_BY_NAME)}.")
    ctx = _context(run, progress)
    summaries: dict[str, Any] = {}
    for stage in STAGES:
        is_target = stage.name == stage_name
        summary = run_stage(stage, run, ctx, force=force and is_target)
        if summary is not None:
            summaries[stage.name] = summary
        if is_target:
            break
    return summaries


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
    train = summaries.get("train")
    if train:
        for role, m in train["models"].items():
            if m.get("trained"):
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
    "describe_results",
    "resolve_device",
    "run_all",
    "run_stage",
    "run_until",
    "stage_statuses",
    "validate",
]
