"""Datasets: built-in demo data, the user's own data, and planted bugs with ground truth.

Every loader returns a :class:`DatasetSplits` (``train``, ``val``, ``test`` and maybe
shifted test splits) of :class:`ImageArrayDataset` (items (C, H, W) float32 in [0, 1])
or :class:`TextDataset` (items strings). :func:`load_dataset` picks a loader by name,
as config files do; :func:`plant` adds a named bug and records its ground truth in
``DatasetSplits.planted``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from debuggable.data._common import check_kwargs, stratified_partition, stratified_split
from debuggable.data.base import Dataset, DatasetSplits, ImageArrayDataset, TextDataset
from debuggable.data.builtin import ANIMAL_MNIST_CLASSES, load_animal_mnist, load_digits
from debuggable.data.planted import (
    PLANTERS,
    PatchSpec,
    list_planters,
    load_ground_truth,
    patch_mask,
    patch_masks,
    plant,
    plant_mislabels,
    plant_spurious_patch,
    plant_trigger_token,
    save_ground_truth,
)
from debuggable.data.text import load_vader_movies, parse_vader_ground_truth, vader_ground_truth_files
from debuggable.data.user import from_arrays, load_arrays, load_image_folder, load_text_file
from debuggable.errors import DebuggableError

#: name -> (loader, one-line description)
DATASETS: dict[str, tuple[Callable[..., DatasetSplits], str]] = {
    "animal_mnist": (load_animal_mnist, "Animal-MNIST: 10,000 grayscale 28x28 animal drawings, 10 classes (built in)"),
    "digits": (load_digits, "scikit-learn digits: 1,797 grayscale 8x8 images, 10 classes (built in)"),
    "vader_movies": (load_vader_movies, "VADER movie-review snippets, binary sentiment, plus tweet/Amazon/NYT test domains"),
    "image_folder": (load_image_folder, "your images in one folder per class (root=...)"),
    "arrays": (load_arrays, "your NumPy arrays in a .npz file (path=...)"),
    "text_file": (load_text_file, "your labelled texts in a CSV or JSONL file (path=...)"),
}


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts, sorted."""
    return sorted(DATASETS)


def describe_datasets() -> dict[str, str]:
    """Name -> one-line description of every data set :func:`load_dataset` accepts."""
    return {name: DATASETS[name][1] for name in list_datasets()}


def load_dataset(
    name: str,
    *,
    plant_bugs: Sequence[Mapping[str, Any]] | None = None,
    **params: Any,
) -> DatasetSplits:
    """Load the data set called ``name`` with the loader's keyword ``params``.

    Args:
        name: one of :func:`list_datasets`.
        plant_bugs: optional bugs to plant afterwards, each ``{"kind": ..., **params}``
            as for :func:`plant`, applied in order.
        **params: the loader's arguments (e.g. ``seed=0``, ``root=...``).

    Returns:
        The :class:`DatasetSplits`.

    Raises:
        DebuggableError: for an unknown name (listing the valid ones) or parameter.
    """
    if name not in DATASETS:
        raise DebuggableError(f"dataset {name!r} is unknown; valid names are {', '.join(list_datasets())}.")
    loader = DATASETS[name][0]
    check_kwargs(f"load_dataset({name!r})", loader, params)
    splits = loader(**params)
    for bug in plant_bugs or ():
        if not isinstance(bug, Mapping) or "kind" not in bug:
            raise DebuggableError(f"plant_bugs entry {bug!r} is invalid; expected a mapping with a 'kind' key.")
        bug = dict(bug)
        splits = plant(splits, bug.pop("kind"), **bug)
    return splits


__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "DATASETS",
    "Dataset",
    "DatasetSplits",
    "ImageArrayDataset",
    "PLANTERS",
    "PatchSpec",
    "TextDataset",
    "describe_datasets",
    "from_arrays",
    "list_datasets",
    "list_planters",
    "load_animal_mnist",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_ground_truth",
    "load_image_folder",
    "load_text_file",
    "load_vader_movies",
    "parse_vader_ground_truth",
    "patch_mask",
    "patch_masks",
    "plant",
    "plant_mislabels",
    "plant_spurious_patch",
    "plant_trigger_token",
    "save_ground_truth",
    "stratified_partition",
    "stratified_split",
    "vader_ground_truth_files",
]
