"""The data-set registry: load_dataset and list_datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debuggable.data import describe_datasets, list_datasets, list_planters, load_dataset, load_digits
from debuggable.errors import DebuggableError


def test_list_datasets():
    names = list_datasets()
    assert names == sorted(["animal_mnist", "digits", "vader_movies", "image_folder", "arrays", "text_file"])
    assert set(describe_datasets()) == set(names)
    assert list_planters() == ["mislabels", "spurious_patch", "trigger_token"]


def test_load_dataset_matches_the_loader():
    a = load_dataset("digits", seed=1, val_fraction=0.15)
    b = load_digits(seed=1, val_fraction=0.15)
    assert torch.equal(a.val.images, b.val.images) and np.array_equal(a.val.labels, b.val.labels)


def test_load_dataset_plants_bugs():
    s = load_dataset(
        "animal_mnist", limit_per_class=10, seed=0,
        plant_bugs=[{"kind": "spurious_patch", "target_class": 7, "patch": {"size": 3}}, {"kind": "mislabels", "fraction": 0.1}],
    )
    assert set(s.planted) == {"spurious_patch", "mislabels"}


def test_load_dataset_user_files(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((20, 3, 3), np.uint8), y=np.arange(20) % 2)
    assert len(load_dataset("arrays", path=str(path), val_fraction=0.2, test_fraction=0.2).test) == 4
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    assert load_dataset("text_file", path=csv).class_names == ["a", "b"]


def test_load_dataset_errors():
    with pytest.raises(DebuggableError, match="valid names are animal_mnist, arrays, digits, image_folder, text_file, vader_movies"):
        load_dataset("cifar10")
    with pytest.raises(DebuggableError, match="unknown parameter 'sede'.*seed"):
        load_dataset("digits", sede=1)
    with pytest.raises(DebuggableError, match="needs parameter 'root'"):
        load_dataset("image_folder")
    with pytest.raises(DebuggableError, match="'kind' key"):
        load_dataset("digits", plant_bugs=[{"fraction": 0.1}])
