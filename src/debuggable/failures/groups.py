"""Groupings of a benchmark whose failures are explained one group at a time.

Barlow analyses each class separately (Sec. 5): the *label* grouping of class c holds
every example labelled c (its failures are c's false negatives), the *prediction*
grouping every example predicted as c (its failures are false positives). Any other
set of examples can be analysed the same way, e.g. a pair of classes the model
confuses (:func:`confusion_group`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from debuggable.errors import DebuggableError

GROUPINGS = ("label", "prediction")


@dataclass
class Group:
    """One set of examples whose failures get their own trees.

    Attributes:
        name: readable name, e.g. ``"label=horse"``.
        grouping: ``"label"``, ``"prediction"`` or ``"custom"``.
        cls: the class of a label or prediction grouping (``None`` for custom groups).
        indices: (n,) int64 row indices into the analysed arrays, ascending.
        classes: the classes a custom group is made of (informational).
    """

    name: str
    grouping: str
    cls: int | None
    indices: np.ndarray
    classes: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def describe(self) -> dict:
        return {"name": self.name, "grouping": self.grouping, "class": self.cls, "n": len(self),
                "classes": list(self.classes)}


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def class_groups(
    labels: np.ndarray,
    preds: np.ndarray,
    grouping: str,
    *,
    classes: Iterable[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> list[Group]:
    """One group per class for ``grouping`` (``"label"`` or ``"prediction"``).

    Classes without any example in the grouping give no group.

    Args:
        labels: (N,) int labels.
        preds: (N,) int predictions of the model under inspection.
        grouping: ``"label"`` (false negatives) or ``"prediction"`` (false positives).
        classes: the classes to group (default: every class present).
        class_names: names used in the group names.
    """
    if grouping not in GROUPINGS:
        raise DebuggableError(f"grouping: {grouping!r} is not a grouping; expected one of {list(GROUPINGS)}.")
    key = np.asarray(labels if grouping == "label" else preds)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    present, starts = np.unique(sorted_key, return_index=True)
    bounds = dict(zip(present.tolist(), zip(starts.tolist(), list(starts[1:]) + [sorted_key.size])))
    wanted = present.tolist() if classes is None else [int(c) for c in classes]
    groups = []
    for c in wanted:
        if c not in bounds:
            continue
        lo, hi = bounds[c]
        groups.append(Group(f"{grouping}={_class_name(c, class_names)}", grouping, int(c), np.sort(order[lo:hi])))
    return groups


def confusion_group(labels: np.ndarray, preds: np.ndarray, classes: Sequence[int], *, name: str | None = None,
                    class_names: Sequence[str] | None = None) -> Group:
    """The examples labelled *and* predicted as one of ``classes`` (e.g. a confused pair).

    Its failures are the confusions among those classes.
    """
    classes = tuple(int(c) for c in classes)
    if len(classes) < 2:
        raise DebuggableError(f"classes: expected at least two classes for a confusion group, got {list(classes)}.")
    mask = np.isin(labels, classes) & np.isin(preds, classes)
    name = name or "confusion " + " vs ".join(_class_name(c, class_names) for c in classes)
    return Group(name, "custom", None, np.flatnonzero(mask), classes)


def custom_group(name: str, members, n_rows: int) -> Group:
    """A user-defined group from a boolean mask of length ``n_rows`` or row indices."""
    members = np.asarray(members)
    if members.dtype == np.bool_:
        if members.shape != (n_rows,):
            raise DebuggableError(f"group {name!r}: a boolean mask must have shape ({n_rows},), got {members.shape}.")
        idx = np.flatnonzero(members)
    else:
        if members.ndim != 1 or not (np.issubdtype(members.dtype, np.integer) or members.size == 0):
            raise DebuggableError(f"group {name!r}: expected a boolean mask or 1-D integer row indices, got {members.dtype}.")
        idx = np.unique(members.astype(np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= n_rows):
            raise DebuggableError(f"group {name!r}: row indices must lie in 0..{n_rows - 1}, got {idx[0]}..{idx[-1]}.")
    return Group(name, "custom", None, idx)
