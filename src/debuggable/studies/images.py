"""Image files for study tasks: arrays to PNG, written atomically into a study's ``img/``."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.run import atomic_write_bytes


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, C) or (H, W) uint8 from (C, H, W), (H, W, C) or (H, W) floats in [0, 1]."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise DebuggableError(f"image: expected (C, H, W), (H, W, C) or (H, W) with 1 or 3 channels, got {np.shape(image)}.")
    if not np.all(np.isfinite(a)):
        raise DebuggableError("image: contains NaN or infinite values.")
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def png_bytes(image: np.ndarray, *, size: int | None = None) -> bytes:
    """PNG of ``image`` (see :func:`to_uint8`), upscaled with nearest neighbours so its
    longer side is at least ``size`` pixels (small images stay crisp)."""
    from PIL import Image

    pil = Image.fromarray(to_uint8(image))
    if size is not None and max(pil.size) < size:
        factor = int(np.ceil(size / max(pil.size)))
        pil = pil.resize((pil.size[0] * factor, pil.size[1] * factor), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) in [0, 1]: ``image`` with ``heat`` (H, W) in [0, 1] blended in as a colour map."""
    from matplotlib import colormaps

    base = to_uint8(image).astype(np.float64) / 255.0
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    h = np.asarray(heat, dtype=np.float64)
    if h.shape != base.shape[:2]:
        raise DebuggableError(f"heat: expected shape {base.shape[:2]} to match the image, got {h.shape}.")
    span = h.max() - h.min()
    h = (h - h.min()) / span if span > 0 else np.zeros_like(h)
    colour = colormaps["jet"](h)[..., :3]
    return (1 - alpha) * base + alpha * colour


def save_png(image: np.ndarray, directory: str | os.PathLike, name: str, *, size: int | None = 112) -> str:
    """Write ``image`` as ``directory/img/<name>.png``; returns its ``img/...`` source path."""
    if not name or "/" in name or name.startswith("."):
        raise DebuggableError(f"image name {name!r}: expected a plain file name.")
    src = f"img/{name}.png"
    atomic_write_bytes(Path(directory) / src, png_bytes(image, size=size), fsync=False)
    return src
