"""Label checks the ``data`` stage runs before anything is written or trained.

A run fits a K-class decision layer on the training split and evaluates it on the
others, so the labels must satisfy, across splits, what every later stage assumes:

* at least two classes;
* one class name per class id 0..K-1, each id used (no gap, no extra names);
* every class has training examples (a class only in val or test is one the model
  never saw);

Each violation is one sentence naming the class, the splits involved and what to
change (the split fractions, the labels or ``class_names``).
"""

from __future__ import annotations

import numpy as np

from debuggable.data import DatasetSplits
from debuggable.errors import DebuggableError
from debuggable.run import RunConfig


def _name(class_names: list[str], k: int) -> str:
    return f"{class_names[k]!r} (id {k})" if class_names[k] != str(k) else f"id {k}"


def check_labels(splits: DatasetSplits, config: RunConfig | None = None) -> None:
    """Raise :class:`DebuggableError` unless the splits' labels fit a K-class run.

    Args:
        splits: the data set's splits (``train`` among them).
        config: the run's config, to name the split settings in the advice.
    """
    names = list(splits.class_names)
    k = len(names)
    where = f"data {splits.name!r}"
    if k < 2:
        raise DebuggableError(
            f"{where} has {k} class{'es' if k != 1 else ''} ({names}); expected at least two classes to tell apart."
        )
    counts = {}
    for split, ds in splits.splits.items():
        y = np.asarray(ds.labels, dtype=np.int64)
        if y.size and (y.min() < 0 or y.max() >= k):
            bad = int(y[(y < 0) | (y >= k)][0])
            raise DebuggableError(f"{where}: split {split!r} has label {bad}; expected ids 0..{k - 1} for its {k} class names.")
        counts[split] = np.bincount(y, minlength=k)
    total = sum(counts.values())
    used = np.flatnonzero(total > 0)
    if used.size < 2:
        only = _name(names, int(used[0])) if used.size else "none"
        raise DebuggableError(f"{where}: every example has the same class ({only}); expected at least two classes.")
    missing = np.flatnonzero(total == 0)
    if missing.size:
        if missing.min() > used.max():
            raise DebuggableError(
                f"{where}: class_names lists {k} names but the labels use only ids 0..{int(used.max())}, so "
                f"{', '.join(repr(names[int(c)]) for c in missing)} ha{'ve' if missing.size > 1 else 's'} no example; "
                f"expected one name per class present (drop the extra names or add their examples)."
            )
        c = int(missing[0])
        raise DebuggableError(
            f"{where}: no split has an example of class {_name(names, c)}, though ids above it occur; expected "
            f"contiguous class ids 0..{int(used.max())} (renumber the labels or drop the class from class_names)."
        )
    lacking = np.flatnonzero(counts["train"] == 0)
    if lacking.size:
        c = int(lacking[0])
        elsewhere = ", ".join(f"{s} {int(v[c])}" for s, v in counts.items() if s != "train" and v[c])
        params = dict(config.data.params) if config is not None else {}
        fractions = {key: params[key] for key in ("val_fraction", "test_fraction") if key in params}
        advice = (f"with {int(total[c])} example{'s' if total[c] != 1 else ''} of it the configured splits "
                  f"({', '.join(f'{key} {v}' for key, v in fractions.items()) or 'the loader defaults'}) leave none for "
                  "train; add examples or lower data.params val_fraction/test_fraction") if total[c] <= 3 else \
            "the model would never see it; give train examples of every class"
        raise DebuggableError(
            f"{where}: class {_name(names, c)} occurs in {elsewhere} but has no training example; "
            f"expected every class in train ({advice})."
        )
