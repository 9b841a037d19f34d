"""Benchmark: does feature visualisation work better on the robust CNN than on the standard one?

The paper (Sec. 2.2, Fig. 3) visualises features of a robust model because its
visualisations look like the concept the feature stands for. The demo's interpret
stage checks this on one visualisation per feature. This script repeats the check with
more seeds and features, so that a difference can be told from noise. It needs a demo
run directory, which holds both the inspected and the robust CNN. Without ``--run`` it
first runs ``debuggable demo`` into a temporary directory (about 2-3 minutes on 2 cores).

For every class, its ``--per-class`` features with the largest positive weights in the
sparse layer are taken; each feature belongs to the class that weighs it most
positively. The robust model's partner of feature j is the robust feature most
correlated with it on the test split, as in the interpret stage. Each feature is
visualised from noise on both models with ``--seeds`` seeds and the stage's settings
(:class:`debuggable.interpret.VisualisationSettings`, ``--steps`` Adam steps).

The score is the probability an independent judge gives the feature's class
(:class:`debuggable.interpret.ImageClassJudge`, a logistic regression on real training
images that never sees either CNN). The judge was chosen before any standard-vs-robust
numbers were seen: ``spectrum`` (log power spectra) is the primary judge; ``pixels``
(raw pooled pixels) is reported as a second opinion. For each judge the script prints:

* ``standard`` / ``robust``: the mean probability over features and seeds, and
  ``chance`` (1 / classes);
* ``difference``: robust minus standard, with a 95% bootstrap interval that
  resamples features (seeds of one feature stay together, as they are not independent);
* ``robust_better``: the share of features whose seed-averaged score is higher on the
  robust model.

``--init data`` runs the other recipe for robust models (Santurkar et al., 2019): start
from a draw of a Gaussian with the training images' mean and covariance
(:func:`debuggable.interpret.gaussian_seeds`, the same draws for both models) and climb
the feature inside an L2 ball (:func:`debuggable.interpret.feature_attack`) of radius
``--eps``, by default 0.103 per pixel RMS, Santurkar et al.'s eps = 40 on 224 x 224 x 3
ImageNet images, i.e. 2.9 on 28 x 28. The seeds keep the data's layout, so for this
recipe the ``pixels`` judge is the primary one (chosen before the numbers were seen);
``seed`` gives the judges' score of the seeds themselves, the level ascent starts from,
and a ``climb`` row the share of the change's energy at low spatial frequencies.

Prints one JSON object per line. Usage::

    python benchmarks/visualisation.py [--run DIR] [--per-class 3] [--seeds 5] [--steps N]
        [--parametrisation fourier|pixel] [--jitter N] [--judges spectrum,pixels] [--threads 2]
        [--bootstrap 10000] [--init noise|data [--eps E] [--attack-steps N]]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from debuggable.interpret import (
    SANTURKAR_RMS,
    ImageClassJudge,
    VisualisationSettings,
    climb_from_seeds,
    feature_visualisation,
    gaussian_seeds,
    l2_radius,
    low_frequency_share,
)
from debuggable.layer import SparseDecisionLayer
from debuggable.pipeline.data_stage import build_data
from debuggable.pipeline.extract_stage import make_backbone, open_store
from debuggable.pipeline.interpret_stage import robust_partners
from debuggable.pipeline.stage import StageContext
from debuggable.run import RunDirectory


def features_by_class(layer: SparseDecisionLayer, per_class: int) -> tuple[list[int], list[int]]:
    """``(features, classes)``: each class's ``per_class`` largest positive weights; a feature
    chosen by several classes is kept once, for the class that weighs it most."""
    best: dict[int, tuple[float, int]] = {}
    for c in range(layer.num_classes):
        positive = [(j, w) for j, w in layer.top_features(c) if w > 0][:per_class]
        for j, w in positive:
            if j not in best or w > best[j][0]:
                best[j] = (w, c)
    feats = sorted(best)
    return feats, [best[j][1] for j in feats]


def cluster_bootstrap(diff: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of ``diff`` (features x seeds), resampling whole features."""
    per_feature = diff.mean(1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_feature), size=(n_boot, len(per_feature)))
    means = per_feature[idx].mean(1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def demo_run(parent: Path) -> Path:
    exe = shutil.which("debuggable") or str(Path(sys.executable).with_name("debuggable"))
    out = parent / "demo"
    print(f"# no --run: running `debuggable demo --out {out}` first", file=sys.stderr)
    done = subprocess.run([exe, "demo", "--out", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"debuggable demo failed with exit status {done.returncode}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=None, help="a demo run directory (default: run the demo into a temporary one)")
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None, help="Adam steps (default: the run's interpret.vis_steps)")
    ap.add_argument("--parametrisation", choices=("fourier", "pixel"), default=None,
                    help="image parametrisation (default: the stage's, fourier); pixel with --jitter 0 is plain "
                         "gradient ascent, the usual recipe for robust models")
    ap.add_argument("--jitter", type=int, default=None, help="random shift in pixels per step (default: the stage's, 1)")
    ap.add_argument("--init", choices=("noise", "data"), default="noise",
                    help="noise: feature visualisation from noise (the stage's); data: L2 ascent from Gaussian seeds "
                         "with the training images' mean and covariance")
    ap.add_argument("--eps", type=float, default=None,
                    help="--init data: L2 radius (default 0.103 * sqrt(pixels), Santurkar et al.'s ImageNet ratio)")
    ap.add_argument("--attack-steps", type=int, default=60, help="--init data: ascent steps (step 2.5 eps / steps)")
    ap.add_argument("--figure", default=None,
                    help="draw seed 0's images (PNG): per feature, the start (--init data), standard and robust")
    ap.add_argument("--judges", default="spectrum,pixels")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--bootstrap", type=int, default=10000)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.run) if args.run else demo_run(Path(tmp))
        return _bench(path, args)


def _bench(path: Path, args) -> int:
    t0 = time.perf_counter()
    run = RunDirectory.open(path)
    layer = SparseDecisionLayer.load(run.path / "layer")
    feats, classes = features_by_class(layer, args.per_class)
    x = open_store(run, "inspected").split("test").to_numpy("features").astype(np.float64)
    r = open_store(run, "robust").split("test").to_numpy("features").astype(np.float64)
    match, _ = robust_partners(x, r, feats)
    models = {"standard": (make_backbone(run, "inspected").eval(), feats),
              "robust": (make_backbone(run, "robust").eval(), match)}
    splits = build_data(run.config, StageContext(device=torch.device("cpu"), progress=False))
    images, labels = splits["train"].batch(np.arange(len(splits["train"])))
    images = images.float()
    judges = {name: ImageClassJudge(features=name, seed=run.config.seed).fit(images, labels)
              for name in args.judges.split(",")}
    cfg = run.config.interpret
    vis = VisualisationSettings(steps=args.steps or (cfg.vis_steps if cfg is not None and cfg.vis_steps > 0 else 64))
    if args.parametrisation is not None:
        vis = dataclasses.replace(vis, parametrisation=args.parametrisation)
    if args.jitter is not None:
        vis = dataclasses.replace(vis, jitter=args.jitter)
    shape = tuple(int(s) for s in images.shape[1:])
    eps = args.eps if args.eps is not None else l2_radius(shape, SANTURKAR_RMS)
    scores = {name: {m: np.zeros((len(feats), args.seeds)) for m in (*models, "seed")} for name in judges}
    drawn: dict[str, np.ndarray] = {}
    smooth = {m: np.zeros((len(feats), args.seeds)) for m in models}  # --init data: low-frequency share of the climb
    for s in range(args.seeds):
        start = gaussian_seeds(images, len(feats), seed=s) if args.init == "data" else None
        if s == 0 and start is not None:
            drawn["start"] = start.numpy()
        for m, (backbone, fs) in models.items():
            if start is None:
                v = feature_visualisation(backbone, fs, shape=shape, steps=vis.steps, lr=vis.lr, jitter=vis.jitter,
                                          parametrisation=vis.parametrisation, seed=s).numpy()
            else:
                v = climb_from_seeds(backbone, start, fs, eps=eps, steps=args.attack_steps).numpy()
                smooth[m][:, s] = low_frequency_share(v - start.numpy())
            for name, judge in judges.items():
                scores[name][m][:, s] = judge.class_probability(v, classes)
            if s == 0:
                drawn[m] = v
        for name, judge in judges.items():
            scores[name]["seed"][:, s] = judge.class_probability(start.numpy(), classes) if start is not None else np.nan
    recipe = ({"init": "noise", "steps": vis.steps, "parametrisation": vis.parametrisation, "jitter": vis.jitter}
              if args.init == "noise" else {"init": "data", "eps": eps, "attack_steps": args.attack_steps})
    print(json.dumps({"kind": "setup", "run": str(path), "features": feats, "classes": classes,
                      "robust_features": match, "seeds": args.seeds, **recipe,
                      "seconds": round(time.perf_counter() - t0, 1)}))
    if args.init == "data":
        row = {"kind": "climb", "low_frequency_share": {m: float(v.mean()) for m, v in smooth.items()},
               "white_noise": float(low_frequency_share(np.random.default_rng(0).normal(size=(64, *shape))).mean())}
        print(json.dumps(row))
        print(f"   low-frequency share of the change from the seed: standard {row['low_frequency_share']['standard']:.0%}, "
              f"robust {row['low_frequency_share']['robust']:.0%} (white noise {row['white_noise']:.0%})", file=sys.stderr)
    if args.figure:
        _draw(drawn, feats, match, classes, args.figure, recipe)
    for name, judge in judges.items():
        std, rob = scores[name]["standard"], scores[name]["robust"]
        diff = rob - std
        lo, hi = cluster_bootstrap(diff, args.bootstrap)
        row = {"kind": "judge", "judge": name, "chance": judge.chance, "standard": float(std.mean()),
               "robust": float(rob.mean()), "difference": float(diff.mean()), "difference_ci95": [lo, hi],
               "robust_better": float((diff.mean(1) > 0).mean()), "n_features": len(feats), "n_seeds": args.seeds,
               "seed": None if args.init == "noise" else float(scores[name]["seed"].mean())}
        print(json.dumps(row))
        verdict = "robust better" if lo > 0 else ("standard better" if hi < 0 else "no clear difference")
        start = "" if row["seed"] is None else f", seeds {row['seed']:.3f}"
        print(f"   {name} judge: standard {row['standard']:.3f}, robust {row['robust']:.3f} (chance {judge.chance:.2f}{start}); "
              f"difference {row['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {verdict}; robust higher on "
              f"{row['robust_better']:.0%} of {len(feats)} features", file=sys.stderr)
    return 0


def _draw(images: dict[str, np.ndarray], feats: list[int], match: list[int], classes: list[int], out: str,
          recipe: dict) -> None:
    """One column per feature, one row per entry of ``images`` ((F, C, H, W) in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(images)
    fig, axes = plt.subplots(len(rows), len(feats), figsize=(0.9 * len(feats), 1.0 * len(rows) + 0.6), squeeze=False)
    for r, name in enumerate(rows):
        for f in range(len(feats)):
            ax = axes[r, f]
            img = np.transpose(images[name][f], (1, 2, 0))
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"#{feats[f]}/#{match[f]}\nclass {classes[f]}", fontsize=6)
            if f == 0:
                ax.set_ylabel(name, fontsize=8)
    how = ("from noise" if recipe["init"] == "noise"
           else f"L2 ascent (eps {recipe['eps']:.1f}) from Gaussian seeds with the data's mean and covariance")
    fig.suptitle(f"feature visualisation {how}: standard feature / robust partner", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)
    print(f"   figure: {out}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
