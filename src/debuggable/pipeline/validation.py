"""Checking a run's config before anything is written: :func:`validate`, :func:`resolve_device`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from debuggable.errors import DebuggableError
from debuggable.pipeline.roles import fine_tunes, model_roles, needs_training, section_name
from debuggable.run import RunConfig

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch parses it."""
    import torch

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
    from debuggable.pipeline.debug_stage import check_debug_config
    from debuggable.pipeline.explain_tests_stage import check_explain_tests_config
    from debuggable.pipeline.failures_stage import check_failures_config
    from debuggable.pipeline.interpret_stage import check_interpret_config
    from debuggable.pipeline.studies_stage import check_studies_config
    from debuggable.pipeline.train_stage import train_config
    from debuggable.pipeline.user_models import check_model_section, check_unused_settings

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
