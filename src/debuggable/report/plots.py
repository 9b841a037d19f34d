"""Matplotlib figures for the report, written as PNG files.

Every function takes plain NumPy data, draws one figure, saves it to ``path`` and
returns the path; none keeps a figure open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    path: Path,
    *,
    ncols: int = 10,
    boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
) -> Path:
    """A grid of images.

    Args:
        images: (N, C, H, W) floats in [0, 1], C in {1, 3}.
        titles: N captions.
        path: where the PNG goes.
        ncols: images per row.
        boxes: optional per-image (row0, col0, row1, col1) rectangles (exclusive ends,
            pixels) outlined in red, e.g. a planted patch.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = np.asarray(images[i])
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(np.clip(img.transpose(1, 2, 0), 0, 1), interpolation="nearest")
        ax.set_title(titles[i], fontsize=7)
        if boxes is not None and boxes[i] is not None:
            r0, c0, r1, c1 = boxes[i]
            ax.add_patch(
                matplotlib.patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="red", lw=1)
            )
    return _save(fig, path)


def bar_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    path: Path,
    *,
    ylabel: str,
    title: str = "",
) -> Path:
    """Grouped bars: one group per label, one bar per series."""
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(labels) * max(1, len(series)) + 1.5), 3.0))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
) -> Path:
    """One line per series over a shared x axis."""
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    for name, values in series.items():
        ax.plot(x[: len(values)], values, marker="o", ms=3, label=name)
    if logx:
        ax.set_xscale("log")
    elif all(float(v).is_integer() for v in x):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def histogram(values: np.ndarray, path: Path, *, xlabel: str, title: str = "", bins: int = 50) -> Path:
    """A histogram of ``values`` (any shape; flattened, non-finite values dropped)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    ax.hist(v, bins=bins, color="#4472c4")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def path_plot(lambdas: np.ndarray, coef: np.ndarray, path: Path, *, highlight: int = 12) -> Path:
    """Regularisation path: every weight of ``coef`` (L, K, D) against ``lambdas`` (L,).

    The ``highlight`` weights largest in magnitude at the smallest lambda are coloured,
    the others drawn thin and grey.
    """
    lam = np.asarray(lambdas)
    flat = np.asarray(coef).reshape(len(lam), -1)
    active = np.flatnonzero(np.any(flat != 0, axis=0))
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    top = set(active[np.argsort(-np.abs(flat[-1, active]))[:highlight]].tolist()) if active.size else set()
    for j in active:
        if j not in top:
            ax.plot(lam, flat[:, j], color="0.8", lw=0.5)
    for j in top:
        ax.plot(lam, flat[:, j], lw=1.2)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("lambda (decreasing)")
    ax.set_ylabel("standardised weight")
    ax.set_title("Regularisation path", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
