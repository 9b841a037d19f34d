"""Projected gradient descent (PGD) adversarial examples under L2 and Linf budgets.

Images live in [0, 1] and ``eps`` is in the same pixel units: an Linf budget of
``8/255`` moves every pixel by at most 8 grey levels; an L2 budget bounds the
Euclidean norm of the whole per-example perturbation (all channels and pixels).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from debuggable.errors import DebuggableError
from debuggable.models.backbone import BackboneOutput

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def logits_of(model: Callable[[torch.Tensor], Any], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` as a (B, K) logit tensor (a :class:`BackboneOutput` gives its ``logits``)."""
    out = model(x)
    if isinstance(out, BackboneOutput):
        if out.logits is None:
            raise DebuggableError(
                f"model: {type(model).__name__} has no classification head (its logits are None); expected a classifier."
            )
        out = out.logits
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DebuggableError(f"model: returned {shape}, expected logits of shape (B, K).")
    return out


def _sum_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped (B, 1, ..., 1) to broadcast against ``t``."""
    return t.flatten(1).norm(p=2, dim=1).view(-1, *([1] * (t.ndim - 1)))


def project(delta: torch.Tensor, *, norm: str, eps: float) -> torch.Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps`` (per example).

    Args:
        delta: (B, ...) perturbations.
        norm: ``"l2"`` or ``"linf"``.
        eps: the radius, >= 0.

    Returns:
        (B, ...) the closest points inside the ball (Linf: clipping; L2: rescaling
        the examples whose norm exceeds ``eps``).
    """
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _per_example_norm(delta)
    # Shrink a hair below eps so rounding never leaves a norm above it.
    factor = torch.where(n > eps, eps * (1.0 - 1e-6) / n.clamp_min(1e-30), torch.ones_like(n))
    return delta * factor


def _random_start(x: torch.Tensor, norm: str, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else x.device
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
        return (2.0 * u - 1.0) * eps
    # Uniform in the L2 ball: a Gaussian direction and radius eps * U^(1/d).
    d = x[0].numel()
    g = torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
    r = torch.rand((x.shape[0],), generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
    r = eps * r.pow(1.0 / d)
    direction = g / _per_example_norm(g).clamp_min(1e-30)
    return direction * r.view(-1, *([1] * (x.ndim - 1)))


def check_attack_params(norm: Any, eps: Any, step_size: Any, steps: Any) -> tuple[str, float, float, int]:
    """Validate PGD parameters; returns them normalised as (norm, eps, step_size, steps)."""
    if not isinstance(norm, str) or norm.lower() not in ("l2", "linf"):
        raise DebuggableError(f"norm: got {norm!r}, expected 'l2' or 'linf'.")
    for arg, value in (("eps", eps), ("step_size", step_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise DebuggableError(
                f"{arg}: got {value!r}, expected a finite number >= 0 (pixel units, images in [0, 1])."
            )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise DebuggableError(f"steps: got {steps!r}, expected a non-negative integer.")
    return norm.lower(), float(eps), float(step_size), int(steps)


def pgd_attack(
    model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str = "l2",
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    loss: LossFn | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted PGD: maximise ``loss(model(x'), y)`` over ``||x' - x|| <= eps``, ``x'`` in [0, 1].

    Each step moves along the sign of the gradient (Linf) or the per-example
    L2-normalised gradient (L2) by ``step_size``, then projects back onto the
    ``eps`` ball around ``x`` and clips to [0, 1] (clipping never leaves the ball,
    since ``x`` itself lies in [0, 1]).

    The model runs in eval mode (no batch-norm statistics updates, no dropout); every
    sub-module's train/eval flag is restored afterwards. Gradients are taken with
    ``torch.autograd.grad`` with respect to the input only, so nothing accumulates in
    the model's parameters' ``.grad``.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K) (a ``Backbone``'s
            :class:`BackboneOutput` works too: its ``logits`` are used).
        x: (B, C, H, W) clean images in [0, 1].
        y: (B,) int64 true labels.
        norm: ``"l2"`` or ``"linf"``.
        eps: the budget, in pixel units.
        step_size: the length of one step, in pixel units (Linf: per pixel).
        steps: the number of gradient steps; 0 returns the (random) start.
        random_start: start from a uniformly random point in the ball.
        loss: ``loss(logits, y) -> scalar`` to maximise; default summed cross-entropy.
        generator: a ``torch.Generator`` for the random start (reproducibility).

    Returns:
        (B, C, H, W) adversarial images in [0, 1], detached, same dtype/device as ``x``.
    """
    norm, eps, step_size, steps = check_attack_params(norm, eps, step_size, steps)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise DebuggableError(f"x: got {type(x).__name__}, expected a float tensor of images (B, C, H, W) in [0, 1].")
    if x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1.0 + 1e-6):
        raise DebuggableError(
            f"x: values lie in [{float(x.min()):.3g}, {float(x.max()):.3g}], expected images in [0, 1]."
        )
    y = torch.as_tensor(y, device=x.device)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DebuggableError(f"y: got shape {tuple(y.shape)}, expected ({x.shape[0]},) labels, one per image.")
    loss_fn = loss if loss is not None else _sum_cross_entropy
    x0 = x.detach()
    if eps == 0.0 or x0.shape[0] == 0:
        return x0.clone()

    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.enable_grad():
            delta = _random_start(x0, norm, eps, generator) if random_start else torch.zeros_like(x0)
            x_adv = (x0 + project(delta, norm=norm, eps=eps)).clamp(0.0, 1.0)
            for _ in range(steps):
                x_adv = x_adv.detach().requires_grad_(True)
                value = loss_fn(logits_of(model, x_adv), y.to(torch.int64))
                (grad,) = torch.autograd.grad(value, [x_adv])
                with torch.no_grad():
                    if norm == "linf":
                        step = grad.sign()
                    else:
                        step = grad / _per_example_norm(grad).clamp_min(1e-30)
                    x_adv = x_adv + step_size * step
                    x_adv = (x0 + project(x_adv - x0, norm=norm, eps=eps)).clamp(0.0, 1.0)
    finally:
        for m, mode in modes:
            m.training = mode
    return x_adv.detach()
