"""Attribution methods behind one call shape, through Captum, and a registry by name.

Every method is a class with the Captum style "construct on a model, then call
``attribute``"::

    method = get_method("integrated_gradients", model, n_steps=32)
    attr = method.attribute(images, target)        # (B, C, H, W), on images.device

``images`` is a (B, C, H, W) float tensor (whatever the model eats), ``target`` an
int, a (B,) sequence/tensor of class indices, or ``None`` (each image's predicted
class). The result always has the input's shape, dtype float32, on the input's
device, detached: methods that attribute to a coarser map (Grad-CAM) upsample it
bilinearly and repeat it over the channels. The model is run in eval mode and its
train/eval flags are restored afterwards. Stochastic methods (SmoothGrad, GradientSHAP,
LIME, KernelSHAP) draw from a generator seeded by ``seed``: the same call gives the
same attributions.

Add a method by name with :func:`register_method`, either a subclass of
:class:`AttributionMethod` or a plain function
``fn(model, images, target, **params) -> (B, C, H, W) tensor``.
"""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from debuggable.errors import DebuggableError

TargetLike = int | Sequence[int] | np.ndarray | torch.Tensor | None


def _check_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise DebuggableError(f"images: got {shape}, expected a (B, C, H, W) floating-point torch tensor.")
    if images.shape[0] == 0:
        raise DebuggableError("images: got an empty batch, expected at least one image.")
    return images


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_targets(model: nn.Module, images: torch.Tensor, target: TargetLike) -> torch.Tensor:
    """``target`` as a (B,) int64 tensor on ``images.device``; ``None`` -> predicted classes.

    Raises:
        DebuggableError: when the target has the wrong length or is not a class index.
    """
    b = images.shape[0]
    if target is None:
        with torch.no_grad():
            logits = model(images)
        return logits.argmax(1).to(torch.int64)
    if isinstance(target, (bool, np.bool_)):
        raise DebuggableError(f"target: got {target!r}, expected a class index, a sequence of them or None.")
    if isinstance(target, (int, np.integer)):
        t = torch.full((b,), int(target), dtype=torch.int64, device=images.device)
    else:
        t = torch.as_tensor(np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target))
        if t.ndim != 1 or t.shape[0] != b or t.is_floating_point():
            raise DebuggableError(
                f"target: got shape {tuple(t.shape)} ({t.dtype}), expected {b} integer class indices (one per image)."
            )
        t = t.to(device=images.device, dtype=torch.int64)
    if bool((t < 0).any()):
        raise DebuggableError(f"target: got negative class indices {t[t < 0][:5].tolist()}, expected indices >= 0.")
    return t


