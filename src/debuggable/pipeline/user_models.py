"""The pipeline's side of a user's own model (``[model] kind = "module"`` or ``"exported"``)
and of the fine-tuned text model (``kind = "minilm"``, ``fine_tune = true``).

* :func:`check_model_section`: every setting of a ``[model]``/``[robust_model]`` table
  checked before anything is written: the factory imported and called, the weights
  loaded strictly, the layer found, and the network run on a few of the run's own
  images, so that a wrong factory, a missing file, mismatched keys, a wrong layer or
  an input shape that does not fit the data each fail with one sentence naming the
  setting (``model.weights: ...``).
* :func:`user_model_backbone`: the backbone the stages use.
* :func:`model_template`: the commented ``run.toml`` of ``debuggable init --model module``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.pipeline.roles import is_user_model, section_name
from debuggable.run import ModelConfig, RunConfig, RunDirectory
from debuggable.run.config import USER_MODEL_KINDS as USER_KINDS

if TYPE_CHECKING:
    from debuggable.models import Backbone

#: settings of a [model] table and the kinds that use them
_USED_BY = {
    "factory": ("module",),
    "weights": ("module",),
    "path": ("exported",),
    "layer": USER_KINDS,
    "mean": USER_KINDS,
    "std": USER_KINDS,
    "image_size": USER_KINDS,
    "fine_tune": ("minilm",),
}


def _prefixed(section: str, exc: DebuggableError) -> DebuggableError:
    return DebuggableError(f"{section}.{exc}")


def check_unused_settings(role: str, model: ModelConfig) -> None:
    """Refuse a setting that the model's kind ignores (e.g. ``factory`` with ``kind = "small_cnn"``)."""
    section = section_name(role)
    for key, kinds in _USED_BY.items():
        value = getattr(model, key)
        if value not in (None, False) and model.kind not in kinds:
            raise DebuggableError(
                f"{section}.{key}: is a setting of kind {' or '.join(repr(k) for k in kinds)}, not of kind "
                f"{model.kind!r}; remove it or change {section}.kind."
            )


def _backbone(model: ModelConfig, root: Path | None, image_shape: tuple[int, ...],
              probe: bool = True) -> Backbone:
    from debuggable.models.user_module import user_backbone

    return user_backbone(model.kind, channels=int(image_shape[0]), factory=model.factory, params=model.params,
                         weights=model.weights, path=model.path, layer=model.layer, mean=model.mean, std=model.std,
                         image_size=model.image_size, root=root, input_shape=tuple(image_shape) if probe else None)


def check_model_section(role: str, model: ModelConfig, config: RunConfig, root: Path | None) -> None:
    """Validate a user model's table by building it and running it on the run's images.

    Args:
        role: ``inspected`` or ``robust``.
        model: its table.
        config: the whole config (for the data).
        root: the run directory (relative paths, the factory's package).

    Raises:
        DebuggableError: ``<section>.<setting>: ...``, one sentence.
    """
    section = section_name(role)
    if model.kind == "exported" and model.params:
        raise DebuggableError(f"{section}.params: kind 'exported' takes no params (got {sorted(model.params)}); "
                              "the file holds the whole program.")
    from debuggable.pipeline.data_stage import build_data

    splits = build_data(config)
    if splits.modality != "image":
        raise DebuggableError(
            f"{section}.kind: {model.kind!r} takes image data but {config.data.name!r} holds {splits.modality} data; "
            "for sentences use kind 'minilm' (fine_tune = true) or 'hf_text'."
        )
    try:
        backbone = _backbone(model, root, tuple(splits.train.image_shape), probe=False)
        images, _ = splits.train.batch(np.arange(min(2, len(splits.train))))
        from debuggable.models.user_module import check_fits_data

        out = check_fits_data(backbone, images)
    except DebuggableError as exc:
        raise _prefixed(section, exc) from None
    if out.features.ndim != 2 or out.features.shape[1] < 1:
        raise DebuggableError(f"{section}.layer: {model.layer!r} gives features of shape {tuple(out.features.shape)}; "
                              "expected (B, D).")
    tests = config.explain_tests
    if role == "inspected" and tests is not None and tests.enabled:
        k = len(splits.class_names)
        if out.logits is None:
            raise DebuggableError(
                "explain_tests.enabled: the attribution methods explain the model's (B, K) logits, and this model's "
                "output is not one; expected a classifier's output, or explain_tests.enabled = false.")
        if tests.retrain == "full" and model.kind == "module" and out.logits.shape[1] != k:
            raise DebuggableError(
                f"explain_tests.retrain: 'full' retrains {model.factory} on the data's {k} classes, but it gives "
                f"{out.logits.shape[1]} logits; expected params that build a {k}-class network, or retrain = 'auto'/'head'.")


def data_image_shape(run: RunDirectory) -> tuple[int, ...]:
    """One image's (C, H, W) in the run, from the data stage's summary (else from the data)."""
    summary = run.summary("data")
    if summary and summary.get("image_shape"):
        return tuple(int(v) for v in summary["image_shape"])
    from debuggable.pipeline.data_stage import build_data

    return tuple(int(v) for v in build_data(run.config).train.image_shape)


def user_model_backbone(run: RunDirectory, role: str, model: ModelConfig) -> Backbone:
    """The backbone of a user model of ``run`` (validated settings assumed), its output
    shapes known (one zero image of the data's shape is run through it)."""
    try:
        return _backbone(model, run.path, data_image_shape(run))
    except DebuggableError as exc:
        raise _prefixed(section_name(role), exc) from None


