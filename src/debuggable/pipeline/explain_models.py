"""The models the ``explain_tests`` stage measures, and the recipes that train the extra ones.

The tests need, besides the inspected model as it is (model randomisation, OOD),
models trained here on data with a planted bug and on the same data without it (the
spurious patch, mislabelled examples). How they are trained depends on the model:

* ``small_cnn``: small CNNs of the inspected model's settings, trained with
  ``[explain_tests] train`` (as the demo does);
* ``full``: the user's own network, rebuilt with its ``factory`` and ``params``,
  freshly initialised and trained end to end with ``[explain_tests] train``
  (``kind = "module"``; needs the network to output one logit per class of the data);
* ``head``: only a new linear head (multinomial logistic regression, scikit-learn,
  ``C = 1``, on standardised features) on the inspected model's *frozen* ``layer``
  features: what a run can do when no trainer fits (``kind = "exported"``, or a
  factory whose output is not the data's classes).

``retrain = "auto"`` picks ``small_cnn`` for the small CNN, ``full`` when the factory
fits, else ``head``. Every model here maps (B, C, H, W) images in [0, 1] to (B, K)
logits, as the attribution methods expect; :func:`attribution_model` turns a backbone
into one. The recipe's description goes into each table row's ``model`` column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models import Backbone, ModuleBackbone, SmallCNN, evaluate, train_classifier
from debuggable.models.user_module import ScriptedBackbone, USER_KINDS, build_module, import_factory
from debuggable.run import ModelConfig, RunDirectory, atomic_write_text

RECIPES = ("small_cnn", "full", "head")


class AttributionModel(nn.Module):
    """A backbone seen as ``images -> logits`` (its own head), for attribution methods.

    ``default_feature_layer`` names the backbone's hooked layer when it gives a spatial
    map, so Grad-CAM looks where the features come from.
    """

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        if isinstance(backbone, ModuleBackbone) and backbone.has_spatial:
            self.default_feature_layer = f"backbone.model.{backbone.layer}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.backbone(x).logits
        if logits is None:
            raise DebuggableError(f"model: {self.backbone.name!r} gives no logits; expected a classifier's (B, K) output.")
        return logits


class HeadOnFeatures(nn.Module):
    """A frozen backbone's features through a new linear head: ``images -> logits``."""

    def __init__(self, backbone: Backbone, head: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.head = head
        if isinstance(backbone, ModuleBackbone) and backbone.has_spatial:
            self.default_feature_layer = f"backbone.model.{backbone.layer}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).features.to(self.head.weight.dtype))


def attribution_model(backbone: Backbone) -> nn.Module:
    """``images -> logits`` of a backbone with a head (a :class:`SmallCNN` is used as it is)."""
    inner = getattr(backbone, "model", None)
    if isinstance(inner, SmallCNN):
        return inner
    return AttributionModel(backbone)


def _features(backbone: Backbone, dataset: Any, batch_size: int = 256) -> np.ndarray:
    out = []
    backbone.eval()
    with torch.no_grad():
        for lo in range(0, len(dataset), batch_size):
            x, _ = dataset.batch(np.arange(lo, min(lo + batch_size, len(dataset))))
            out.append(backbone(x).features.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def fit_head(backbone: Backbone, train_ds: Any, num_classes: int, seed: int) -> nn.Linear:
    """A multinomial logistic regression (``C = 1``, standardised features) on the frozen
    backbone's features of ``train_ds``, as an ``nn.Linear`` on the raw features."""
    from sklearn.linear_model import LogisticRegression

    x = _features(backbone, train_ds)
    y = np.asarray(train_ds.labels, dtype=np.int64)
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit((x - mean) / std, y)
    coef = np.zeros((num_classes, x.shape[1]))
    bias = np.zeros(num_classes)
    classes = clf.classes_.astype(int)
    if coef.shape[0] == 2 and clf.coef_.shape[0] == 1:  # binary: one row for class 1
        coef[1], bias[1] = clf.coef_[0], clf.intercept_[0]
    else:
        coef[classes], bias[classes] = clf.coef_, clf.intercept_
    w = coef / std
    b = bias - w @ mean
    head = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return head


@dataclass
class Recipe:
    """How the stage trains its extra models.

    Attributes:
        kind: one of :data:`RECIPES`.
        description: the recipe in words (the table's ``model`` column uses it).
        reason: why ``auto`` chose it, when it did.
    """

    kind: str
    description: str
    reason: str = ""


def choose_recipe(model: ModelConfig, requested: str, backbone: Backbone | None, num_classes: int) -> Recipe:
    """The recipe for ``retrain = requested`` and the inspected model.

    Raises:
        DebuggableError: ``explain_tests.retrain: ...`` when the requested recipe cannot
            train this model.
    """
    if requested not in ("auto",) + RECIPES:
        raise DebuggableError(f"explain_tests.retrain: got {requested!r}, expected 'auto', 'full' or 'head'.")
    layer = model.layer or "features"
    head = Recipe("head", f"a linear head on the inspected model's frozen {layer!r} features, trained here")
    if model.kind == "small_cnn":
        if requested == "head":
            raise DebuggableError("explain_tests.retrain: 'head' applies to a user's model; the small CNN is retrained "
                                  "whole, expected 'auto'.")
        return Recipe("small_cnn", "small CNNs like the inspected one, trained here with [explain_tests.train]")
    if model.kind not in USER_KINDS:
        raise DebuggableError(f"explain_tests: model kind {model.kind!r} has no recipe for the extra models; expected "
                              f"'small_cnn', 'module' or 'exported'.")
    logits = getattr(backbone, "num_classes", None)
    fits = model.kind == "module" and logits == num_classes
    if requested == "head" or (requested == "auto" and not fits):
        why = ("kind 'exported' has no factory to rebuild the network" if model.kind == "exported" else
               f"the network gives {logits} outputs, not the data's {num_classes} classes" if requested == "auto" else "")
        return Recipe(head.kind, head.description, why)
    if not fits:
        why = ("kind 'exported' has no factory to rebuild it" if model.kind == "exported"
               else f"its output has {logits} logits, not one per class of the data ({num_classes})")
        raise DebuggableError(f"explain_tests.retrain: 'full' retrains the network from its factory, but {why}; "
                              "expected 'auto' or 'head'.")
    return Recipe("full", f"{model.factory}(**params) freshly initialised and trained here with [explain_tests.train]")


def settings_hash(run: RunDirectory, role: str, recipe: Recipe) -> str:
    """What an extra model depends on: the data, the model's table, the recipe and its settings."""
    from debuggable.pipeline.user_models import model_files_digest

    cfg = run.config.explain_tests
    payload = {"role": role, "seed": run.config.seed, "data": run.config.data.model_dump(mode="json"),
               "model": run.config.model.model_dump(mode="json"), "recipe": recipe.kind, "train": cfg.train,
               "weights": model_files_digest(run, ("model",)) if recipe.kind == "head" else None,
               "limit": cfg.train_limit_per_class,
               "mislabel_fraction": cfg.mislabel_fraction if role == "mislabelled" else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_state(directory, module: nn.Module, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from debuggable.run import atomic_write_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    atomic_write_file(directory / "weights.safetensors", lambda tmp: save_file(state, str(tmp)))
    atomic_write_text(directory / "model.json", json.dumps(info, indent=2, default=str) + "\n")


def _load_state(directory, module: nn.Module, wanted: str) -> dict[str, Any] | None:
    from safetensors.torch import load_file

    try:
        info = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        if info.get("settings_hash") != wanted or not (directory / "weights.safetensors").is_file():
            return None
        module.load_state_dict(load_file(str(directory / "weights.safetensors")), strict=True)
        return info
    except (OSError, ValueError, RuntimeError, KeyError):
        return None


def train_user_model(run: RunDirectory, ctx: Any, role: str, recipe: Recipe, inspected: Backbone, splits: Any,
                     seed: int, directory) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or reuse, when saved for the same settings) the extra model ``role`` by ``recipe``
    (``full`` or ``head``) on ``splits.train``; returns ``(images -> logits model, metrics)``."""
    from debuggable.pipeline.train_stage import train_config

    wanted = settings_hash(run, role, recipe)
    k = len(splits.class_names)
    model_cfg = run.config.model
    if recipe.kind == "head":
        head = nn.Linear(int(inspected.feature_dim), k)
        model: nn.Module = HeadOnFeatures(inspected, head)
        trainable: nn.Module = head
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_module(import_factory(model_cfg.factory, root=run.path), model_cfg.params, spec=model_cfg.factory)
        preprocess = inspected.preprocess_module if isinstance(inspected, ModuleBackbone) else None
        model = AttributionModel(ModuleBackbone(net, model_cfg.layer, preprocess=preprocess, name=f"{role}:{model_cfg.layer}"))
        trainable = net
    info = _load_state(directory, trainable, wanted)
    if info is not None:
        ctx.log(f"[explain_tests] reusing the {role} model saved for these settings")
        return model.to(ctx.device).eval(), info["metrics"]
    if recipe.kind == "head":
        ctx.log(f"[explain_tests] fitting the {role} model's head on {len(splits.train)} images' frozen features")
        import time

        t0 = time.perf_counter()
        fitted = fit_head(inspected, splits.train, k, seed)
        head.load_state_dict(fitted.state_dict())
        seconds = time.perf_counter() - t0
    else:
        tcfg = train_config(ModelConfig(kind="small_cnn", train=run.config.explain_tests.train), seed, str(ctx.device))
        ctx.log(f"[explain_tests] training the {role} model ({model_cfg.factory}): {len(splits.train)} images, "
                f"{tcfg.epochs} epochs")
        seconds = train_classifier(model, splits.train, None, tcfg, progress=ctx.progress).seconds
    model = model.to(ctx.device).eval()
    metrics = {"test_accuracy": evaluate(model, splits.test, device=ctx.device), "train_images": len(splits.train),
               "train_seconds": seconds, "recipe": recipe.kind}
    _save_state(directory, trainable, {"settings_hash": wanted, "role": role, "recipe": recipe.kind,
                                       "description": recipe.description, "metrics": metrics})
    return model, metrics


def unusable_methods(model: nn.Module, names: list[str]) -> dict[str, str]:
    """Methods that cannot give their own answer on ``model``, with the reason.

    Guided backpropagation (and Guided Grad-CAM) modify the backward pass of
    ``nn.ReLU`` *modules*; on a network that applies ReLU as a function (or an exported
    program) they would silently return plain gradients. Grad-CAM methods need a
    layer with a spatial map.
    """
    from debuggable.explain_tests import METHODS, default_cam_layer

    out: dict[str, str] = {}
    has_relu_modules = any(isinstance(m, nn.ReLU) for m in model.modules())
    cam_error = None
    try:
        default_cam_layer(model)
    except DebuggableError as exc:
        cam_error = str(exc)
    for name in names:
        cls = METHODS.get(name)
        if cls is None:
            continue
        if getattr(cls, "modifies_backprop", False) and not has_relu_modules:
            out[name] = ("the model has no nn.ReLU modules (ReLU applied as a function, or an exported program), so "
                         "guided backpropagation cannot modify its backward pass")
        elif "cam" in name and cam_error is not None:
            out[name] = f"no layer for Grad-CAM ({cam_error.rstrip('.')})"
    return out


def inspected_label(model: ModelConfig, backbone: Backbone) -> str:
    """The inspected model in words, for the table's ``model`` column."""
    if model.kind == "small_cnn":
        return "inspected small CNN, as it is"
    what = model.factory if model.kind == "module" else model.path
    kind = "TorchScript" if isinstance(backbone, ScriptedBackbone) else model.kind
    return f"inspected model ({kind} {what}), as it is"
