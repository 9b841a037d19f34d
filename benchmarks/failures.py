"""Benchmark: Barlow failure analysis at ImageNet scale (debuggable.failures).

Synthetic features shaped like a robust ResNet-50's penultimate layer on the ImageNet
training set: ``--classes`` (1000) classes x ``--per-class`` (1300) examples x
``--dim`` (2048) non-negative features, written once to a float32 memory map on disk
(the analysis reads it, never recomputes it, and hands it to the joblib workers as a
memory map). Each class c has a planted failure condition: a random 20% of its
examples carry a large value of feature ``planted(c) = (37 c + 11) mod dim``; the
"model under inspection" fails on 60% of those and on 8% of the others, predicting a
random other class. So every label group has a known failure mode, and every
prediction group receives false positives from other classes.

The timed run is ``analyze_failures`` over both groupings (``2 x classes`` groups) with
trees of the requested depths, ``n_jobs`` worker processes, progress off. Reported:

* ``"kind": "analysis"``: wall time, groups, trees, ms per group, failure modes, the
  valid-leaf fraction per grouping and depth, and ``planted_recovered``: the share of
  label groups whose highest-IV leaf at the deepest depth splits on the planted feature;
* ``"kind": "mi_reference"``: the per-group time of the vectorised mutual information
  against scikit-learn's ``mutual_info_classif`` (the kNN estimator the reference code
  path would use) on the same few groups, with the projected full-run time of both, and
  whether both rank the planted feature first;
* ``"kind": "generate"``: the time to write the synthetic features (not part of the
  analysis).

One JSON object per line on stdout; a readable summary on stderr.

Examples::

    python benchmarks/failures.py                          # 1000 x 1300 x 2048, depth 3, 2 jobs
    python benchmarks/failures.py --classes 100            # a tenth of the classes
    python benchmarks/failures.py --depths 1,2,3 --n-jobs 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def emit(obj: dict) -> None:
    print(json.dumps(obj, default=float), flush=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def planted_feature(c: np.ndarray | int, dim: int):
    return (37 * np.asarray(c) + 11) % dim


def generate(path: Path, classes: int, per_class: int, dim: int, seed: int):
    """Write the features memory map class by class; return (memmap, labels, preds, condition)."""
    n = classes * per_class
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    condition = rng.random(n) < 0.2
    fails = np.where(condition, rng.random(n) < 0.6, rng.random(n) < 0.08)
    other = (labels + rng.integers(1, classes, size=n)) % classes
    preds = np.where(fails, other, labels)
    for c in range(classes):
        lo, hi = c * per_class, (c + 1) * per_class
        block = rng.standard_normal((per_class, dim), dtype=np.float32)
        np.maximum(block, 0.0, out=block)  # ReLU-like: half the activations are 0
        j = planted_feature(c, dim)
        block[condition[lo:hi], j] += 3.0
        x[lo:hi] = block
    x.flush()
    return np.load(path, mmap_mode="r"), labels, preds, condition


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=1300)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--depths", default="3", help="comma-separated tree depths (default 3)")
    ap.add_argument("--k", type=int, default=10, help="features kept per group by mutual information")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--mi-reference-groups", type=int, default=3,
                    help="groups timed with scikit-learn's mutual_info_classif (0: skip)")
    ap.add_argument("--workdir", default=None, help="where the features memory map goes (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from debuggable.failures import analyze_failures, class_groups, select_features

    torch.set_num_threads(1 if args.n_jobs > 1 else torch.get_num_threads())
    depths = [int(d) for d in args.depths.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-failures-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"features_{args.classes}x{args.per_class}x{args.dim}.npy"
    size = dict(classes=args.classes, per_class=args.per_class, dim=args.dim, rows=args.classes * args.per_class)
    try:
        t0 = time.perf_counter()
        x, labels, preds, condition = generate(path, args.classes, args.per_class, args.dim, args.seed)
        gen = time.perf_counter() - t0
        emit({"kind": "generate", **size, "gib": x.nbytes / 2**30, "seconds": gen})
        say(f"generated {size['rows']} x {args.dim} float32 ({x.nbytes / 2**30:.1f} GiB) in {gen:.1f} s")

        t0 = time.perf_counter()
        res = analyze_failures(x, labels, preds, groupings=("label", "prediction"), depths=depths, k=args.k,
                               n_jobs=args.n_jobs, progress=False, min_samples_leaf=5)
        wall = time.perf_counter() - t0
        groups = len({t.group["name"] for t in res.trees}) + len(res.skipped)
        deepest = max(depths)
        label_trees = [t for t in res.trees if t.group["grouping"] == "label" and t.depth == deepest]
        hits = [int(planted_feature(t.group["class"], args.dim)) in t.tree.features_of(t.top_leaf) for t in label_trees]
        vlf = {g: {d: c["fraction"] for d, c in per.items()} for g, per in res.valid_leaf_fraction().items()}
        emit({"kind": "analysis", **size, "depths": depths, "k": args.k, "n_jobs": args.n_jobs,
              "cpu_count": os.cpu_count(), "groups": groups, "trees": len(res.trees), "skipped": len(res.skipped),
              "wall_s": wall, "ms_per_group": 1000 * wall / max(1, groups),
              "failure_modes": len(res.failure_modes()), "valid_leaf_fraction": vlf,
              "planted_recovered": float(np.mean(hits)) if hits else None})
        say(f"analysis: {groups} groups x depths {depths} with {args.n_jobs} jobs in {wall:.1f} s "
            f"({1000 * wall / max(1, groups):.1f} ms per group); planted feature recovered in "
            f"{np.mean(hits):.1%} of label groups; valid-leaf fraction {vlf}")

        if args.mi_reference_groups > 0:
            from sklearn.feature_selection import mutual_info_classif

            sample = class_groups(labels, preds, "label", classes=range(min(args.mi_reference_groups, args.classes)))
            ours, ref, ours_hit, ref_hit = [], [], [], []
            for g in sample:
                xg = np.asarray(x[g.indices], dtype=np.float32)
                fg = (labels != preds)[g.indices]
                t0 = time.perf_counter()
                cols, _ = select_features(xg, fg, args.k)
                ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                mi_ref = mutual_info_classif(xg, fg, discrete_features=False, random_state=0)
                ref.append(time.perf_counter() - t0)
                j = int(planted_feature(g.cls, args.dim))
                ours_hit.append(int(cols[0]) == j)
                ref_hit.append(int(np.argmax(mi_ref)) == j)
            n_groups = 2 * args.classes
            emit({"kind": "mi_reference", **size, "groups_timed": len(sample),
                  "debuggable_s_per_group": float(np.mean(ours)), "sklearn_knn_s_per_group": float(np.mean(ref)),
                  "speedup": float(np.mean(ref) / np.mean(ours)),
                  "projected_full_debuggable_s": float(np.mean(ours)) * n_groups,
                  "projected_full_sklearn_s": float(np.mean(ref)) * n_groups,
                  "planted_ranked_first_debuggable": float(np.mean(ours_hit)),
                  "planted_ranked_first_sklearn": float(np.mean(ref_hit))})
            say(f"mutual information per group: {np.mean(ours) * 1000:.1f} ms (binned, vectorised) vs "
                f"{np.mean(ref):.2f} s (scikit-learn kNN), x{np.mean(ref) / np.mean(ours):.0f}")
    finally:
        if path.exists():
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