# ----------------------------------------------------------------------------- staleness

_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, cached per (path, size, mtime)."""
    import hashlib

    try:
        st = path.stat()
    except OSError:
        return "missing"
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def model_files_digest(run: RunDirectory, sections: tuple[str, ...]) -> str | None:
    """A digest of the user models' weight files among ``sections`` (``None`` when there are none).

    A stage's config hash covers the settings, not the files they name: retraining a
    user's model into the same ``weights.pt`` must still make the stages that read it
    stale.
    """
    parts = []
    for role, key in (("inspected", "model"), ("robust", "robust_model")):
        model = getattr(run.config, key, None)
        if key not in sections or model is None or not is_user_model(model):
            continue
        from debuggable.models.user_module import resolve_path

        name = model.weights if model.kind == "module" else model.path
        if name is not None:
            parts.append(f"{role}:{_file_digest(resolve_path(name, run.path))}")
    return ";".join(parts) or None


# ----------------------------------------------------------------------------- the init template

_DATA_TEMPLATE = '''# debuggable run configuration for your own model: edit the marked settings, then
#   debuggable run {out}
# Every section left out ([extract], [evaluate], [interpret], [failures], [debug],
# [report], ...) keeps its defaults; `debuggable init {out}-full` writes them all out.
seed = 0

[data]
# A folder with one sub-folder of images per class (train/ val/ test/ sub-folders, or
# one folder split by val_fraction/test_fraction). Other kinds: "arrays" (.npz),
# "text_file" (CSV/JSONL sentences); built-in: "animal_mnist", "digits", "vader_movies".
name = "image_folder"

[data.params]
root = "images"                 # EDIT: absolute, or relative to where you run debuggable
image_size = 64                 # EDIT: every image is resized to this square size on loading
grayscale = false               # true reads 1-channel luminance, false 3-channel RGB
val_fraction = 0.1
test_fraction = 0.2
seed = 0
'''

_MODULE_TEMPLATE = '''
[model]
# Your network, built by a Python callable: "package.module:callable". The package is
# imported from this run directory first, then from the installed environment.
kind = "module"
factory = "mynet.model:build"   # EDIT
weights = "weights.pt"          # EDIT: a state_dict (torch.save(model.state_dict(), ...)) or .safetensors
layer = "features"              # EDIT: the sub-module whose output are the deep features (its
                                #       4-D output is averaged over positions; 2-D used as it is)
# Input preprocessing: images arrive as float RGB or grayscale in [0, 1], (B, C, H, W).
mean = [0.485, 0.456, 0.406]    # EDIT: the normalisation the model was trained with
std = [0.229, 0.224, 0.225]     #       (one value, or one per channel; 3 values repeat grayscale to RGB)
# image_size = 224              # resize the images before the model (default: as loaded)

[model.params]                  # keyword arguments of the factory
num_classes = 10                # EDIT

[glm]
# The elastic-net path the sparse decision layer is chosen from. Its sparse end is what
# matters: 40 lambdas down to 1% of lambda_max (the defaults, 100 down to 0.1%, also
# solve the nearly unregularised end, which takes the longest).
n_lambdas = 40
lambda_min_ratio = 0.01

[explain_tests]
# The attribution-method tests. Model randomisation and OOD run on your model as it is;
# the data-contamination tests (spurious patch, mislabels) train models here: your
# factory with [explain_tests.train] ("full"), or only a new linear head on your model's
# frozen features ("head"; what "auto" does when no factory fits, e.g. exported models).
retrain = "auto"

[explain_tests.train]
epochs = 3
batch_size = 64
lr = 0.003
optimizer = "adam"
'''

_EXPORTED_TEMPLATE = '''
[model]
# Your network as a file, no Python class needed: a torch.export program
#   torch.export.save(torch.export.export(model.eval(), (example,)), "model.pt2")
# (export with a dynamic batch dimension), or a TorchScript file (torch.jit.save).
kind = "exported"
path = "model.pt2"              # EDIT: relative to this file's directory, or absolute
layer = "features"              # EDIT: the sub-module whose output are the deep features; for
                                #       TorchScript the name of a @torch.jit.export method returning them
mean = [0.485, 0.456, 0.406]    # EDIT: the normalisation the model was trained with
std = [0.229, 0.224, 0.225]
# image_size = 224

[glm]
n_lambdas = 40                  # the sparse end of the path (see `debuggable init --model module`)
lambda_min_ratio = 0.01

[explain_tests]
# With no Python class to retrain, the data-contamination tests retrain only a linear
# head on the program's frozen features ("head").
retrain = "auto"
'''


def model_template(kind: str, out: str) -> str:
    """The commented ``run.toml`` that ``debuggable init --model <kind>`` writes."""
    if kind not in USER_KINDS:
        raise DebuggableError(f"--model: got {kind!r}, expected one of {list(USER_KINDS)}.")
    return _DATA_TEMPLATE.format(out=out) + (_MODULE_TEMPLATE if kind == "module" else _EXPORTED_TEMPLATE)


def describe_model(model: ModelConfig) -> dict[str, Any]:
    """A JSON summary of a user model's settings (for the train stage's summary)."""
    keys = ("factory", "weights", "layer", "mean", "std", "image_size") if model.kind == "module" else (
        "path", "layer", "mean", "std", "image_size")
    return {"kind": model.kind, "trained": False, **{k: getattr(model, k) for k in keys if getattr(model, k) is not None}}