class AttributionMethod(ABC):
    """Base class: one attribution method bound to one model.

    Subclasses set :attr:`name` and implement :meth:`_attribute` on a batch already
    on the model's device with resolved (B,) targets, returning a tensor of the input's
    shape (or (B, 1, h, w), which is upsampled).

    Args:
        model: maps (B, C, H, W) to (B, K) logits.
        seed: seeds every random draw of the method.
        **params: method settings (see each class).

    Class attributes:
        name: the registry name.
        modifies_backprop: True for methods that change the backward pass (guided
            backpropagation and its relatives), which the sanity checks single out.
    """

    name: ClassVar[str] = ""
    modifies_backprop: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    #: whether the input must carry gradients (False for perturbation methods)
    needs_grad: ClassVar[bool] = True

    def __init__(self, model: nn.Module, *, seed: int = 0, **params: Any) -> None:
        if not isinstance(model, nn.Module):
            raise DebuggableError(f"model: got a {type(model).__name__}, expected a torch.nn.Module.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DebuggableError(f"seed: got {seed!r}, expected a non-negative integer.")
        self.model = model
        self.seed = int(seed)
        self.params = self._check_params(params)

    # subclasses list their settings and defaults here
    defaults: ClassVar[dict[str, Any]] = {}

    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = [k for k in params if k not in self.defaults]
        if unknown:
            raise DebuggableError(
                f"{self.name}: {unknown[0]!r} is not a setting of this method; expected some of {sorted(self.defaults)}."
            )
        return {**self.defaults, **params}

    def attribute(self, images: torch.Tensor, target: TargetLike = None) -> torch.Tensor:
        """Attributions of ``target``'s logit to each input value.

        Args:
            images: (B, C, H, W) float tensor; moved to the model's device for the
                computation.
            target: an int, B class indices, or None (each image's predicted class).

        Returns:
            (B, C, H, W) float32 tensor on ``images.device``, detached.
        """
        images = _check_images(images)
        out_device = images.device
        device = _model_device(self.model)
        x = images.detach().to(device)
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        fork = [device] if device.type == "cuda" else []
        np_state = np.random.get_state()  # Captum's GradientSHAP draws from NumPy's global generator
        try:
            with torch.enable_grad(), torch.random.fork_rng(devices=fork), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(did not already require gradients|backward hooks).*")
                torch.manual_seed(self.seed)
                np.random.seed(self.seed)
                t = resolve_targets(self.model, x, target)
                attr = self._attribute(x.requires_grad_(self.needs_grad), t)
        finally:
            np.random.set_state(np_state)
            for m, mode in modes:
                m.training = mode
        attr = _to_input_shape(attr, x)
        return attr.detach().to(device=out_device, dtype=torch.float32)

    @abstractmethod
    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Attributions for ``x`` (B, C, H, W) on the model's device and (B,) targets."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _to_input_shape(attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(attr, torch.Tensor) or attr.ndim != 4 or attr.shape[0] != x.shape[0]:
        shape = tuple(attr.shape) if isinstance(attr, torch.Tensor) else type(attr).__name__
        raise DebuggableError(f"attribution method returned {shape}; expected a (B, C, H, W) tensor for {tuple(x.shape)} inputs.")
    if attr.shape[-2:] != x.shape[-2:]:
        attr = torch.nn.functional.interpolate(attr.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    if attr.shape[1] != x.shape[1]:
        if attr.shape[1] != 1:
            raise DebuggableError(f"attribution method returned {attr.shape[1]} channels; expected 1 or {x.shape[1]}.")
        attr = attr.expand(-1, x.shape[1], -1, -1)
    return attr


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM looks at: ``model.default_feature_layer`` when the model names
    one (the small CNN's spatial map), else the last ``Conv2d``.

    Raises:
        DebuggableError: when the model has no convolution.
    """
    name = getattr(model, "default_feature_layer", None)
    if isinstance(name, str):
        modules = dict(model.named_modules())
        if name in modules:
            return modules[name]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise DebuggableError(f"model: {type(model).__name__} has no Conv2d layer; pass layer= to Grad-CAM methods.")
    return convs[-1]


def _layer(model: nn.Module, layer: Any) -> nn.Module:
    if layer is None:
        return default_cam_layer(model)
    if isinstance(layer, nn.Module):
        return layer
    from debuggable.models import resolve_layer

    return resolve_layer(model, layer)


def grid_segments(shape: Sequence[int], cell: int, device: torch.device | None = None) -> torch.Tensor:
    """A (1, C, H, W) int64 feature mask of ``cell`` x ``cell`` squares (shared by all
    channels), numbered row by row from 0: the interpretable features of LIME and
    KernelSHAP.

    Args:
        shape: (C, H, W) of one image.
        cell: side of a square in pixels, >= 1.
    """
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise DebuggableError(f"cell: got {cell!r}, expected a positive integer (pixels).")
    c, h, w = (int(s) for s in shape)
    rows = torch.arange(h, device=device) // cell
    cols = torch.arange(w, device=device) // cell
    ncols = (w + cell - 1) // cell
    seg = rows[:, None] * ncols + cols[None, :]
    return seg.expand(c, h, w).unsqueeze(0).to(torch.int64)


# ----------------------------------------------------------------------------- the methods


class Saliency(AttributionMethod):
    """The gradient of the target logit (Simonyan et al.), signed; ``abs`` for |gradient|."""

    name = "saliency"
    defaults = {"abs": False}

    def _attribute(self, x, target):
        from captum.attr import Saliency as _Saliency

        return _Saliency(self.model).attribute(x, target=target, abs=bool(self.params["abs"]))


class InputXGradient(AttributionMethod):
    """Input times gradient (Shrikumar et al.)."""

    name = "input_x_gradient"

    def _attribute(self, x, target):
        from captum.attr import InputXGradient as _IxG

        return _IxG(self.model).attribute(x, target=target)


class SmoothGrad(AttributionMethod):
    """SmoothGrad (Smilkov et al.): the gradient averaged over ``n_samples`` copies of
    the input with Gaussian noise of standard deviation ``noise`` (input units; 0.15 is
    15% of the [0, 1] range)."""

    name = "smoothgrad"
    stochastic = True
    defaults = {"n_samples": 16, "noise": 0.15, "batch_size": 64}

    def _attribute(self, x, target):
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as _Saliency

        n = int(self.params["n_samples"])
        return NoiseTunnel(_Saliency(self.model)).attribute(
            x, target=target, nt_type="smoothgrad", nt_samples=n, stdevs=float(self.params["noise"]),
            nt_samples_batch_size=max(1, int(self.params["batch_size"]) // max(1, x.shape[0])), abs=False,
        )


class IntegratedGradients(AttributionMethod):
    """Integrated gradients (Sundararajan et al.) from a constant ``baseline`` image,
    ``n_steps`` Gauss-Legendre points."""

    name = "integrated_gradients"
    defaults = {"n_steps": 32, "baseline": 0.0, "internal_batch_size": 256}

    def _attribute(self, x, target):
        from captum.attr import IntegratedGradients as _IG

        return _IG(self.model).attribute(
            x, baselines=float(self.params["baseline"]), target=target, n_steps=int(self.params["n_steps"]),
            internal_batch_size=int(self.params["internal_batch_size"]),
        )


class GradCAM(AttributionMethod):
    """Grad-CAM (Selvaraju et al.) at ``layer`` (default: :func:`default_cam_layer`),
    ReLU-ed, upsampled bilinearly to the input and repeated over its channels."""

    name = "grad_cam"
    defaults = {"layer": None, "relu": True}

    def _attribute(self, x, target):
        from captum.attr import LayerGradCam

        layer = _layer(self.model, self.params["layer"])
        cam = LayerGradCam(self.model, layer).attribute(x, target=target, relu_attributions=bool(self.params["relu"]))
        return cam


class GuidedBackprop(AttributionMethod):
    """Guided backpropagation (Springenberg et al.): only positive gradients pass the
    ReLUs backwards. Needs the model's ReLUs to be ``nn.ReLU`` modules."""

    name = "guided_backprop"
    modifies_backprop = True

    def _attribute(self, x, target):
        from captum.attr import GuidedBackprop as _GBP

        return _GBP(self.model).attribute(x, target=target)


class GuidedGradCAM(AttributionMethod):
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map."""

    name = "guided_grad_cam"
    modifies_backprop = True
    defaults = {"layer": None}

    def _attribute(self, x, target):
        from captum.attr import GuidedGradCam

        layer = _layer(self.model, self.params["layer"])
        return GuidedGradCam(self.model, layer).attribute(x, target=target, interpolate_mode="bilinear")


class Occlusion(AttributionMethod):
    """Occlusion (Zeiler and Fergus): the drop of the target logit when a ``window``-pixel
    square (all channels) is set to ``baseline``, sliding by ``stride``."""

    name = "occlusion"
    needs_grad = False
    defaults = {"window": 4, "stride": 2, "baseline": 0.0, "batch_size": 256}

    def _attribute(self, x, target):
        from captum.attr import Occlusion as _Occlusion

        w, s = int(self.params["window"]), int(self.params["stride"])
        c = x.shape[1]
        return _Occlusion(self.model).attribute(
            x, sliding_window_shapes=(c, w, w), strides=(c, s, s), baselines=float(self.params["baseline"]),
            target=target, perturbations_per_eval=max(1, int(self.params["batch_size"]) // x.shape[0]),
        )


class _Surrogate(AttributionMethod):
    """Shared parts of LIME and KernelSHAP: grid superpixels, one image at a time."""

    stochastic = True
    needs_grad = False
    defaults = {"n_samples": 200, "cell": 4, "baseline": 0.0, "batch_size": 100}

    @abstractmethod
    def _captum(self):
        """The Captum surrogate-model attribution object for ``self.model``."""

    def _attribute(self, x, target):
        algo = self._captum()
        mask = grid_segments(x.shape[1:], int(self.params["cell"]), device=x.device)
        out = []
        for i in range(x.shape[0]):
            out.append(algo.attribute(
                x[i: i + 1], baselines=float(self.params["baseline"]), target=int(target[i]), feature_mask=mask,
                n_samples=int(self.params["n_samples"]), perturbations_per_eval=int(self.params["batch_size"]),
            ))
        return torch.cat(out)


class LIME(_Surrogate):
    """LIME (Ribeiro et al.) on ``cell``-pixel square superpixels: a weighted ridge
    regression (penalty ``ridge``; 0 for least squares) of the target logit over
    ``n_samples`` random on/off patterns (off = ``baseline``); each pixel gets its
    superpixel's coefficient."""

    name = "lime"
    defaults = {**_Surrogate.defaults, "ridge": 1.0}

    def _captum(self):
        from captum._utils.models.linear_model import (
            SkLearnLinearRegression,
            SkLearnRidge,
        )
        from captum.attr import Lime

        alpha = float(self.params["ridge"])
        surrogate = SkLearnRidge(alpha=alpha) if alpha > 0 else SkLearnLinearRegression()
        return Lime(self.model, interpretable_model=surrogate)


class KernelSHAP(_Surrogate):
    """KernelSHAP (Lundberg and Lee) on ``cell``-pixel square superpixels, ``n_samples``
    coalitions, absent superpixels set to ``baseline``."""

    name = "kernel_shap"

    def _captum(self):
        from captum.attr import KernelShap

        return KernelShap(self.model)


class GradientSHAP(AttributionMethod):
    """GradientSHAP (Lundberg and Lee): expected gradients times (input - baseline) over
    ``n_samples`` points between the input (plus Gaussian noise ``noise``) and baselines
    drawn from ``n_baselines`` images: black and uniform noise in [0, 1]."""

    name = "gradient_shap"
    stochastic = True
    defaults = {"n_samples": 16, "noise": 0.0, "n_baselines": 8}

    def _attribute(self, x, target):
        from captum.attr import GradientShap

        nb = max(1, int(self.params["n_baselines"]))
        baselines = torch.rand((nb, *x.shape[1:]), device=x.device, dtype=x.dtype)
        baselines[0] = 0.0
        return GradientShap(self.model).attribute(
            x, baselines=baselines, n_samples=int(self.params["n_samples"]), stdevs=float(self.params["noise"]),
            target=target,
        )


# ----------------------------------------------------------------------------- the registry

METHODS: dict[str, type[AttributionMethod]] = {}


def _function_method(name: str, fn: Callable[..., torch.Tensor]) -> type[AttributionMethod]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if len(params) < 3:
        raise DebuggableError(
            f"method {name!r}: a function method must take (model, images, target, **settings); got {sig}."
        )
    defaults = {p.name: p.default for p in params[3:]
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty}

    class _Fn(AttributionMethod):
        def _attribute(self, x, target):
            return fn(self.model, x, target, **self.params)

    _Fn.name = name
    _Fn.defaults = defaults
    _Fn.__name__ = _Fn.__qualname__ = f"FunctionMethod_{name}"
    _Fn.__doc__ = fn.__doc__
    return _Fn


def register_method(name: str, method: type[AttributionMethod] | Callable[..., torch.Tensor] | None = None, *,
                    modifies_backprop: bool = False, overwrite: bool = False):
    """Add an attribution method under ``name`` (usable as a decorator).

    Args:
        name: the registry name (lower case letters, digits and underscores).
        method: an :class:`AttributionMethod` subclass, or a function
            ``fn(model, images, target, **settings) -> (B, C, H, W) tensor`` whose keyword
            settings with defaults become the method's settings. ``target`` arrives as
            a (B,) int64 tensor.
        modifies_backprop: mark a function method as one that changes the backward pass.
        overwrite: replace an existing method of that name.

    Returns:
        The registered class (the function itself when used as a decorator on one).
    """
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch == "_" for ch in name) or name != name.lower():
        raise DebuggableError(f"name: got {name!r}, expected lower-case letters, digits and underscores.")

    def add(obj):
        if name in METHODS and not overwrite:
            raise DebuggableError(f"name: method {name!r} is already registered; pass overwrite=True to replace it.")
        if isinstance(obj, type) and issubclass(obj, AttributionMethod):
            cls = obj
            if cls.name != name:
                cls = type(cls.__name__, (cls,), {"name": name})
        elif callable(obj):
            cls = _function_method(name, obj)
            cls.modifies_backprop = bool(modifies_backprop)
        else:
            raise DebuggableError(
                f"method: got a {type(obj).__name__}, expected an AttributionMethod subclass or a function."
            )
        METHODS[name] = cls
        return obj

    if method is None:
        return add
    add(method)
    return METHODS[name]


def unregister_method(name: str) -> None:
    """Remove a method added with :func:`register_method` (built-ins included)."""
    if name not in METHODS:
        raise DebuggableError(f"name: method {name!r} is not registered; expected one of {list_methods()}.")
    del METHODS[name]


for _cls in (Saliency, InputXGradient, SmoothGrad, IntegratedGradients, GradCAM, GuidedBackprop, GuidedGradCAM,
             Occlusion, LIME, KernelSHAP, GradientSHAP):
    register_method(_cls.name, _cls)

#: the built-in methods, in the order tables list them
BUILTIN_METHODS: tuple[str, ...] = tuple(METHODS)


#: packages can add methods for run.toml and the CLI through this entry-point group
ENTRY_POINT_GROUP = "debuggable.attribution_methods"
_entry_points_loaded = False


def _load_entry_points() -> None:
    """Register the methods other installed packages declare under :data:`ENTRY_POINT_GROUP`
    (``name = "package.module:function_or_class"``), once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in METHODS:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin names itself
            raise DebuggableError(
                f"attribution method plugin {ep.name!r} ({ep.value}) failed to import: {exc}; expected an importable "
                f"function or AttributionMethod class."
            ) from None
        register_method(ep.name, obj)


def list_methods() -> list[str]:
    """Registered method names, built-ins first in their table order (then methods added
    with :func:`register_method` or through the ``debuggable.attribution_methods``
    entry points)."""
    _load_entry_points()
    return list(METHODS)


def get_method(name: str, model: nn.Module, **params: Any) -> AttributionMethod:
    """The method registered as ``name``, bound to ``model`` with ``params`` (and ``seed``).

    Raises:
        DebuggableError: for an unknown name or setting.
    """
    if name not in METHODS:
        _load_entry_points()
    if name not in METHODS:
        raise DebuggableError(f"method {name!r} is not registered; expected one of {list_methods()}.")
    return METHODS[name](model, **params)


def attribute(model: nn.Module, method: str | AttributionMethod, images: torch.Tensor, target: TargetLike = None,
              **params: Any) -> torch.Tensor:
    """One-shot form: ``get_method(method, model, **params).attribute(images, target)``."""
    algo = method if isinstance(method, AttributionMethod) else get_method(method, model, **params)
    return algo.attribute(images, target)


def attribute_batched(method: AttributionMethod, images: torch.Tensor, target: TargetLike = None, *,
                      batch_size: int = 64, progress: bool = False, desc: str | None = None) -> torch.Tensor:
    """:meth:`AttributionMethod.attribute` over ``images`` in batches (with a progress bar).

    Returns:
        (N, C, H, W) float32 on ``images.device``.
    """
    images = _check_images(images)
    n = images.shape[0]
    if target is not None and not isinstance(target, (int, np.integer)):
        target = torch.as_tensor(np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target))
        if target.ndim != 1 or target.shape[0] != n:
            raise DebuggableError(f"target: got shape {tuple(target.shape)}, expected {n} class indices (one per image).")
    bar = None
    if progress and n > batch_size:  # one batch needs no bar (and would flood a log file)
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=desc or method.name, unit="img", leave=False)
    out = []
    try:
        for lo in range(0, n, batch_size):
            t = target if target is None or isinstance(target, (int, np.integer)) else target[lo: lo + batch_size]
            out.append(method.attribute(images[lo: lo + batch_size], t))
            if bar is not None:
                bar.update(min(batch_size, n - lo))
    finally:
        if bar is not None:
            bar.close()
    return torch.cat(out)
