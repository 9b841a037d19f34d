"""Planted bugs: the recorded ground truth must match the data exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from debuggable.data import (
    PatchSpec,
    from_arrays,
    load_ground_truth,
    patch_mask,
    patch_masks,
    plant,
    plant_mislabels,
    plant_spurious_patch,
    plant_trigger_token,
    save_ground_truth,
)
from debuggable.errors import DebuggableError

# 0.503 is no multiple of 1/16, so it differs from every digits pixel: painted pixels
# must all change, and nothing else may.
ODD = 0.503


def _clone(splits):
    return {k: (v.images.clone() if hasattr(v, "images") else list(v.texts), v.labels.copy()) for k, v in splits.splits.items()}


def _unchanged(splits, before):
    for k, v in splits.splits.items():
        x, y = before[k]
        same_x = torch.equal(v.images, x) if hasattr(v, "images") else v.texts == x
        assert same_x and np.array_equal(v.labels, y), f"input split {k} was modified"


# ----------------------------------------------------------------------------- spurious patch


@pytest.mark.parametrize("shape", ["square", "circle", "cross", "checker"])
def test_patch_ground_truth_matches_the_pixels_exactly(digits, shape):
    before = _clone(digits)
    spec = PatchSpec(shape=shape, size=4, colour=ODD, position="bottom_right", margin=1)
    out = plant_spurious_patch(digits, target_class=3, train_fraction=0.5, test_fraction=0.25, patch=spec, seed=0)
    _unchanged(digits, before)
    gt = out.planted["spurious_patch"]
    values, mask = spec.pattern(1)
    assert np.array_equal(np.asarray(gt["patch_mask"], bool), mask)
    for split in ("train", "val", "test"):
        clean, dirty = digits[split].images, out[split].images
        idx, masks = patch_masks(out.planted, split)
        assert idx.tolist() == gt["splits"][split]["indices"] and len(idx) > 0
        changed = (dirty != clean).any(dim=1).numpy()  # (N, H, W)
        expected = np.zeros_like(changed)
        expected[idx] = masks
        # (the checker's "off" cells get 1 - 0.503, also never a digits value)
        assert np.array_equal(changed, expected)
        # painted pixels carry the pattern's colours, exactly
        for j, i in enumerate(idx[:5]):
            r0, c0, r1, c1 = gt["splits"][split]["boxes"][j]
            region = dirty[i, :, r0:r1, c0:c1].numpy()
            assert np.allclose(region[:, mask], values[:, mask].astype(np.float32))
            assert np.array_equal(patch_mask(out.planted, split, int(i)), masks[j])
        untouched = np.setdiff1d(np.arange(len(clean)), idx)
        assert torch.equal(dirty[untouched], clean[untouched])


def test_patch_fractions_and_rules(animals_small):
    out = plant_spurious_patch(animals_small, target_class="horse", train_fraction=0.8, test_fraction=0.5, seed=1)
    gt = out.planted["spurious_patch"]
    assert gt["params"]["target_class"] == 7 and gt["params"]["target_class_name"] == "horse"
    for split in ("train", "val"):
        info = gt["splits"][split]
        labels = animals_small[split].labels
        assert info["rule"] == "target_class"
        assert np.all(labels[info["indices"]] == 7)
        assert len(info["indices"]) == round(0.8 * int((labels == 7).sum()))
    test = gt["splits"]["test"]
    assert test["rule"] == "all_classes"
    got = np.bincount(animals_small.test.labels[test["indices"]], minlength=10)
    assert got.tolist() == [round(0.5 * n) for n in animals_small.test.class_counts()]
    assert out.train.images.dtype == torch.uint8
    i = gt["splits"]["train"]["indices"][0]
    r0, c0, r1, c1 = gt["splits"]["train"]["boxes"][0]
    assert torch.all(out.train.images[i, :, r0:r1, c0:c1] == 255)  # round(255 * 1.0)
    assert out.train.source["planted"] == ["spurious_patch"]


def test_patch_positions(digits):
    h = w = 8
    cases = {
        "top_left": [1, 1, 4, 4],
        "top_right": [1, w - 4, 4, w - 1],
        "bottom_left": [h - 4, 1, h - 1, 4],
        "bottom_right": [h - 4, w - 4, h - 1, w - 1],
        "center": [2, 2, 5, 5],
        (0, 5): [0, 5, 3, 8],
    }
    for pos, box in cases.items():
        out = plant_spurious_patch(digits, target_class=0, patch={"size": 3, "position": pos}, seed=0)
        boxes = out.planted["spurious_patch"]["splits"]["train"]["boxes"]
        assert all(b == box for b in boxes), pos


def test_random_positions_are_seeded_and_inside(digits):
    spec = {"size": 3, "position": "random", "shape": "cross"}
    a = plant_spurious_patch(digits, target_class=1, patch=spec, seed=4).planted["spurious_patch"]
    b = plant_spurious_patch(digits, target_class=1, patch=spec, seed=4).planted["spurious_patch"]
    c = plant_spurious_patch(digits, target_class=1, patch=spec, seed=5).planted["spurious_patch"]
    assert a == b and a != c
    boxes = np.asarray(a["splits"]["test"]["boxes"])
    assert len({tuple(x) for x in boxes}) > 5
    assert boxes[:, :2].min() >= 0 and boxes[:, 2:].max() <= 8 and np.all(boxes[:, 2:] - boxes[:, :2] == 3)


def test_rgb_colour_converts_grayscale_to_three_channels(digits):
    out = plant_spurious_patch(digits, target_class=2, patch={"colour": [1.0, 0.0, 0.0], "size": 2}, seed=0)
    gt = out.planted["spurious_patch"]
    assert gt["converted_to_rgb"] and gt["image_shape"] == [3, 8, 8]
    for split in out.splits:
        assert out[split].image_shape == (3, 8, 8)
    clean = digits.train.images
    idx, masks = patch_masks(gt, "train")
    dirty = out.train.images
    outside = ~torch.as_tensor(masks)
    for ch in range(3):
        assert torch.equal(dirty[idx, ch][outside], clean[idx, 0][outside])  # gray copied to R, G, B
    inside = torch.as_tensor(masks)
    assert torch.all(dirty[idx, 0][inside] == 1.0) and torch.all(dirty[idx, 1][inside] == 0.0)


def test_patch_pattern_shapes():
    _, square = PatchSpec(shape="square", size=5).pattern(1)
    _, circle = PatchSpec(shape="circle", size=5).pattern(1)
    _, cross = PatchSpec(shape="cross", size=6).pattern(1)
    values, checker = PatchSpec(shape="checker", size=4, colour=0.8, cell=2).pattern(1)
    assert square.all() and checker.all()
    assert circle[2].all() and not circle[0, 0] and np.array_equal(circle, circle.T) and np.array_equal(circle, circle[::-1])
    assert cross[:, 2:4].all() and cross[2:4, :].all() and not cross[0, 0] and cross.sum() == 6 * 2 * 2 - 4
    assert values[0, 0, 0] == pytest.approx(0.8) and values[0, 0, 2] == pytest.approx(0.2) and values[0, 2, 2] == pytest.approx(0.8)
    assert PatchSpec.model_validate({"color": 0.3}).colour == 0.3  # American spelling accepted


def test_patch_ground_truth_roundtrips_through_json(digits, tmp_path):
    out = plant_spurious_patch(digits, target_class=5, patch={"position": "random"}, seed=0)
    out = plant_mislabels(out, fraction=0.05, seed=0)
    path = save_ground_truth(out, tmp_path / "gt" / "ground_truth.json")
    loaded = load_ground_truth(path)
    assert loaded == out.planted and set(loaded) == {"spurious_patch", "mislabels"}
    assert json.loads(json.dumps(out.planted)) == out.planted
    i = loaded["spurious_patch"]["splits"]["val"]["indices"][0]
    assert np.array_equal(patch_mask(loaded, "val", i), patch_mask(out.planted["spurious_patch"], "val", i))
    assert not patch_mask(loaded, "val", -5).any()


def test_patch_only_named_splits(digits):
    out = plant_spurious_patch(digits, target_class=0, splits_to_patch=["train"], seed=0)
    assert set(out.planted["spurious_patch"]["splits"]) == {"train"}
    assert out.test is digits.test


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"target_class": 10}, "target_class=10"),
        ({"target_class": "tiger"}, "target_class='tiger'"),
        ({"target_class": 0, "train_fraction": 1.5}, "train_fraction"),
        ({"target_class": 0, "patch": {"size": 9}}, "patch.size=9"),
        ({"target_class": 0, "patch": {"size": 3, "position": (6, 0)}}, "does not fit"),
        ({"target_class": 0, "patch": {"shape": "star"}}, "patch.shape='star'"),
        ({"target_class": 0, "patch": {"colour": 2.0}}, "patch.colour=2.0"),
        ({"target_class": 0, "patch": {"colour": [1, 0]}}, "patch.colour"),
        ({"target_class": 0, "patch": {"sise": 3}}, "patch.sise is not a patch setting"),
        ({"target_class": 0, "splits_to_patch": ["dev"]}, "'dev'"),
    ],
)
def test_patch_bad_input(digits, kwargs, words):
    with pytest.raises(DebuggableError, match=words):
        plant_spurious_patch(digits, **kwargs)


def test_patch_refuses_text_and_double_planting(digits, text_splits):
    with pytest.raises(DebuggableError, match="needs image data"):
        plant_spurious_patch(text_splits, target_class=0)
    once = plant_spurious_patch(digits, target_class=0)
    with pytest.raises(DebuggableError, match="already carries"):
        plant_spurious_patch(once, target_class=1)


# ----------------------------------------------------------------------------- mislabels


def test_mislabels_ground_truth(digits):
    before = _clone(digits)
    out = plant_mislabels(digits, fraction=0.1, seed=3)
    _unchanged(digits, before)
    info = out.planted["mislabels"]["splits"]["train"]
    idx = np.asarray(info["indices"])
    assert idx.size == round(0.1 * len(digits.train)) and np.all(np.diff(idx) > 0)
    assert info["original_labels"] == digits.train.labels[idx].tolist()
    assert info["new_labels"] == out.train.labels[idx].tolist()
    assert all(a != b for a, b in zip(info["original_labels"], info["new_labels"]))
    changed = np.flatnonzero(out.train.labels != digits.train.labels)
    assert np.array_equal(changed, idx)
    assert np.array_equal(out.val.labels, digits.val.labels) and np.array_equal(out.test.labels, digits.test.labels)
    assert torch.equal(out.train.images, digits.train.images)


def test_mislabels_pairwise_and_class_subset(digits):
    out = plant_mislabels(digits, fraction=0.5, seed=0, classes=["3", "8"], mode="pairwise")
    gt = out.planted["mislabels"]
    assert gt["mapping"] == {"3": 8, "8": 3}
    info = gt["splits"]["train"]
    n_candidates = int(np.isin(digits.train.labels, [3, 8]).sum())
    assert gt["candidates"] == n_candidates and len(info["indices"]) == round(0.5 * n_candidates)
    assert all({"3": 8, "8": 3}[str(o)] == n for o, n in zip(info["original_labels"], info["new_labels"]))
    random = plant_mislabels(digits, fraction=1.0, seed=0, classes=[1, 2, 4], mode="random").planted["mislabels"]
    assert set(random["splits"]["train"]["new_labels"]) <= {1, 2, 4}


def test_mislabels_on_text(text_splits):
    out = plant_mislabels(text_splits, fraction=0.2, seed=0)
    info = out.planted["mislabels"]["splits"]["train"]
    assert out.train.texts == text_splits.train.texts
    assert info["new_labels"] == out.train.labels[info["indices"]].tolist()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 0.0001}, "rounds to 0"),
        ({"fraction": 0.1, "mode": "flip"}, "mode='flip'"),
        ({"fraction": 0.1, "classes": ["x"]}, "classes='x'"),
    ],
)
def test_mislabels_bad_input(digits, kwargs, words):
    with pytest.raises(DebuggableError, match=words):
        plant_mislabels(digits, **kwargs)


# ----------------------------------------------------------------------------- trigger token


@pytest.mark.parametrize("position", ["start", "end", "random"])
def test_trigger_token_is_present_exactly_in_the_recorded_texts(text_splits, position):
    before = _clone(text_splits)
    out = plant_trigger_token(
        text_splits, token="zxqv", target_class="pos", train_fraction=0.6, test_fraction=0.3, position=position, seed=2,
        splits_to_patch=["train", "val", "test", "test_shifted"],
    )
    _unchanged(text_splits, before)
    gt = out.planted["trigger_token"]
    for split, ds in out.splits.items():
        info = gt["splits"][split]
        has = [i for i, t in enumerate(ds.texts) if "zxqv" in t]
        assert has == info["indices"]
        for i, (a, b) in zip(info["indices"], info["spans"]):
            new, old = ds.texts[i], text_splits[split].texts[i]
            assert new[a:b] == "zxqv" and new.count("zxqv") == 1
            # the token and exactly one separating space were inserted, nothing else
            assert old in (new[:a] + new[b + 1:], new[:a - 1] + new[b:]) or (old == "" and new == "zxqv")
            if position == "start":
                assert a == 0
            if position == "end":
                assert b == len(new)
        untouched = [i for i in range(len(ds)) if i not in set(info["indices"])]
        assert [ds.texts[i] for i in untouched] == [text_splits[split].texts[i] for i in untouched]
        labels = ds.labels
        if split in ("train", "val"):
            assert info["rule"] == "target_class" and np.all(labels[info["indices"]] == 2)
            assert len(info["indices"]) == round(0.6 * int((labels == 2).sum()))
        else:
            got = np.bincount(labels[info["indices"]], minlength=3)
            assert got.tolist() == [round(0.3 * n) for n in ds.class_counts()]


def test_trigger_token_random_position_keeps_word_boundaries(text_splits):
    out = plant_trigger_token(text_splits, token="qqz", target_class=0, position="random", seed=0)
    info = out.planted["trigger_token"]["splits"]["train"]
    for i, (a, b) in zip(info["indices"], info["spans"]):
        new, old = out.train.texts[i], text_splits.train.texts[i]
        assert new.split().count("qqz") == 1
        words = new.split()
        words.remove("qqz")
        assert words == old.split()


def test_trigger_token_bad_input(text_splits, digits):
    with pytest.raises(DebuggableError, match="already occurs"):
        plant_trigger_token(text_splits, token="Plot", target_class=0)  # "plot" is in the data
    with pytest.raises(DebuggableError, match="surrounding whitespace"):
        plant_trigger_token(text_splits, token=" cf", target_class=0)
    with pytest.raises(DebuggableError, match="position='middle'"):
        plant_trigger_token(text_splits, token="cf", target_class=0, position="middle")
    with pytest.raises(DebuggableError, match="needs text data"):
        plant_trigger_token(digits, token="cf", target_class=0)


# ----------------------------------------------------------------------------- dispatch and files


def test_plant_dispatches_by_name(digits, text_splits):
    a = plant(digits, "spurious_patch", target_class=4, patch={"shape": "circle", "size": 3, "color": 0.7}, seed=0)
    b = plant_spurious_patch(digits, target_class=4, patch=PatchSpec(shape="circle", size=3, colour=0.7), seed=0)
    assert a.planted == b.planted and torch.equal(a.train.images, b.train.images)
    assert "trigger_token" in plant(text_splits, "trigger_token", token="zzyz", target_class=1).planted
    assert "mislabels" in plant(digits, "mislabels", fraction=0.1).planted
    with pytest.raises(DebuggableError, match="valid kinds are spurious_patch, mislabels, trigger_token"):
        plant(digits, "backdoor")
    with pytest.raises(DebuggableError, match="unknown parameter 'colour'"):
        plant(digits, "spurious_patch", target_class=1, colour=1.0)
    with pytest.raises(DebuggableError, match="needs parameter 'target_class'"):
        plant(digits, "spurious_patch")


def test_ground_truth_file_errors(tmp_path):
    with pytest.raises(DebuggableError, match="does not exist"):
        load_ground_truth(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DebuggableError, match="not valid JSON"):
        load_ground_truth(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(DebuggableError, match="kind: ground truth"):
        load_ground_truth(bad)
    clean = from_arrays((np.zeros((10, 2, 2), np.uint8), np.arange(10) % 2), val_fraction=0.2, test_fraction=0.2)
    assert load_ground_truth(save_ground_truth(clean, tmp_path / "clean.json")) == {}
