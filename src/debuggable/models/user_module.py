"""A user's own network as a backbone: a Python factory, or an exported program.

Two ways to bring a model that the toolkit has never seen:

* ``kind = "module"``: ``factory = "package.module:callable"`` is imported (from a
  directory given as ``root``, e.g. the run directory, or from the installed
  environment) and called with ``params`` to build the ``nn.Module``; ``weights`` (a
  state dict: ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``, or
  ``.safetensors``) are loaded strictly; ``layer`` names the sub-module whose output
  are the features (:class:`~debuggable.models.ModuleBackbone`).
* ``kind = "exported"``: ``path`` is a ``torch.export`` program (``.pt2``, from
  ``torch.export.save``) or a TorchScript file (``torch.jit.save``); no Python class is
  needed. A ``.pt2`` program is unflattened (``torch.export.unflatten``) so that its
  sub-modules run as modules and ``layer`` is hooked as for a factory model.
  TorchScript modules cannot be hooked, so there ``layer`` names a *method* of the
  scripted module (``@torch.jit.export def forward_features(self, x)``) that returns
  the features; the logits come from ``forward``.

Either way the images (B, C, H, W) in [0, 1] are preprocessed differentiably
(:class:`~debuggable.models.ImagePreprocess`): grayscale repeated to ``len(mean)``
channels, resized to ``image_size``, then ``(x - mean) / std``. Without ``mean``/``std``
the model gets the [0, 1] pixels as they are.

Every failure raises a :class:`~debuggable.errors.DebuggableError` whose sentence
starts with the setting (``factory:``, ``weights:``, ``layer:``, ``path:``,
``image_size:``), e.g. ``"weights: the weights do not fit Net (missing ['fc.bias'], ...)"``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import Backbone, BackboneOutput
from debuggable.models.hooks import ModuleBackbone, layer_names
from debuggable.models.preprocess import ImagePreprocess
from debuggable.run.config import USER_MODEL_KINDS as USER_KINDS

# torch's own unpickling of exported programs warns about its internal pytree API; the
# warning is torch's business and would only clutter a user's log.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")


def resolve_path(value: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """``value`` with ``~`` expanded, relative to ``root`` (the run directory) when not absolute."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return path


# -- factories ----------------------------------------------------------------
@contextlib.contextmanager
def _importable_from(root: Path | None) -> Iterator[None]:
    """``root`` first on ``sys.path`` for the import, and no ``__pycache__`` written
    there (validation must not write into the run directory)."""
    saved_path, saved_flag = list(sys.path), sys.dont_write_bytecode
    if root is not None:
        sys.path.insert(0, str(root))
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_flag


