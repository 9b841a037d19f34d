"""The user's own data: image folders, NumPy arrays, CSV/JSONL text files.

Every loader returns a :class:`DatasetSplits` with ``train``, ``val`` and ``test``;
splits the user does not provide are split off ``train``, stratified by class and
seeded (:func:`debuggable.data.stratified_partition`).
"""

from __future__ import annotations

import csv
import json
import numbers
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from debuggable.data._common import check_seed, stratified_partition
from debuggable.data.base import Dataset, DatasetSplits, ImageArrayDataset, TextDataset
from debuggable.errors import DebuggableError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SPLIT_DIRS = ("train", "val", "test")


# ----------------------------------------------------------------------------- shared


def _fill_missing_splits(
    full: dict[str, Dataset],
    *,
    name: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> DatasetSplits:
    """``full`` holds ``train`` and any of ``val``/``test`` (and extra splits); the
    missing ones are split off ``train`` (fractions of the given train data)."""
    train = full["train"]
    missing = [s for s in ("val", "test") if s not in full]
    if missing:
        fractions = {"test": test_fraction, "val": val_fraction}
        parts = stratified_partition(
            train.labels, {s: fractions[s] for s in ("test", "val") if s in missing}, seed=seed,
            num_classes=train.num_classes,
        )
        rule = f"split off the given train data, stratified by class, seed {seed}"
        out = dict(full)
        for split in ["train", *missing]:
            ds = train.subset(parts[split], name=f"{name}/{split}")  # type: ignore[attr-defined]
            ds.source = {**train.source, "split": split, "split_rule": rule}
            out[split] = ds
        full = out
    ordered = {k: full[k] for k in ("train", "val", "test")}
    ordered.update({k: v for k, v in full.items() if k not in ordered})
    return DatasetSplits(name=name, splits=ordered, class_names=list(train.class_names))


def _map_labels(
    raw: dict[str, list],
    class_names: Sequence[str] | None,
    argname: str,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Labels of every split as int64 indices, and the class names.

    When ``class_names`` is given and names every label, labels are names.
    Otherwise integer labels (ints or strings of digits) are indices (K = max + 1
    unless ``class_names`` is given); other labels are names, mapped to their index
    in ``class_names`` or, when None, in the sorted list of distinct labels.
    """
    def as_int(v):
        if isinstance(v, (bool, np.bool_)):
            return None
        if isinstance(v, (numbers.Integral, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return int(v)
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v.strip())
        return None

    values = [v for labels in raw.values() for v in labels]
    ints = [as_int(v) for v in values]
    by_name = class_names is not None and {str(v) for v in values} <= {str(c) for c in class_names}
    if values and not by_name and all(i is not None for i in ints):
        out = {s: np.asarray([as_int(v) for v in labels], dtype=np.int64) for s, labels in raw.items()}
        if class_names is None:
            lo = min(ints)
            if lo < 0:
                raise DebuggableError(f"{argname}: label {lo} is negative; expected class indices 0..K-1 or class names.")
            class_names = [str(k) for k in range(max(ints) + 1)]
        names = [str(c) for c in class_names]
        for s, labels in out.items():
            bad = labels[(labels < 0) | (labels >= len(names))]
            if bad.size:
                raise DebuggableError(
                    f"{argname}: label {int(bad[0])} in split {s!r} is out of range; expected integers "
                    f"0..{len(names) - 1} for {len(names)} classes."
                )
        return out, names
    str_values = [str(v) for v in values]
    names = sorted(set(str_values)) if class_names is None else [str(c) for c in class_names]
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for s, labels in raw.items():
        mapped = []
        for v in labels:
            key = str(v)
            if key not in index:
                raise DebuggableError(
                    f"{argname}: label {key!r} in split {s!r} is not a class; expected one of {names}."
                )
            mapped.append(index[key])
        out[s] = np.asarray(mapped, dtype=np.int64)
    return out, names


# ----------------------------------------------------------------------------- image folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_image(path: Path, grayscale: bool, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if grayscale else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DebuggableError(f"image file {str(path)!r} could not be read ({exc}); expected a valid image.") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    grayscale: bool = False,
) -> DatasetSplits:
    """Images in class folders, read with Pillow.

    Two layouts: ``root/<class>/**/<image>`` (one folder per class, split here), or
    ``root/train/<class>/...`` with optional ``root/val/...`` and ``root/test/...``
    (missing ones are split off train); in the second layout every other sub-folder
    that holds class folders becomes an extra split of its name (e.g. a shifted
    ``root/test_sketches/<class>/...``). Class names are the sorted folder names of
    the single layout, or of ``train`` in the split layout. Files ending in
    :data:`IMAGE_EXTENSIONS` (any case) are read, recursively, in sorted order.

    Args:
        root: the folder.
        image_size: resize every image to ``(height, width)`` (an int means square),
            bilinear; None requires every image to have the same size.
        val_fraction, test_fraction: shares split off for missing splits, in (0, 1).
        seed: seeds the split.
        grayscale: read as 1-channel luminance; otherwise as 3-channel RGB (alpha and
            palettes are dropped/converted).

    Returns:
        :class:`DatasetSplits` named after the folder; images are uint8 (N, C, H, W)
        in memory and (C, H, W) float32 in [0, 1] per item. Each split's ``source``
        records the root, layout and files.
    """
    root_p = Path(root).expanduser()
    if not root_p.exists():
        raise DebuggableError(f"root={str(root)!r} does not exist; expected a folder with one sub-folder per class.")
    if not root_p.is_dir():
        raise DebuggableError(f"root={str(root)!r} is a file; expected a folder with one sub-folder per class.")
    size: tuple[int, int] | None
    if image_size is None:
        size = None
    elif isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool) and int(image_size) > 0:
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list)) and len(image_size) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0 for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise DebuggableError(f"image_size={image_size!r} is invalid; expected None, a positive int or (height, width).")
    seed = check_seed(seed)

    subdirs = {p.name: p for p in _class_folders(root_p)}
    split_layout = "train" in subdirs and bool(_class_folders(subdirs["train"]))
    if split_layout:
        trees = {s: subdirs[s] for s in _SPLIT_DIRS if s in subdirs}
        trees.update({n: d for n, d in subdirs.items() if n not in trees and _class_folders(d)})
    else:
        trees = {"train": root_p}
    class_names = [p.name for p in _class_folders(trees["train"])]
    if not class_names:
        raise DebuggableError(
            f"root={str(root)!r} has no class sub-folders; expected root/<class>/<images> or root/train/<class>/<images>."
        )
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, tree in trees.items():
        entries: list[tuple[Path, int]] = []
        for folder in _class_folders(tree):
            if folder.name not in class_names:
                raise DebuggableError(
                    f"class folder {str(folder)!r} is not a class of {str(trees['train'])!r}; expected one of {class_names}."
                )
            found = _image_files(folder)
            if not found and split == "train":
                raise DebuggableError(
                    f"class folder {str(folder)!r} holds no images; expected files ending in {', '.join(IMAGE_EXTENSIONS)}."
                )
            entries += [(f, class_names.index(folder.name)) for f in found]
        if not entries:
            raise DebuggableError(
                f"folder {str(tree)!r} holds no images in class sub-folders; expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)}."
            )
        files[split] = entries

    first_shape: tuple[tuple[int, ...], Path] | None = None
    full: dict[str, Dataset] = {}
    name = root_p.resolve().name or "image_folder"
    for split, entries in files.items():
        arrays = []
        for path, _ in entries:
            arr = _read_image(path, grayscale, size)
            if first_shape is None:
                first_shape = (arr.shape, path)
            elif arr.shape != first_shape[0]:
                raise DebuggableError(
                    f"image {str(path)!r} is {arr.shape[2]}x{arr.shape[1]} pixels but {str(first_shape[1])!r} is "
                    f"{first_shape[0][2]}x{first_shape[0][1]}; pass image_size=(height, width) to resize them all."
                )
            arrays.append(arr)
        labels = np.asarray([label for _, label in entries], dtype=np.int64)
        source = {
            "dataset": "image_folder",
            "origin": str(trees[split]),
            "layout": "split_folders" if split_layout else "class_folders",
            "n_files": len(entries),
            "image_size": list(size) if size else None,
            "grayscale": bool(grayscale),
        }
        if split_layout:
            source["split"] = split
            source["split_rule"] = f"given as the {split}/ folder"
        full[split] = ImageArrayDataset(
            np.stack(arrays), labels, class_names, name=f"{name}/{split}", source=source, channels_first=True
        )
    return _fill_missing_splits(full, name=name, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)


# ----------------------------------------------------------------------------- arrays


def _is_text_array(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype.kind in ("U", "S") or (x.dtype == object and x.size > 0 and isinstance(x.flat[0], str))
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(t, str) for t in x)


def from_arrays(
    train: tuple[Any, Any],
    val: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "arrays",
    extra: dict[str, tuple[Any, Any]] | None = None,
    channels_first: bool | None = None,
) -> DatasetSplits:
    """Data already in memory as ``(x, y)`` pairs.

    ``x`` is either images, (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or floats
    in [0, 1] (see :class:`ImageArrayDataset`), or N strings (text). ``y`` is (N,)
    class indices or class names (names map to their position in ``class_names``,
    or in the sorted distinct names when ``class_names`` is None; integer labels
    without ``class_names`` give classes "0".."max").

    Args:
        train: ``(x, y)`` training data.
        val: ``(x, y)``, or None to split ``val_fraction`` of ``train`` off.
        test: ``(x, y)``, or None to split ``test_fraction`` of ``train`` off.
        class_names: the K class names.
        val_fraction, test_fraction: shares of ``train`` split off, in (0, 1).
        seed: seeds the split.
        name: the data set's name.
        extra: more named splits (e.g. a shifted test set), ``{name: (x, y)}``.
        channels_first: for 4-D images, True for (N, C, H, W), False for
            (N, H, W, C), None to guess (see :class:`ImageArrayDataset`).

    Returns:
        :class:`DatasetSplits` of :class:`ImageArrayDataset` or :class:`TextDataset`.
    """
    seed = check_seed(seed)
    given: dict[str, tuple[Any, Any]] = {"train": train}
    if val is not None:
        given["val"] = val
    if test is not None:
        given["test"] = test
    for k, v in (extra or {}).items():
        if k in ("train", "val", "test"):
            raise DebuggableError(f"extra names split {k!r}; expected names other than train, val and test.")
        given[str(k)] = v
    xs, raw_labels = {}, {}
    for split, pair in given.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise DebuggableError(f"{split} must be a pair (x, y) of inputs and labels, got {type(pair).__name__}.")
        x, y = pair
        y_arr = np.asarray(y)
        if y_arr.ndim != 1:
            raise DebuggableError(f"{split}: y must be one-dimensional with one label per example, got shape {y_arr.shape}.")
        n_x = len(x)
        if n_x != y_arr.shape[0]:
            raise DebuggableError(f"{split}: x has {n_x} examples but y has {y_arr.shape[0]} labels; expected one label per example.")
        if n_x == 0:
            raise DebuggableError(f"{split} is empty; every split needs examples.")
        xs[split] = x
        raw_labels[split] = y_arr.tolist()
    text = _is_text_array(xs["train"])
    for split, x in xs.items():
        if _is_text_array(x) != text:
            raise DebuggableError(
                f"{split}: x holds {'text' if _is_text_array(x) else 'images'} but train holds "
                f"{'text' if text else 'images'}; expected one modality."
            )
    labels, names = _map_labels(raw_labels, class_names, "y")
    full: dict[str, Dataset] = {}
    for split, x in xs.items():
        source = {"dataset": name, "origin": "arrays given in memory"}
        if split != "train" or (val is not None and test is not None):
            source.update({"split": split, "split_rule": "given"})
        if text:
            full[split] = TextDataset([str(t) for t in x], labels[split], names, name=f"{name}/{split}", source=source)
        else:
            full[split] = ImageArrayDataset(
                x, labels[split], names, name=f"{name}/{split}", source=source, channels_first=channels_first
            )
    return _fill_missing_splits(full, name=name, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)


def load_arrays(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSplits:
    """Arrays from a ``.npz`` file, then :func:`from_arrays`.

    The file holds ``x_train`` and ``y_train`` (or ``x`` and ``y``), optionally
    ``x_val``/``y_val``, ``x_test``/``y_test`` and ``class_names``. Loaded without
    pickle, so text must be stored as a string (``U``) array.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DebuggableError(f"path={str(path)!r} does not exist or is not a file; expected a .npz file.")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DebuggableError(f"path={str(path)!r} is not a readable .npz file without pickled objects ({exc}).") from exc
    keys = sorted(data)

    def pair(split: str) -> tuple[Any, Any] | None:
        xk, yk = f"x_{split}", f"y_{split}"
        if xk in data or yk in data:
            if xk not in data or yk not in data:
                raise DebuggableError(f"{p.name} has only one of {xk!r} and {yk!r}; expected both (keys found: {keys}).")
            return data[xk], data[yk]
        return None

    train = pair("train")
    if train is None and "x" in data and "y" in data:
        train = (data["x"], data["y"])
    if train is None:
        raise DebuggableError(f"{p.name} lacks 'x_train' and 'y_train' (or 'x' and 'y'); keys found: {keys}.")
    if class_names is None and "class_names" in data:
        class_names = [str(c) for c in data["class_names"].tolist()]
    x, y = train
    if x.dtype.kind in ("U", "S"):
        train = ([str(t) for t in x.tolist()], y)
    v, t = pair("val"), pair("test")
    if v is not None and v[0].dtype.kind in ("U", "S"):
        v = ([str(s) for s in v[0].tolist()], v[1])
    if t is not None and t[0].dtype.kind in ("U", "S"):
        t = ([str(s) for s in t[0].tolist()], t[1])
    out = from_arrays(
        train, v, t, class_names=class_names, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        name=p.stem,
    )
    for ds in out.splits.values():
        ds.source = {**ds.source, "dataset": "arrays", "origin": str(p)}
    return out


# ----------------------------------------------------------------------------- text files


def _read_records(path: Path, fmt: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows as dicts and the field names (CSV header, or union of JSONL keys)."""
    try:
        if fmt in ("csv", "tsv"):
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
                fields = list(reader.fieldnames or [])
                rows = [dict(r) for r in reader]
            return rows, fields
        rows = []
        fields: dict[str, None] = {}
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DebuggableError(f"{path.name} line {lineno} is not valid JSON ({exc.msg}).") from None
                if not isinstance(rec, dict):
                    raise DebuggableError(f"{path.name} line {lineno} is a JSON {type(rec).__name__}; expected an object.")
                rec["__line__"] = lineno
                fields.update(dict.fromkeys(k for k in rec if k != "__line__"))
                rows.append(rec)
        return rows, list(fields)
    except UnicodeDecodeError as exc:
        raise DebuggableError(f"{path.name} is not UTF-8 text ({exc.reason}).") from None


def load_text_file(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    label_field: str = "label",
    class_names: Sequence[str] | None = None,
    split_field: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    format: str | None = None,
) -> DatasetSplits:
    """Labelled texts from a CSV/TSV file (with a header row) or JSON Lines.

    Labels that are all integers (JSON ints or digit strings) are class indices;
    otherwise they are names, mapped to indices in sorted order (or their position
    in ``class_names``), and the names become the class names.

    Args:
        path: the file; ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``/``.json`` pick the
            format unless ``format`` ("csv", "tsv", "jsonl") says otherwise.
        text_field: the column/key holding the text.
        label_field: the column/key holding the label.
        class_names: the class names, in index order.
        split_field: optional column/key naming each row's split (``train``,
            ``val``, ``test`` or any other name, kept as an extra split); missing
            val/test are split off train. None splits every row.
        val_fraction, test_fraction: shares split off, in (0, 1).
        seed: seeds the split.
        format: override the format guessed from the suffix.

    Returns:
        :class:`DatasetSplits` of :class:`TextDataset`, named after the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DebuggableError(f"path={str(path)!r} does not exist or is not a file; expected a CSV or JSONL file.")
    suffix_fmt = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
    fmt = format or suffix_fmt.get(p.suffix.lower())
    if fmt not in ("csv", "tsv", "jsonl"):
        raise DebuggableError(
            f"format={format!r} for {p.name} is unknown; expected 'csv', 'tsv' or 'jsonl' (or a .csv/.tsv/.jsonl suffix)."
        )
    seed = check_seed(seed)
    rows, fields = _read_records(p, fmt)
    if not rows:
        raise DebuggableError(f"{p.name} holds no rows; expected a header and at least one labelled text.")
    wanted = [("text_field", text_field), ("label_field", label_field)]
    if split_field is not None:
        wanted.append(("split_field", split_field))
    for arg, field in wanted:
        if field not in fields:
            raise DebuggableError(f"{arg}={field!r} is not a field of {p.name}; available fields are {fields}.")
    groups: dict[str, tuple[list[str], list[Any]]] = {}
    for j, rec in enumerate(rows):
        where = f"line {rec['__line__']}" if "__line__" in rec else f"row {j + 2}"
        values = []
        for arg, field in wanted:
            v = rec.get(field)
            if v is None or (arg != "text_field" and isinstance(v, str) and not v.strip()):
                raise DebuggableError(f"{p.name} {where} has no value for {arg}={field!r}; expected every row to have one.")
            values.append(v)
        split = str(values[2]).strip() if split_field is not None else "train"
        texts, labels = groups.setdefault(split, ([], []))
        texts.append(str(values[0]))
        labels.append(values[1].strip() if isinstance(values[1], str) else values[1])
    if "train" not in groups:
        raise DebuggableError(
            f"split_field={split_field!r} never says 'train' in {p.name}; found splits {sorted(groups)}."
        )
    labels, names = _map_labels({s: g[1] for s, g in groups.items()}, class_names, f"{p.name} {label_field}")
    name = p.stem
    full: dict[str, Dataset] = {}
    for split, (texts, _) in groups.items():
        source = {"dataset": "text_file", "origin": str(p), "text_field": text_field, "label_field": label_field}
        if split_field is not None:
            source.update({"split": split, "split_rule": f"given by the {split_field!r} field"})
        full[split] = TextDataset(texts, labels[split], names, name=f"{name}/{split}", source=source)
    return _fill_missing_splits(full, name=name, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
