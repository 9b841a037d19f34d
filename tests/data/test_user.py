"""User data: image folders, arrays, .npz files, CSV and JSONL text files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from debuggable.data import from_arrays, load_arrays, load_image_folder, load_text_file
from debuggable.errors import DebuggableError


def _write_images(folder, n, shape=(6, 5), seed=0, mode="RGB", ext=".png"):
    """n random images of (height, width) ``shape``; returns their uint8 arrays (C, H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        if mode == "RGB":
            arr = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
            arrays.append(arr.transpose(2, 0, 1))
        else:
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            arrays.append(arr[None])
        Image.fromarray(arr, mode=mode).save(folder / f"img_{i:02d}{ext}")
    return arrays


def test_class_folder_layout(tmp_path):
    written = {}
    for k, cls in enumerate(["zebra", "cat", "dog"]):
        written[cls] = _write_images(tmp_path / "pets" / cls, 10, seed=k)
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
    s = load_image_folder(tmp_path / "pets", val_fraction=0.2, test_fraction=0.2, seed=0)
    assert s.class_names == ["cat", "dog", "zebra"] and s.name == "pets"
    assert {k: len(v) for k, v in s.splits.items()} == {"train": 18, "val": 6, "test": 6}
    assert s.val.class_counts().tolist() == [2, 2, 2]
    assert s.train.images.dtype == torch.uint8 and s.train.image_shape == (3, 6, 5)
    # every loaded image is one of the written ones, under its folder's label
    for split in ("train", "val", "test"):
        for img, label in zip(s[split].images.numpy(), s[split].labels):
            assert any(np.array_equal(img, w) for w in written[s.class_names[label]])
    assert s.train.source["layout"] == "class_folders"


def test_grayscale_and_resize(tmp_path):
    _write_images(tmp_path / "a", 5, shape=(6, 5))
    _write_images(tmp_path / "b", 5, shape=(9, 7), mode="L", ext=".JPG")
    s = load_image_folder(tmp_path, image_size=(4, 3), grayscale=True, val_fraction=0.2, test_fraction=0.2)
    assert s.train.image_shape == (1, 4, 3)
    s2 = load_image_folder(tmp_path, image_size=8, val_fraction=0.2, test_fraction=0.2)
    assert s2.train.image_shape == (3, 8, 8)


def test_split_folder_layout(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for k, cls in enumerate(["a", "b"]):
            _write_images(tmp_path / split / cls, n, seed=k, mode="L")
    s = load_image_folder(tmp_path, grayscale=True)
    assert {k: len(v) for k, v in s.splits.items()} == {"train": 12, "val": 4, "test": 6}
    assert s.test.source["split_rule"] == "given as the test/ folder"
    (tmp_path / "test").rename(tmp_path / "test_shifted")  # an extra split; test is split off train
    s2 = load_image_folder(tmp_path, grayscale=True, test_fraction=0.25)
    assert {k: len(v) for k, v in s2.splits.items()} == {"train": 9, "val": 4, "test": 3, "test_shifted": 6}
    _write_images(tmp_path / "val" / "c", 2, mode="L")
    with pytest.raises(DebuggableError, match="is not a class of"):
        load_image_folder(tmp_path, grayscale=True)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DebuggableError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DebuggableError, match="is a file"):
        load_image_folder(tmp_path / "file.png")
    (tmp_path / "flat").mkdir()
    _write_images(tmp_path / "flat", 2)  # images but no class folders
    with pytest.raises(DebuggableError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")
    _write_images(tmp_path / "one" / "a", 3)
    (tmp_path / "one" / "b").mkdir()
    with pytest.raises(DebuggableError, match="holds no images"):
        load_image_folder(tmp_path / "one")
    _write_images(tmp_path / "sizes" / "a", 3, shape=(6, 5))
    _write_images(tmp_path / "sizes" / "b", 3, shape=(7, 5))
    with pytest.raises(DebuggableError, match="pass image_size"):
        load_image_folder(tmp_path / "sizes")
    with pytest.raises(DebuggableError, match="image_size"):
        load_image_folder(tmp_path / "sizes", image_size=(0, 3))
    _write_images(tmp_path / "broken" / "a", 3)
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DebuggableError, match="could not be read"):
        load_image_folder(tmp_path / "broken")


# ----------------------------------------------------------------------------- arrays


def test_from_arrays_splits_off_val_and_test():
    rng = np.random.default_rng(0)
    x = rng.random((100, 4, 4)).astype(np.float32)
    y = np.repeat([0, 1, 2, 3], 25)
    s = from_arrays((x, y), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert s.class_names == ["0", "1", "2", "3"]
    assert [s[k].class_counts().tolist() for k in ("train", "val", "test")] == [[15] * 4, [5] * 4, [5] * 4]
    together = torch.cat([s[k].images for k in ("train", "val", "test")])
    assert together.shape == (100, 1, 4, 4)
    assert sorted(map(tuple, together.reshape(100, -1).tolist())) == sorted(map(tuple, x.reshape(100, -1).tolist()))
    again = from_arrays((x, y), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert torch.equal(again.test.images, s.test.images)


def test_from_arrays_with_given_splits_and_names():
    x = np.zeros((12, 5, 5, 3), np.uint8)  # channels-last
    y = np.array(["cat", "dog"] * 6)
    s = from_arrays((x, y), test=(x[:4], y[:4]), val_fraction=0.25)
    assert s.class_names == ["cat", "dog"] and s.train.image_shape == (3, 5, 5)
    assert len(s.test) == 4 and len(s.val) == 3 and len(s.train) == 9
    t = from_arrays((["good", "bad", "fine", "awful"] * 3, [1, 0, 1, 0] * 3), class_names=["neg", "pos"],
                    val_fraction=0.25, test_fraction=0.25)
    assert t.modality == "text" and t.class_names == ["neg", "pos"]


def test_from_arrays_errors():
    x, y = np.zeros((10, 3, 3), np.uint8), np.arange(10) % 2
    with pytest.raises(DebuggableError, match="label 2 in split 'train' is out of range"):
        from_arrays((x, np.arange(10) % 3), class_names=["a", "b"])
    with pytest.raises(DebuggableError, match="'dog' in split 'train' is not a class"):
        from_arrays((x, ["cat", "dog"] * 5), class_names=["cat", "cow"])
    with pytest.raises(DebuggableError, match="val is empty"):
        from_arrays((x, y), val=(x[:0], y[:0]), test=(x, y))
    with pytest.raises(DebuggableError, match="x has 10 examples but y has 3"):
        from_arrays((x, y[:3]))
    with pytest.raises(DebuggableError, match="x holds text but train holds images"):
        from_arrays((x, y), test=(["a"] * 3, [0, 1, 0]))
    with pytest.raises(DebuggableError, match="'val' would be empty"):
        from_arrays((x[:3], y[:3]), val_fraction=0.1, test_fraction=0.3)
    with pytest.raises(DebuggableError, match="label -1 is negative"):
        from_arrays((x, y - 1))


def test_npz_file(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=rng.integers(0, 255, (40, 6, 6), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 255, (8, 6, 6), dtype=np.uint8), y_test=np.arange(8) % 4,
             class_names=np.array(["w", "x", "y", "z"]))
    s = load_arrays(path, val_fraction=0.2)
    assert s.class_names == ["w", "x", "y", "z"] and len(s.test) == 8 and len(s.val) == 8 and s.name == "mine"
    assert s.train.source["origin"] == str(path)
    np.savez(tmp_path / "bad.npz", images=np.zeros((3, 2, 2)), labels=np.zeros(3))
    with pytest.raises(DebuggableError, match=r"keys found: \['images', 'labels'\]"):
        load_arrays(tmp_path / "bad.npz")
    with pytest.raises(DebuggableError, match="does not exist"):
        load_arrays(tmp_path / "none.npz")


# ----------------------------------------------------------------------------- text files


def test_csv_with_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    rows = ["review,sentiment,id"] + [f'"text {i}, with a comma",{["pos", "neg", "mixed"][i % 3]},{i}' for i in range(30)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    s = load_text_file(path, text_field="review", label_field="sentiment", val_fraction=0.2, test_fraction=0.2)
    assert s.class_names == ["mixed", "neg", "pos"]  # sorted
    assert s.test.class_counts().tolist() == [2, 2, 2]
    text, label = s.train[0]
    i = int(text.split()[1].rstrip(","))
    assert text == f"text {i}, with a comma" and s.class_names[label] == ["pos", "neg", "mixed"][i % 3]


def test_jsonl_with_integer_labels_and_split_field(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps({"text": f"t{i}", "label": i % 2, "split": "test" if i < 6 else "train"}) for i in range(30)]
    lines.insert(3, "")
    path.write_text("\n".join(lines), encoding="utf-8")
    s = load_text_file(path, split_field="split", val_fraction=0.25)
    assert s.class_names == ["0", "1"] and len(s.test) == 6 and len(s.val) == 6 and len(s.train) == 18
    assert all(t in {f"t{i}" for i in range(6)} for t in s.test.texts)
    named = load_text_file(path, class_names=["bad", "good"], val_fraction=0.2, test_fraction=0.2)
    assert named.class_names == ["bad", "good"]
    # digit labels that are class names map by name, not by index
    by_name = load_text_file(path, class_names=["1", "0"], val_fraction=0.2, test_fraction=0.2)
    text, label = by_name.train[0]
    assert by_name.class_names[label] == str(int(text[1:]) % 2)


def test_text_file_errors(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("body,y\nhello,1\nbye,0\n")
    with pytest.raises(DebuggableError, match=r"text_field='text' is not a field of a.csv; available fields are \['body', 'y'\]"):
        load_text_file(csv_path)
    with pytest.raises(DebuggableError, match="label_field='label'"):
        load_text_file(csv_path, text_field="body")
    with pytest.raises(DebuggableError, match="does not exist"):
        load_text_file(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DebuggableError, match="holds no rows"):
        load_text_file(empty)
    other = tmp_path / "a.txt"
    other.write_text("x")
    with pytest.raises(DebuggableError, match="expected 'csv', 'tsv' or 'jsonl'"):
        load_text_file(other)
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DebuggableError, match="line 2 is not valid JSON"):
        load_text_file(bad_json)
    missing = tmp_path / "c.jsonl"
    missing.write_text('{"text": "a", "label": 0}\n{"text": "b"}\n')
    with pytest.raises(DebuggableError, match="line 2 has no value for label_field='label'"):
        load_text_file(missing)
    out_of_range = tmp_path / "d.csv"
    out_of_range.write_text("text,label\n" + "".join(f"t{i},{i % 3}\n" for i in range(12)))
    with pytest.raises(DebuggableError, match="label 2 in split 'train' is out of range"):
        load_text_file(out_of_range, class_names=["a", "b"])