def _forget_shadowed(module_name: str, root: Path | None) -> None:
    """Drop an already imported package of the same name from another directory when
    ``root`` holds one (two runs with a ``mynet`` package each get their own)."""
    top = module_name.split(".")[0]
    if root is None or top not in sys.modules:
        return
    here = root / top
    if not (here.is_dir() or here.with_suffix(".py").is_file()):
        return
    cached = getattr(sys.modules[top], "__file__", None) or ""
    try:
        inside = Path(cached).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        inside = False
    if not inside:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def import_factory(spec: str, *, root: str | os.PathLike | None = None) -> Callable[..., Any]:
    """The callable named by ``spec`` = ``"package.module:callable"`` (``callable`` may be dotted, e.g. ``Net.build``).

    The module is imported with ``root`` (when given) first on ``sys.path``, so a
    package next to the run's ``run.toml`` is found before an installed one.

    Raises:
        DebuggableError: ``factory: ...`` for a malformed spec, a module that cannot be
            imported (or raises while importing), a missing attribute or one that is not callable.
    """
    if not isinstance(spec, str) or not _FACTORY.match(spec):
        raise DebuggableError(f"factory: got {spec!r}, expected 'package.module:callable' (e.g. 'mynet.models:build').")
    module_name, attr = spec.split(":")
    root_path = Path(root) if root is not None else None
    with _importable_from(root_path):
        _forget_shadowed(module_name, root_path)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = getattr(exc, "name", None) or module_name
            if module_name != missing and not module_name.startswith(missing + "."):
                raise DebuggableError(
                    f"factory: importing module {module_name!r} of {spec!r} failed: it needs {missing!r}, which is not "
                    "installed; expected its dependencies in this environment."
                ) from None
            where = f" in {str(root_path)!r} or" if root_path is not None else ""
            raise DebuggableError(
                f"factory: module {module_name!r} of {spec!r} cannot be imported (no module named {missing!r}"
                f"{where} in the installed environment); expected a module next to run.toml or installed."
            ) from None
        except Exception as exc:  # the user's module raised while importing
            raise DebuggableError(
                f"factory: importing module {module_name!r} of {spec!r} raised {type(exc).__name__}: {_first_line(exc)}."
            ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise DebuggableError(
                f"factory: module {module_name!r} has no {attr!r}; expected one of its callables {names[:12]}."
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise DebuggableError(f"factory: {spec!r} is a {type(obj).__name__}, expected a callable that builds an nn.Module.")
    return obj


def build_module(factory: Callable[..., Any], params: Mapping[str, Any], *, spec: str = "factory") -> nn.Module:
    """``factory(**params)``, checked to be an ``nn.Module``.

    Raises:
        DebuggableError: ``params: ...`` when the factory does not take the given
            settings, ``factory: ...`` when it raises or returns something else.
    """
    params = dict(params)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(**params)
        except TypeError as exc:
            accepted = [n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            raise DebuggableError(
                f"params: {spec!r} cannot be called with {sorted(params)} ({_first_line(exc)}); expected settings among {accepted}."
            ) from None
    try:
        model = factory(**params)
    except Exception as exc:
        raise DebuggableError(f"factory: {spec}(**params) raised {type(exc).__name__}: {_first_line(exc)}.") from None
    if not isinstance(model, nn.Module):
        raise DebuggableError(f"factory: {spec}(**params) returned a {type(model).__name__}, expected a torch.nn.Module.")
    return model


def load_weights(model: nn.Module, weights: str | os.PathLike, *, root: str | os.PathLike | None = None) -> None:
    """Load a state dict file into ``model`` strictly (every key present, no extra one, same shapes).

    ``.safetensors`` files, or torch files read with ``torch.load(weights_only=True)``
    (a state dict, or a checkpoint dict with a ``'model'``/``'state_dict'`` entry; a
    ``module.`` prefix from ``DataParallel`` is removed).

    Raises:
        DebuggableError: ``weights: ...`` for a missing or unreadable file, one holding
            pickled objects, or keys/shapes that do not fit the model.
    """
    from debuggable.models.hub import extract_state_dict, load_state_dict_strict, read_checkpoint

    path = resolve_path(weights, root)
    if not path.is_file():
        raise DebuggableError(f"weights: {str(path)!r} does not exist; expected a state-dict file (.pt, .pth or .safetensors).")
    state = extract_state_dict(read_checkpoint(path, what="weights"), what="weights")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its keys missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if reshaped:
            k = reshaped[0]
            parts.append(f"{len(reshaped)} of another shape (e.g. {k!r}: {tuple(state[k].shape)} in the file, "
                         f"{tuple(own[k].shape)} in the model)")
        raise DebuggableError(
            f"weights: {str(path)!r} does not fit {type(model).__name__} built from these params: {', '.join(parts)}; "
            "expected a state dict saved from this architecture with the same params."
        )
    load_state_dict_strict(model, state, what="weights")


# -- exported programs ----------------------------------------------------------
def exported_format(path: Path) -> str:
    """``"torch.export"`` or ``"torchscript"``, read from the archive's entries (not the suffix)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        raise DebuggableError(
            f"path: {str(path)!r} is not a torch.export (.pt2) or TorchScript archive; expected a file written by "
            "torch.export.save or torch.jit.save."
        ) from None
    if any(n.endswith("data.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    if any("/models/" in n or n.endswith("archive_format") or "/data/weights/" in n for n in names):
        return "torch.export"
    raise DebuggableError(
        f"path: {str(path)!r} is a zip archive but neither a torch.export program nor a TorchScript module; "
        "expected a file written by torch.export.save or torch.jit.save."
    )


def load_exported(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> tuple[nn.Module, str]:
    """Load an exported model on the CPU.

    Returns:
        ``(module, format)``: for ``"torch.export"`` the unflattened program (its
        sub-modules run as modules, so forward hooks work), for ``"torchscript"`` the
        ``torch.jit.ScriptModule``.
    """
    file = resolve_path(path, root)
    if not file.is_file():
        raise DebuggableError(f"path: {str(file)!r} does not exist; expected a torch.export (.pt2) or TorchScript file.")
    fmt = exported_format(file)
    try:
        if fmt == "torchscript":
            return torch.jit.load(str(file), map_location="cpu"), fmt
        program = torch.export.load(str(file))
        return torch.export.unflatten(program), fmt
    except Exception as exc:
        raise DebuggableError(f"path: {str(file)!r} could not be loaded as {fmt} ({type(exc).__name__}: {_first_line(exc)}).") from None


class ScriptedBackbone(Backbone):
    """A TorchScript module whose method ``layer`` returns the features.

    Args:
        module: a ``torch.jit.ScriptModule``; ``module(x)`` gives the logits.
        layer: the name of a scripted method (``@torch.jit.export``) taking the
            preprocessed batch and returning (B, D) features, (B, N, D) tokens or a
            (B, C, h, w) map (averaged like :class:`ModuleBackbone`'s ``pool="avg"``).
        preprocess: the images' preprocessing module.
        name: a short description for reports.
    """

    modality = "image"

    def __init__(self, module: nn.Module, layer: str, *, preprocess: nn.Module, name: str) -> None:
        super().__init__()
        method = getattr(module, layer, None) if isinstance(layer, str) and layer else None
        if method is None or isinstance(method, nn.Module) or not callable(method):
            methods = sorted(n for n in dir(module) if not n.startswith("_") and isinstance(getattr(module, n, None), torch._C.ScriptMethod))
            if isinstance(method, nn.Module):
                raise DebuggableError(
                    f"layer: {layer!r} is a sub-module of the TorchScript file, and TorchScript modules cannot be hooked; "
                    f"expected the name of one of its methods that returns the features ({methods}), or export the "
                    "model with torch.export (.pt2) instead."
                )
            raise DebuggableError(f"layer: the TorchScript module has no method {layer!r}; expected one of its methods {methods}.")
        self.model = module
        self.layer = layer
        self.preprocess = preprocess
        self.name = name
        self.feature_dim = None  # type: ignore[assignment]
        self.num_classes = None
        self.has_spatial = False

    def prepare(self, batch: Any) -> torch.Tensor:
        return self.preprocess(batch)

    def forward_prepared(self, inputs: torch.Tensor) -> BackboneOutput:
        act = getattr(self.model, self.layer)(inputs)
        if isinstance(act, (tuple, list)):
            act = act[0]
        if not isinstance(act, torch.Tensor) or act.ndim < 2:
            shape = tuple(act.shape) if isinstance(act, torch.Tensor) else type(act).__name__
            raise DebuggableError(f"layer: method {self.layer!r} returned {shape}, expected a batch of shape (B, D), (B, N, D) or (B, C, h, w).")
        spatial = act if act.ndim == 4 else None
        features = act if act.ndim == 2 else act.mean(dim=1) if act.ndim == 3 else act.mean(dim=tuple(range(2, act.ndim)))
        out = self.model(inputs)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        logits = logits if isinstance(logits, torch.Tensor) and logits.ndim == 2 else None
        self.feature_dim = int(features.shape[1])
        self.has_spatial = spatial is not None
        self.num_classes = None if logits is None else int(logits.shape[1])
        return BackboneOutput(features=features, spatial=spatial, logits=logits)

    def describe(self) -> dict[str, Any]:
        info = super().describe() | {"model": "torchscript", "layer": self.layer}
        info["feature_dim"] = None if self.feature_dim is None else int(self.feature_dim)
        return info


# -- the backbone -----------------------------------------------------------------
def user_preprocess(*, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    image_size: int | Sequence[int] | None = None) -> ImagePreprocess:
    """The images' preprocessing: ``len(mean)`` channels (else ``channels``), resized to
    ``image_size`` (``None``: as they are), normalised by ``mean``/``std`` (default 0 and 1).

    Raises:
        DebuggableError: ``mean/std: ...`` or ``image_size: ...`` for unusable values.
    """
    if (mean is None) != (std is None):
        raise DebuggableError(f"mean/std: got only {'mean' if std is None else 'std'}; expected both or neither.")
    mean = [0.0] if mean is None else [float(v) for v in mean]
    std = [1.0] if std is None else [float(v) for v in std]
    n = max(len(mean), len(std))
    if len(mean) not in (1, n) or len(std) not in (1, n) or n not in (1, 3, channels):
        raise DebuggableError(f"mean/std: got {len(mean)} and {len(std)} values, expected 1 or one per channel (1 or 3).")
    if image_size is not None:
        sizes = [image_size] if isinstance(image_size, int) else list(image_size)
        if not sizes or len(sizes) > 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise DebuggableError(f"image_size: got {image_size!r}, expected a positive integer or [height, width].")
    target_channels = n if n > 1 else channels
    try:
        return ImagePreprocess(channels=target_channels, size=image_size, mean=mean, std=std)
    except DebuggableError as exc:
        raise DebuggableError(f"mean/std: {exc}") from None


def user_backbone(
    kind: str,
    *,
    channels: int,
    factory: str | None = None,
    params: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    layer: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: int | Sequence[int] | None = None,
    root: str | os.PathLike | None = None,
    pool: str = "avg",
    input_shape: Sequence[int] | None = None,
) -> Backbone:
    """A user's model as a :class:`Backbone` in eval mode (see the module docstring).

    Args:
        kind: ``"module"`` or ``"exported"``.
        channels: channels of the data's images (used when ``mean`` has one value).
        factory, params, weights: ``kind = "module"``: the callable spec, its keyword
            arguments and the state-dict file (``None``: the factory's own initialisation).
        path: ``kind = "exported"``: the ``.pt2`` or TorchScript file.
        layer: the features' layer (a dotted sub-module name; a method name for TorchScript).
        mean, std, image_size: the preprocessing.
        root: where relative paths and the factory's package are looked up first.
        pool: ``"avg"`` or ``"flatten"`` for spatial/token outputs (hooked layers).
        input_shape: one raw image's (C, H, W); when given, a zero image is run once
            so that ``feature_dim``, ``num_classes`` and ``has_spatial`` are known at once.

    Raises:
        DebuggableError: naming the first unusable setting.
    """
    if kind not in USER_KINDS:
        raise DebuggableError(f"kind: got {kind!r}, expected one of {list(USER_KINDS)}.")
    if not isinstance(layer, str) or not layer:
        raise DebuggableError(f"layer: got {layer!r}, expected the dotted name of the sub-module whose output are the features.")
    preprocess = user_preprocess(channels=channels, mean=mean, std=std, image_size=image_size)
    if kind == "module":
        if factory is None:
            raise DebuggableError("factory: kind 'module' needs factory = 'package.module:callable'; got none.")
        model = build_module(import_factory(factory, root=root), params or {}, spec=factory)
        if weights is not None:
            load_weights(model, weights, root=root)
        name = f"{factory}:{layer}"
    else:
        if path is None:
            raise DebuggableError("path: kind 'exported' needs path = a torch.export (.pt2) or TorchScript file; got none.")
        if factory is not None or weights is not None:
            raise DebuggableError("factory/weights: kind 'exported' takes neither (the file holds the program and its weights); remove them.")
        model, fmt = load_exported(path, root=root)
        if fmt == "torchscript":
            scripted = ScriptedBackbone(model.eval(), layer, preprocess=preprocess,
                                        name=f"torchscript:{Path(str(path)).name}:{layer}").eval()
            if input_shape is not None:
                check_fits_data(scripted, torch.zeros((1, *input_shape)))
            return scripted
        name = f"exported:{Path(str(path)).name}:{layer}"
    # A wrong layer name: ModuleBackbone's message lists the closest matches and the valid names.
    backbone = ModuleBackbone(model.eval(), layer, preprocess=preprocess, pool=pool, name=name).eval()
    if input_shape is not None:
        check_fits_data(backbone, torch.zeros((1, *input_shape)))
    return backbone


def check_fits_data(backbone: Backbone, images: torch.Tensor, *, num_classes: int | None = None) -> BackboneOutput:
    """Run ``backbone`` on a few real images (eval mode, no gradients) to prove they fit.

    Returns:
        The output on ``images``.

    Raises:
        DebuggableError: ``image_size: ...`` when the network cannot take the
            preprocessed images (naming their shape and the network's complaint), or
            ``layer: ...`` when the layer gives no usable output.
    """
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()
    try:
        prepared = backbone.prepare(images)
        with torch.no_grad():
            out = backbone.forward_prepared(prepared)
    except DebuggableError:
        raise
    except Exception as exc:
        shape = "x".join(str(s) for s in tuple(prepared.shape)[1:]) if "prepared" in locals() else "?"
        raise DebuggableError(
            f"image_size: the model cannot take the data's images as preprocessed ({shape}: "
            f"{type(exc).__name__}: {_first_line(exc)}); expected image_size/mean/std that give the input it was built for."
        ) from None
    finally:
        for m, mode in modes:
            m.training = mode
    return out


__all__ = [
    "USER_KINDS",
    "ScriptedBackbone",
    "build_module",
    "check_fits_data",
    "exported_format",
    "import_factory",
    "layer_names",
    "load_exported",
    "load_weights",
    "resolve_path",
    "user_backbone",
    "user_preprocess",
]
