"""Training and evaluating classifiers, standard or adversarial (PGD, Madry et al. 2018).

Datasets are anything with ``__len__`` and ``batch(indices) -> (x, y)`` (the
:class:`debuggable.data.Dataset` interface): ``x`` a (B, C, H, W) float tensor in
[0, 1] (or whatever the model eats), ``y`` (B,) int64 labels. Models map ``x`` to
(B, K) logits (a ``Backbone``'s :class:`BackboneOutput` works too).

Adversarial training replaces every training batch by its PGD adversarial examples
(the inner maximisation runs in eval mode, the outer minimisation in train mode).
With the same seed, device and data, training on CPU is deterministic: shuffling,
attack random starts and dropout all draw from generators seeded from ``seed``, and
the global random state is left as it was.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.attacks import logits_of, pgd_attack

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a core dependency
    tqdm = None  # type: ignore[assignment]


def _check_device(value: str) -> str:
    try:
        torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{value!r} is not a torch device such as 'cpu', 'cuda' or 'cuda:1'") from None
    return value


class AdversarialConfig(BaseModel):
    """The PGD attack used for adversarial training or robust evaluation.

    Attributes:
        norm: ``"l2"`` or ``"linf"``.
        eps: the budget in pixel units (images in [0, 1]), > 0.
        step_size: one step's length in pixel units; default ``2.5 * eps / steps``
            (Madry et al.).
        steps: PGD iterations, >= 1.
        random_start: start each attack from a random point in the ball.
    """

    model_config = ConfigDict(extra="forbid")

    norm: Literal["l2", "linf"] = "l2"
    eps: float = Field(..., gt=0)
    step_size: float | None = Field(None, gt=0)
    steps: int = Field(7, ge=1)
    random_start: bool = True

    @property
    def resolved_step_size(self) -> float:
        """``step_size``, or ``2.5 * eps / steps`` when it is unset."""
        return float(self.step_size) if self.step_size is not None else 2.5 * self.eps / self.steps

    def attack_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`debuggable.models.pgd_attack`."""
        return {
            "norm": self.norm,
            "eps": float(self.eps),
            "step_size": self.resolved_step_size,
            "steps": int(self.steps),
            "random_start": bool(self.random_start),
        }


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`train_classifier`.

    Attributes:
        epochs: passes over the training set, >= 1.
        batch_size: examples per step, >= 1.
        lr: the peak learning rate, > 0.
        weight_decay: L2 penalty (decoupled for Adam: AdamW), >= 0.
        optimizer: ``"adam"`` (AdamW) or ``"sgd"`` (with ``momentum``, Nesterov).
        momentum: SGD momentum in [0, 1).
        lr_schedule: ``"constant"``, ``"cosine"`` (per step, to 0 at the end) or
            ``"step"`` (times ``lr_gamma`` every ``lr_step_epochs`` epochs).
        lr_step_epochs: epochs between decays for ``"step"``, >= 1.
        lr_gamma: the decay factor for ``"step"``, in (0, 1].
        seed: seeds shuffling, attack random starts and dropout.
        device: a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or
            ``"auto"`` (CUDA when available, else CPU).
        adversarial: the PGD attack to train against (Madry), or ``None`` for
            standard training.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["sgd", "adam"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"
    lr_step_epochs: int = Field(10, ge=1)
    lr_gamma: float = Field(0.1, gt=0, le=1)
    seed: int = 0
    device: str = "auto"
    adversarial: AdversarialConfig | None = None

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str) -> str:
        return value if value == "auto" else _check_device(value)

    def resolved_device(self) -> torch.device:
        """The torch device to train on (``"auto"`` resolved)."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def _config_error(exc: ValidationError, what: str) -> DebuggableError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    value = err.get("input")
    shown = "" if isinstance(value, Mapping) else f" = {value!r}"
    return DebuggableError(f"{what}: setting {where!r}{shown} is invalid: {err['msg']}.")


def make_train_config(config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """A :class:`TrainConfig` from a config, a dict (e.g. a ``run.toml`` table) or ``None`` (defaults).

    Raises:
        DebuggableError: naming the first invalid setting.
    """
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    if not isinstance(config, Mapping):
        raise DebuggableError(f"config: got a {type(config).__name__}, expected a TrainConfig, a dict or None.")
    try:
        return TrainConfig.model_validate(dict(config))
    except ValidationError as exc:
        raise _config_error(exc, "train config") from None


def make_attack_config(attack: AdversarialConfig | Mapping[str, Any]) -> AdversarialConfig:
    """An :class:`AdversarialConfig` from itself or a dict; :class:`DebuggableError` if invalid."""
    if isinstance(attack, AdversarialConfig):
        return attack
    if not isinstance(attack, Mapping):
        raise DebuggableError(
            f"attack: got a {type(attack).__name__}, expected an AdversarialConfig, a dict or a callable."
        )
    try:
        return AdversarialConfig.model_validate(dict(attack))
    except ValidationError as exc:
        raise _config_error(exc, "attack config") from None


class EpochStats(BaseModel):
    """One epoch of training (a pydantic model: ``model_dump()`` gives plain JSON).

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean cross-entropy over the epoch's (adversarial, if enabled) batches.
        train_accuracy: fraction in [0, 1] of those batches' examples classified
            correctly while training (before each step's update).
        val_accuracy: clean accuracy on the validation set after the epoch, or ``None``.
        lr: the learning rate at the epoch's last step.
        seconds: wall-clock time of the epoch (training + validation).
    """

    model_config = ConfigDict(frozen=True)

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    Attributes:
        history: one :class:`EpochStats` per epoch.
        final_val_accuracy: clean validation accuracy after the last epoch, or ``None``.
        wall_time_s: total seconds.
        config: the effective :class:`TrainConfig`.
        device: the device trained on, as a string.
    """

    history: list[EpochStats]
    final_val_accuracy: float | None
    wall_time_s: float
    config: TrainConfig
    device: str = "cpu"

    @property
    def final_train_accuracy(self) -> float:
        """Training accuracy of the last epoch, in [0, 1]."""
        return self.history[-1].train_accuracy

    @property
    def seconds(self) -> float:
        """Same as ``wall_time_s``."""
        return self.wall_time_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for ``model.json`` metrics and manifests)."""
        return {
            "history": [h.model_dump(mode="json") for h in self.history],
            "final_val_accuracy": self.final_val_accuracy,
            "final_train_accuracy": self.final_train_accuracy,
            "wall_time_s": self.wall_time_s,
            "config": self.config.model_dump(mode="json"),
            "device": self.device,
        }


def _check_dataset(ds: Any, name: str) -> int:
    if not hasattr(ds, "batch") or not callable(ds.batch) or not hasattr(ds, "__len__"):
        raise DebuggableError(
            f"{name}: got a {type(ds).__name__}, expected a dataset with __len__ and batch(indices) -> (x, y)."
        )
    n = len(ds)
    if n < 1:
        raise DebuggableError(f"{name}: the dataset is empty; expected at least one example.")
    return n


def _labels(y: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(y).to(device=device, dtype=torch.int64)


def _to_device(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _progress_enabled(progress: bool) -> bool:
    if not progress or tqdm is None:
        return False
    if "ipykernel" in sys.modules:  # notebooks render tqdm.auto widgets without a TTY
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "step":
        return config.lr_gamma ** (step // steps_per_epoch // config.lr_step_epochs)
    total = config.epochs * steps_per_epoch
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise DebuggableError(
            "model: has no trainable parameters (requires_grad is False everywhere); expected at least one."
        )
    if config.optimizer == "adam":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0
    )


def train_classifier(
    model: nn.Module,
    train_ds: Any,
    val_ds: Any = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` with cross-entropy, optionally adversarially (PGD, Madry et al.).

    Args:
        model: an ``nn.Module`` mapping a batch ``x`` to logits (B, K); moved to
            ``config.device`` and left there, in eval mode, when training ends.
        train_ds: training data (``__len__`` and ``batch(indices) -> (x, y)``).
        val_ds: validation data evaluated (clean accuracy) after every epoch, or ``None``.
        config: a :class:`TrainConfig`, a dict of its fields, or ``None`` for defaults.
        progress: show a tqdm bar (only when stderr is a terminal).

    Returns:
        :class:`TrainResult` with per-epoch loss/accuracy history, the final
        validation accuracy (fraction in [0, 1]) and the wall time in seconds.
    """
    config = make_train_config(config)
    if not isinstance(model, nn.Module):
        raise DebuggableError(f"model: got a {type(model).__name__}, expected a torch.nn.Module.")
    n = _check_dataset(train_ds, "train_ds")
    if val_ds is not None:
        _check_dataset(val_ds, "val_ds")
    device = config.resolved_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DebuggableError(
            f"config.device: got {config.device!r}, but CUDA is not available here; expected 'cpu' or 'auto'."
        )
    model.to(device)
    optimizer = _make_optimizer(model, config)
    steps_per_epoch = math.ceil(n / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(config, s, steps_per_epoch))

    shuffle_gen = torch.Generator().manual_seed(config.seed)
    attack_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    attack = config.adversarial.attack_kwargs() if config.adversarial is not None else None
    history: list[EpochStats] = []
    start = time.perf_counter()
    bar = None
    if _progress_enabled(progress):
        bar = tqdm(
            total=config.epochs * steps_per_epoch, desc="adv-train" if attack else "train", unit="batch", leave=False
        )
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed + 2)
        try:
            for epoch in range(1, config.epochs + 1):
                t0 = time.perf_counter()
                perm = torch.randperm(n, generator=shuffle_gen).numpy()
                loss_sum, correct, seen = 0.0, 0, 0
                for lo in range(0, n, config.batch_size):
                    idx = perm[lo : lo + config.batch_size]
                    x, y = train_ds.batch(idx)
                    x, y = _to_device(x, device), _labels(y, device)
                    if attack is not None:
                        if not isinstance(x, torch.Tensor):
                            raise DebuggableError(
                                f"config.adversarial: the training inputs are {type(x).__name__}, expected image tensors for PGD training."
                            )
                        x = pgd_attack(model, x, y, generator=attack_gen, **attack)
                    model.train()
                    logits = logits_of(model, x)
                    loss = F.cross_entropy(logits, y)
                    if not torch.isfinite(loss):
                        raise DebuggableError(
                            f"config.lr: training diverged (loss {float(loss)}) at epoch {epoch} with lr={config.lr}; expected a smaller learning rate."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    b = int(y.shape[0])
                    loss_sum += float(loss.detach()) * b
                    correct += int((logits.detach().argmax(1) == y).sum())
                    seen += b
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
                val_acc = (
                    evaluate(model, val_ds, batch_size=max(config.batch_size, 256)) if val_ds is not None else None
                )
                history.append(
                    EpochStats(
                        epoch=epoch,
                        train_loss=loss_sum / seen,
                        train_accuracy=correct / seen,
                        val_accuracy=val_acc,
                        lr=float(optimizer.param_groups[0]["lr"]),
                        seconds=time.perf_counter() - t0,
                    )
                )
        finally:
            if bar is not None:
                bar.close()
            model.eval()
    return TrainResult(
        history=history,
        final_val_accuracy=history[-1].val_accuracy,
        wall_time_s=time.perf_counter() - start,
        config=config,
        device=str(device),
    )


AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    attack: AdversarialConfig | Mapping[str, Any] | AttackFn | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> float:
    """Accuracy of ``model`` on ``dataset``, clean or under attack.

    Args:
        model: maps a batch ``x`` to logits (B, K); evaluated in eval mode (its
            sub-modules' train/eval flags are restored afterwards).
        dataset: ``__len__`` and ``batch(indices) -> (x, y)``.
        attack: ``None`` (clean accuracy), an :class:`AdversarialConfig` or a dict of
            its fields (PGD with those settings), or a callable
            ``attack(model, x, y) -> x_adv``.
        batch_size: examples per forward pass, >= 1.
        seed: seeds the attack's random start.
        device: where to run; default: the model's device.

    Returns:
        The fraction of examples (in [0, 1]) whose top-1 prediction equals the label.
    """
    if not isinstance(model, nn.Module):
        raise DebuggableError(f"model: got a {type(model).__name__}, expected a torch.nn.Module.")
    n = _check_dataset(dataset, "dataset")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DebuggableError(f"batch_size: got {batch_size!r}, expected a positive integer.")
    attack_fn: AttackFn | None
    if attack is None or callable(attack) and not isinstance(attack, (AdversarialConfig, Mapping)):
        attack_fn = attack  # type: ignore[assignment]
    else:
        kwargs = make_attack_config(attack).attack_kwargs()  # type: ignore[arg-type]
        attack_fn = None
    if device is None:
        p = next(iter(model.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
        model.to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    use_pgd = attack is not None and attack_fn is None
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    correct = 0
    try:
        for lo in range(0, n, batch_size):
            x, y = dataset.batch(np.arange(lo, min(lo + batch_size, n)))
            x, y = _to_device(x, dev), _labels(y, dev)
            if use_pgd:
                x = pgd_attack(model, x, y, generator=gen, **kwargs)
            elif attack_fn is not None:
                x = attack_fn(model, x, y)
            with torch.no_grad():
                correct += int((logits_of(model, x).argmax(1) == y).sum())
    finally:
        for m, mode in modes:
            m.training = mode
    return correct / n
