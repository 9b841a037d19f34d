"""PNG figures of feature evidence, drawn with Pillow (fast enough for dozens per run).

:func:`image_rows` lays out labelled rows of small images; :func:`evidence_figure`
draws one feature's evidence as rows: top-activating images, their CAM heatmaps,
the feature attack, and LIME / visualisation panels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.interpret.cam import overlay


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(n, C, H, W) with C in {1, 3}, or (n, H, W, 3), in [0, 1] -> (n, H, W, 3) float."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] not in (1, 3):
        return np.clip(x, 0, 1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DebuggableError(f"images: got shape {x.shape}, expected (n, C, H, W) with C 1 or 3, or (n, H, W, 3).")
    x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
    return np.clip(x.transpose(0, 2, 3, 1), 0, 1)


def image_rows(
    rows: Sequence[tuple[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    scale: int = 3,
    label_width: int = 110,
    gap: int = 2,
    boxes: Sequence[Sequence[tuple[int, int, int, int] | None] | None] | None = None,
    captions: Sequence[Sequence[str] | None] | None = None,
) -> Path:
    """Save labelled rows of images as one PNG.

    Args:
        rows: ``(label, images)`` per row; images as :func:`to_rgb` takes them, all of one size.
        path: the PNG to write (atomically).
        scale: nearest-neighbour magnification of each image.
        label_width: pixels reserved for the row labels.
        gap: pixels between images.
        boxes: per row, per image, an optional (row0, col0, row1, col1) rectangle outlined in red.
        captions: per row, per image, an optional short caption drawn under it.

    Returns:
        ``path`` as a ``Path``.
    """
    from PIL import Image, ImageDraw

    from debuggable.run import atomic_write_file

    rgb_rows = [(label, to_rgb(imgs)) for label, imgs in rows]
    if not rgb_rows:
        raise DebuggableError("rows: got none; expected at least one row of images.")
    h, w = rgb_rows[0][1].shape[1:3]
    cell_h, cell_w = h * scale, w * scale
    cap_h = 11 if captions is not None else 0
    ncols = max(len(r) for _, r in rgb_rows)
    width = label_width + ncols * (cell_w + gap)
    height = len(rgb_rows) * (cell_h + gap + cap_h) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, imgs) in enumerate(rgb_rows):
        top = gap + r * (cell_h + gap + cap_h)
        draw.text((4, top + cell_h // 2 - 6), label, fill="black")
        for c, img in enumerate(imgs):
            if img.shape[:2] != (h, w):
                raise DebuggableError(f"rows: image {c} of row {label!r} is {img.shape[:2]}, expected {(h, w)}.")
            tile = Image.fromarray((img * 255).round().astype(np.uint8)).resize((cell_w, cell_h), Image.NEAREST)
            left = label_width + c * (cell_w + gap)
            canvas.paste(tile, (left, top))
            box = boxes[r][c] if boxes is not None and boxes[r] is not None and c < len(boxes[r]) else None
            if box is not None:
                r0, c0, r1, c1 = box
                draw.rectangle([left + c0 * scale, top + r0 * scale, left + c1 * scale - 1, top + r1 * scale - 1],
                               outline="red")
            cap = captions[r][c] if captions is not None and captions[r] is not None and c < len(captions[r]) else None
            if cap:
                draw.text((left + 1, top + cell_h), str(cap), fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_file(path, lambda tmp: canvas.save(str(tmp), format="PNG"))
    return path


def lime_overlay(image: np.ndarray, mask: np.ndarray, *, dim: float = 0.25) -> np.ndarray:
    """(H, W, 3) the image with everything outside ``mask`` (H, W) darkened, as LIME shows
    its top superpixels; the mask is tinted green."""
    rgb = to_rgb(np.asarray(image)[None])[0]
    out = np.where(mask[..., None], rgb, dim * rgb)
    out[..., 1] = np.where(mask, np.clip(out[..., 1] * 0.7 + 0.3, 0, 1), out[..., 1])
    return out


def evidence_figure(evidence, path: str | os.PathLike, *, boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
                    lime_top: int = 3, scale: int = 3) -> Path:
    """One feature's image evidence as a PNG.

    Rows: the top-activating images (activation under each; ``boxes`` outlines e.g. a
    planted patch), their CAM heatmaps, the feature attack on them (activation after),
    and a last row with the least-activating images. When present, the visualisation
    and LIME's top superpixels (on the first top image) open the attack row.
    """
    ev = evidence
    rows: list[tuple[str, np.ndarray]] = [(f"top #{ev.feature}", ev.top_images)]
    caps: list[list[str] | None] = [[f"{v:.2f}" for v in ev.top.values]]
    bx: list = [list(boxes) if boxes is not None else None]
    if ev.cams is not None:
        rows.append(("heatmap", np.stack([overlay(img, cam) for img, cam in zip(ev.top_images, ev.cams)])))
        caps.append(None)
        bx.append(None)
    if ev.attacked is not None:
        rows.append(("attack", ev.attacked))
        caps.append([f"{v:.2f}" for v in ev.attack_after] if ev.attack_after is not None else None)
        bx.append(None)
    extra = []
    names = []
    if ev.visualisation is not None:
        extra.append(to_rgb(ev.visualisation[None])[0])
        names.append("vis.")
    if ev.lime is not None:
        extra.append(lime_overlay(ev.top_images[0], ev.lime.mask(lime_top)))
        names.append(f"LIME {ev.lime.score:.2f}")
    if extra:
        rows.append(("vis. / LIME", np.stack(extra)))
        caps.append(names)
        bx.append(None)
    rows.append(("bottom", ev.bottom_images))
    caps.append([f"{v:.2f}" for v in ev.bottom.values])
    bx.append(None)
    return image_rows(rows, path, scale=scale, boxes=bx, captions=caps)
