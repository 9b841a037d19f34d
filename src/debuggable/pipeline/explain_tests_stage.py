"""Stage ``explain_tests``: which attribution methods reveal which planted bugs.

Runs the debugging tests of :mod:`debuggable.explain_tests` on the run's models and
writes ``explain_tests/``:

* ``models/clean`` (and ``models/mislabelled``, ``models/patched`` when needed): the
  extra planted-bug models, small CNNs like the inspected one, trained here on at most
  ``train_limit_per_class`` images per class of the run's data set without its bugs
  (``mislabelled``: with ``mislabel_fraction`` of those labels flipped; ``patched``:
  with a spurious patch, only when the run's data has none). A rerun after a kill
  reuses the models already saved for the same settings.
* ``panels.npz``: example images and normalised attribution maps for the figures.
* ``table.csv``: the method x bug table.
* ``summary.json``: ``table`` (rows ``method, bug, metric, value, ci_low, ci_high,
  detected, rule, n, primary``), ``findings`` (the paper's qualitative findings
  checked), the randomisation curves, per-test details, the extra models' accuracy
  and the attribution seconds per method.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import numpy as np
import torch

from debuggable.data import (
    DatasetSplits,
    load_dataset,
    patch_masks,
    plant_mislabels,
    plant_spurious_patch,
)
from debuggable.errors import DebuggableError
from debuggable.explain_tests import (
    BugResult,
    list_methods,
    method_bug_table,
    mislabel_test,
    model_randomization_test,
    ood_test,
    qualitative_findings,
    resize_images,
    spurious_patch_test,
)
from debuggable.models import (
    SmallCNN,
    evaluate,
    load_model,
    save_model,
    train_classifier,
)
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.explain_models import (
    attribution_model,
    choose_recipe,
    inspected_label,
    train_user_model,
    unusable_methods,
)
from debuggable.pipeline.explain_tests_cli import TESTABLE_KINDS
from debuggable.pipeline.roles import needs_training
from debuggable.pipeline.stage import StageContext
from debuggable.pipeline.train_stage import load_trained, train_config
from debuggable.run import (
    ExplainTestsConfig,
    ModelConfig,
    RunConfig,
    RunDirectory,
    atomic_write_bytes,
    atomic_write_text,
)

DIRECTORY = "explain_tests"
PANELS_FILE = "panels.npz"
TABLE_FILE = "table.csv"
#: planted when the run's data carries no spurious patch of its own
FALLBACK_PATCH = {"shape": "square", "size": 4, "colour": 1.0, "position": "top_left"}


def check_explain_tests_config(config: RunConfig) -> None:
    """Validate the ``[explain_tests]`` section before anything is written.

    Raises:
        DebuggableError: naming the first unusable setting.
    """
    cfg = config.explain_tests
    if cfg is None or not cfg.enabled or config.model.kind not in TESTABLE_KINDS:
        return
    if cfg.retrain == "full" and config.model.kind == "exported":
        raise DebuggableError("explain_tests.retrain: 'full' rebuilds the network from its factory, and kind 'exported' "
                              "has none; expected 'auto' or 'head'.")
    if cfg.retrain == "head" and config.model.kind == "small_cnn":
        raise DebuggableError("explain_tests.retrain: 'head' applies to a user's model (kind 'module' or 'exported'); "
                              "the small CNN is retrained whole, expected 'auto'.")
    known = list_methods()
    for m in cfg.methods:
        if m not in known:
            raise DebuggableError(f"explain_tests.methods: {m!r} is not a registered attribution method; expected some of {known}.")
    if not cfg.methods:
        raise DebuggableError(f"explain_tests.methods is empty; expected some of {known}.")
    if not cfg.bugs:
        raise DebuggableError("explain_tests.bugs is empty; expected some of spurious_patch, mislabels, model_randomization, ood.")
    for m, params in cfg.method_params.items():
        if m not in known:
            raise DebuggableError(f"explain_tests.method_params: {m!r} is not a registered attribution method; expected some of {known}.")
        from debuggable.explain_tests import METHODS

        bad = [k for k in params if k not in METHODS[m].defaults]
        if bad:
            raise DebuggableError(
                f"explain_tests.method_params.{m}: {bad[0]!r} is not a setting of {m}; expected some of {sorted(METHODS[m].defaults)}."
            )
    if "model_randomization" in cfg.bugs and not cfg.randomization_modes:
        raise DebuggableError("explain_tests.randomization_modes is empty; expected cascading and/or independent.")
    try:
        train_config(ModelConfig(kind="small_cnn", train=cfg.train), config.seed, "cpu")
    except Exception as exc:  # pydantic's message, first lines
        raise DebuggableError(f"explain_tests.train settings are invalid: {' '.join(str(exc).splitlines()[:3])}.") from None
    if "ood" in cfg.bugs and cfg.ood_dataset is not None:
        from debuggable.data import list_datasets

        if cfg.ood_dataset not in ("animal_mnist", "digits"):
            raise DebuggableError(
                f"explain_tests.ood_dataset {cfg.ood_dataset!r} is not a built-in image data set; expected "
                f"'animal_mnist' or 'digits' (known data sets: {list_datasets()})."
            )


def _seed(config: RunConfig, salt: str) -> int:
    return int(config.seed + int(hashlib.sha256(salt.encode()).hexdigest()[:6], 16)) % (2**31)


def _settings_hash(config: RunConfig, role: str) -> str:
    cfg = config.explain_tests
    payload = {"role": role, "seed": config.seed, "data": config.data.model_dump(mode="json"),
               "model": config.model.params, "train": cfg.train, "limit": cfg.train_limit_per_class,
               "mislabel_fraction": cfg.mislabel_fraction if role == "mislabelled" else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _limit_train(splits: DatasetSplits, limit: int | None, seed: int) -> DatasetSplits:
    """``splits`` with at most ``limit`` training images per class (a seeded choice, in row order)."""
    if limit is None:
        return splits
    rng = np.random.default_rng(seed)
    labels = splits.train.labels
    rows = [rng.choice(np.flatnonzero(labels == k), size=min(limit, int((labels == k).sum())), replace=False)
            for k in range(len(splits.class_names))]
    keep = np.sort(np.concatenate(rows))
    new = dict(splits.splits)
    new["train"] = splits.train.subset(keep)
    return DatasetSplits(name=splits.name, splits=new, class_names=splits.class_names, planted={})


def _model_kwargs(run: RunDirectory, splits: DatasetSplits) -> dict[str, Any]:
    params = {k: v for k, v in run.config.model.params.items() if k != "path"}
    return {"in_channels": splits.train.image_shape[0], "num_classes": len(splits.class_names), **params}


def _inspected(run: RunDirectory, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """The inspected model as ``images -> logits``, and its backbone (``None`` for the small CNN)."""
    if run.config.model.kind == "small_cnn":
        if needs_training(run.config.model):
            return load_trained(run, "inspected").to(device), None
        return load_model(run.config.model.params["path"], device=device), None
    from debuggable.pipeline.extract_stage import make_backbone

    backbone = make_backbone(run, "inspected").to(device).eval()
    return attribution_model(backbone), backbone


def _extra_model(run: RunDirectory, ctx: StageContext, role: str, splits: DatasetSplits) -> tuple[torch.nn.Module, dict]:
    """Train (or reuse, when saved for the same settings) the extra model ``role``."""
    directory = run.path / DIRECTORY / "models" / role
    wanted = _settings_hash(run.config, role)
    info_path = directory / "model.json"
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            if info.get("config", {}).get("settings_hash") == wanted:
                model = load_model(directory, device=ctx.device)
                ctx.log(f"[explain_tests] reusing the {role} model saved for these settings")
                return model, info["config"]["metrics"]
        except (OSError, ValueError, DebuggableError):
            pass
    tcfg = train_config(ModelConfig(kind="small_cnn", train=run.config.explain_tests.train),
                        _seed(run.config, role), str(ctx.device))
    kwargs = _model_kwargs(run, splits)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tcfg.seed)
        model = SmallCNN(**kwargs)
    ctx.log(f"[explain_tests] training the {role} model: {len(splits.train)} images, {tcfg.epochs} epochs")
    result = train_classifier(model, splits.train, None, tcfg, progress=ctx.progress)
    metrics = {"test_accuracy": evaluate(model, splits.test, device=ctx.device), "train_images": len(splits.train),
               "train_seconds": result.seconds}
    save_model(model, directory, config={"arch": "small_cnn", "kwargs": kwargs, "train": tcfg.model_dump(mode="json"),
                                         "metrics": metrics, "settings_hash": wanted, "role": role})
    return model, metrics


def _pick(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


def _ood_images(run: RunDirectory, n: int, shape: tuple[int, int, int], seed: int) -> tuple[str, torch.Tensor]:
    cfg = run.config.explain_tests
    name = cfg.ood_dataset or ("animal_mnist" if run.config.data.name == "digits" else "digits")
    ood = load_dataset(name, seed=0).test
    rows = _pick(np.arange(len(ood)), n, seed)
    x, _ = ood.batch(rows)
    return name, resize_images(x, shape)


def run_explain_tests_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    cfg: ExplainTestsConfig = run.config.explain_tests
    check_explain_tests_config(run.config)
    splits = build_data(run.config, ctx)
    if splits.modality != "image":
        raise DebuggableError(f"explain_tests needs image data; {splits.name!r} holds {splits.modality} data.")
    out = run.stage_dir(DIRECTORY)
    common = {"methods": cfg.methods, "method_params": cfg.method_params, "n_boot": cfg.n_boot, "ci": cfg.ci,
              "seed": run.config.seed, "batch_size": cfg.batch_size, "progress": ctx.progress}
    inspected, backbone = _inspected(run, ctx.device)
    if backbone is not None:  # learn the output shapes on two of the run's images
        with torch.no_grad():
            backbone(splits.train.batch(np.arange(min(2, len(splits.train))))[0])
    recipe = choose_recipe(run.config.model, cfg.retrain, backbone, len(splits.class_names))
    if recipe.reason:
        ctx.log(f"[explain_tests] extra models: {recipe.description} ({recipe.reason})")
    as_is = inspected_label(run.config.model, backbone)

    def extra(role: str, data: DatasetSplits) -> tuple[torch.nn.Module, dict]:
        if recipe.kind == "small_cnn":
            return _extra_model(run, ctx, role, data)
        return train_user_model(run, ctx, role, recipe, backbone, data, _seed(run.config, role),
                                run.path / DIRECTORY / "models" / role)

    methods = list(cfg.methods)
    skipped = unusable_methods(inspected, methods)
    for name, why in skipped.items():
        ctx.log(f"[explain_tests] {name} left out: {why}")
    methods = [m for m in methods if m not in skipped]
    if not methods:
        raise DebuggableError(f"explain_tests.methods: none of {cfg.methods} can run on this model ({skipped}).")
    common["methods"] = methods
    shape = tuple(splits.train.image_shape)
    base = load_dataset(run.config.data.name, **run.config.data.params)
    small = _limit_train(base, cfg.train_limit_per_class, _seed(run.config, "limit"))
    results: list[BugResult] = []
    models: dict[str, Any] = {}
    outputs: list[str] = []
    clean = None
    if {"spurious_patch", "mislabels"} & set(cfg.bugs):
        clean, models["clean"] = extra("clean", small)
        outputs.append(f"{DIRECTORY}/models/clean")
    trained_here = recipe.description

    # Unpatched test rows: the images the randomisation and OOD tests look at.
    truth = splits.planted.get("spurious_patch")
    patched_test = set(truth["splits"].get("test", {}).get("indices", [])) if truth else set()
    plain_rows = np.asarray([i for i in range(len(splits.test)) if i not in patched_test], dtype=np.int64)

    for bug in cfg.bugs:
        ctx.log(f"[explain_tests] {bug}: {len(methods)} methods")
        if bug == "spurious_patch":
            has_patch = truth is not None and "test" in truth["splits"]
            if has_patch and recipe.kind == "small_cnn":
                buggy, test_split, gt = inspected, splits.test, splits.planted
                source = "inspected model (trained with the run's planted patch)"
                measured = f"inspected small CNN (trained in this run with the planted patch) vs clean: {trained_here}"
            elif has_patch:
                # The user's weights were not trained on the run's planted patch: a model is
                # trained here on the run's patched images, and one on the same images without it.
                limited = _limit_train(splits, cfg.train_limit_per_class, _seed(run.config, "limit"))
                buggy, models["patched"] = extra("patched", limited)
                outputs.append(f"{DIRECTORY}/models/patched")
                test_split, gt = splits.test, splits.planted
                source = "patched model trained here on the run's planted patch"
                measured = f"{trained_here}, with the run's planted patch vs without it"
            else:
                planted = plant_spurious_patch(base, target_class=0, train_fraction=0.8, test_fraction=0.5,
                                               patch=FALLBACK_PATCH, seed=run.config.seed)
                limited = _limit_train(planted, cfg.train_limit_per_class, _seed(run.config, "limit"))
                buggy, models["patched"] = extra("patched", limited)
                outputs.append(f"{DIRECTORY}/models/patched")
                test_split, gt = planted.test, planted.planted
                source = "patched model trained here (the run's data has no spurious patch)"
                measured = f"{trained_here}, with a planted patch vs without it"
            target_class = int(gt["spurious_patch"]["params"]["target_class"])
            rows, masks = patch_masks(gt, "test")
            other = test_split.labels[rows] != target_class
            rows, masks = rows[other], masks[other]
            pick = np.isin(rows, _pick(rows, cfg.examples, _seed(run.config, "spurious")))
            x, _ = test_split.batch(rows[pick])
            res = spurious_patch_test(buggy, clean, x, masks[pick],
                                      target="predicted" if cfg.spurious_target == "predicted" else target_class,
                                      **common)
            res.details.update(buggy_model=source, target_class=target_class)
        elif bug == "mislabels":
            flipped_splits = plant_mislabels(small, fraction=cfg.mislabel_fraction, seed=run.config.seed)
            mis_model, models["mislabelled"] = extra("mislabelled", flipped_splits)
            measured = f"{trained_here}, with {cfg.mislabel_fraction:.0%} of the labels flipped vs correct labels"
            outputs.append(f"{DIRECTORY}/models/mislabelled")
            info = flipped_splits.planted["mislabels"]["splits"]["train"]
            flipped = np.asarray(info["indices"], dtype=np.int64)
            correct = np.setdiff1d(np.arange(len(flipped_splits.train)), flipped)
            half = max(2, cfg.examples // 2)
            rows = np.r_[_pick(flipped, half, _seed(run.config, "mis1")), _pick(correct, half, _seed(run.config, "mis2"))]
            x, y = flipped_splits.train.batch(rows)
            is_flipped = np.isin(rows, flipped)
            res = mislabel_test(mis_model, clean, x, y.numpy(), is_flipped, **common)
            res.details["mislabel_fraction"] = cfg.mislabel_fraction
        elif bug == "model_randomization":
            rows = _pick(plain_rows, cfg.randomization_examples, _seed(run.config, "randomization"))
            x, _ = splits.test.batch(rows)
            res = model_randomization_test(inspected, x, modes=cfg.randomization_modes, threshold=cfg.threshold, **common)
            measured = as_is
        else:  # ood
            rows = _pick(plain_rows, cfg.examples, _seed(run.config, "ood_in"))
            x_in, _ = splits.test.batch(rows)
            name, x_out = _ood_images(run, cfg.examples, shape, _seed(run.config, "ood_out"))
            res = ood_test(inspected, x_in, x_out, threshold=cfg.threshold, **common)
            res.details["ood_dataset"] = name
            measured = as_is
        for r in res.rows:
            r.model = measured
        res.details["model"] = measured
        results.append(res)

    table = method_bug_table(results)
    panels = {f"{r.bug}/{k}": v for r in results for k, v in r.panels.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **panels)
    atomic_write_bytes(out / PANELS_FILE, buf.getvalue())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]) if table else ["method"])
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out / TABLE_FILE, text.getvalue())
    outputs += [f"{DIRECTORY}/{PANELS_FILE}", f"{DIRECTORY}/{TABLE_FILE}"]
    seconds: dict[str, float] = {}
    for r in results:
        for k, v in r.seconds.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 3)
    findings = qualitative_findings(table, threshold=cfg.threshold)
    summary = {
        "table": table,
        "findings": findings,
        "methods": methods,
        "skipped_methods": skipped,
        "recipe": {"kind": recipe.kind, "description": recipe.description, "reason": recipe.reason},
        "bugs": list(cfg.bugs),
        "settings": cfg.model_dump(mode="json"),
        "details": {r.bug: r.details for r in results},
        "models": models,
        "attribution_seconds": seconds,
        "class_names": splits.class_names,
    }
    for line in describe_findings(summary):
        ctx.log(f"[explain_tests] {line}")
    return summary, outputs


def describe_findings(summary: dict[str, Any]) -> list[str]:
    """One line per bug: which methods revealed it (and the randomisation check)."""
    f = summary["findings"]
    lines = []
    for bug in summary["bugs"]:
        key = f"{bug}_detected_by"
        if key in f:
            n = len([m for m in summary["methods"]])
            lines.append(f"{bug}: revealed by {len(f[key])} of {n} methods" + (f" ({', '.join(f[key])})" if f[key] else ""))
    if "guided_backprop_insensitive_to_top_layer" in f:
        parts = [f"guided backprop {'unchanged' if f['guided_backprop_insensitive_to_top_layer'] else 'changed'}"]
        for name in ("saliency", "integrated_gradients"):
            if f"{name}_sensitive_to_top_layer" in f:
                parts.append(f"{name.replace('_', ' ')} {'changed' if f[f'{name}_sensitive_to_top_layer'] else 'unchanged'}")
        lines.append("top layer re-initialised: " + ", ".join(parts))
    return lines


def describe_compact(summary: dict[str, Any]) -> list[str]:
    """Two lines for the end-of-run summary: methods revealing each bug, and the
    top-layer randomisation check with the rank correlations behind it."""
    f, n = summary["findings"], len(summary["methods"])
    counts = ", ".join(f"{bug} {len(f[f'{bug}_detected_by'])}/{n}" for bug in summary["bugs"]
                       if f"{bug}_detected_by" in f)
    lines = [f"methods revealing each planted bug: {counts}"]
    corr = {r["method"]: r["value"] for r in summary["table"]
            if r["bug"] == "model_randomization" and r["metric"] == "spearman_top_layer"}
    shown = [m for m in ("guided_backprop", "saliency", "integrated_gradients") if m in corr and corr[m] is not None]
    if shown:
        lines.append("rank correlation with the trained model's attributions after re-initialising the top layer: "
                     + ", ".join(f"{m.replace('_', ' ')} {corr[m]:.2f}" for m in shown))
    return lines
