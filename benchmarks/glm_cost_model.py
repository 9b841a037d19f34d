"""Cost model of the GLM path: seconds per lambda from the work the solver counts.

Every lambda of ``elastic_net_path`` records what its products with ``X`` cost
(``path.info["work"]``: multiply-add FLOPs by dtype, bytes of ``X`` read, products),
its outer iterations, certificates, inner steps and working-set size.
``benchmarks/glm_path.py`` writes them into its ``"kind": "lambda"`` records
(``solver_detail``). This script fits, per lambda,

    seconds = (f32 + f64 * P32 / P64) * c_p + e * c_e + w * c_w + c_0

where ``f32`` and ``f64`` are the counted product FLOPs in float32 and float64 (a
float64 FLOP weighs as this machine's measured float32 / float64 peak ratio
``P32 / P64``: fitting the two rates apart is ill-conditioned, their counts rise
together), ``e =
n K (outer iterations + certificates)`` the elementwise ``(n, K)`` work (softmax,
residuals, line-search trials: a fixed number of passes per outer step), ``w = inner
steps x m K (x m below 200 classes, where the curvature model is a Kronecker product)``
the working-set model's work, and ``c_0`` a fixed cost per lambda; non-negative least
squares on relative errors.

It then

* checks the model against every measured run: leave one shape out, fit on the
  others, predict the held-out shape's whole path and print predicted / measured;
* measures this machine's own peaks (float32 and float64 matrix products, memory copy
  bandwidth) to express the fitted rates as fractions of them;
* predicts the ImageNet shape (1,281,167 x 2048 x 1000) on this CPU and on 1 and 8
  GPUs: the work of the measured shape nearest to it, scaled to ImageNet's size, at
  the GPU's published peaks times the fractions this CPU reached of its own (an
  assumption, stated in the output; no GPU figure here was measured).

Usage::

    python benchmarks/glm_path.py --size k10 --size k25 --size k100 --size k1000 \\
        --lambda-min-ratio 1e-2 --solvers debuggable --threads 2 > runs.jsonl
    python benchmarks/glm_cost_model.py runs.jsonl --plot docs/img/glm_cost_model.png

Output: one JSON object per line on stdout, a readable summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np

IMAGENET = (1_281_167, 2048, 1000)

#: NVIDIA H200 SXM, published peaks (dense, no sparsity): FP32 and FP64 (tensor-core
#: DGEMM) throughput in FLOP/s, HBM3e bandwidth in bytes/s, NVLink all-reduce bandwidth.
GPU = {"name": "H200 SXM (published peaks)", "flops_float32": 67e12, "flops_float64": 67e12,
       "bandwidth": 4.8e12, "nvlink": 450e9, "launch_s": 8e-6}
#: Kernels per inner step of the working-set model on a GPU (each at least a launch).
INNER_KERNELS = 20

#: The fitted terms, in seconds per unit: product FLOPs (float32-equivalent), (n, K)
#: element-passes, working-set model work, lambdas.
REGRESSORS = ("products", "elementwise", "working_set", "per_lambda")


def design_matrix(x: np.ndarray, ratio: float) -> np.ndarray:
    """``(L, 5)`` counted work -> the ``(L, 4)`` regressors, float64 FLOPs weighted by
    ``ratio`` (float32 over float64 peak)."""
    return np.column_stack([x[:, 0] + ratio * x[:, 1], x[:, 2], x[:, 3], x[:, 4]])


def emit(obj: dict) -> None:
    print(json.dumps(obj, default=float), flush=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def shape_of(label: str) -> tuple[int, int, int]:
    n, d, k = (int(v) for v in label.lower().split("x"))
    return n, d, k


def features(detail: dict, n: int, k: int) -> np.ndarray:
    """The regressors of one lambda (see the module docstring)."""
    m = max(int(detail["working_set"]), 1)
    model = m * k * (m if k < 200 else 1)
    return np.array([detail["flops_float32"], detail["flops_float64"],
                     n * k * (detail["n_iter"] + detail.get("certificates", 1)),
                     detail.get("inner", 0) * model, 1.0], dtype=np.float64)


def load(paths: list[str], threads: int | None) -> dict[str, list[dict]]:
    """Quiet runs of our solver with counted work: ``{size label: [run, ...]}``, each run
    ``{"x": (L, 5) regressors, "t": (L,) seconds, "total": s, "threads": t}``."""
    lambdas: dict[tuple, list] = defaultdict(list)
    solvers: dict[tuple, dict] = {}
    for path in paths:
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                if rec.get("solver") != "debuggable" or rec.get("condition", "quiet") != "quiet":
                    continue
                key = (path, rec["size"], rec["run"])
                if rec["kind"] == "lambda" and "solver_detail" in rec:
                    lambdas[key].append(rec)
                elif rec["kind"] == "solver":
                    solvers[key] = rec
    runs: dict[str, list[dict]] = defaultdict(list)
    for key, recs in lambdas.items():
        summ = solvers.get(key, {})
        if threads is not None and summ.get("threads") != threads:
            continue
        n, _, k = shape_of(key[1])
        recs.sort(key=lambda r: r["index"])
        runs[key[1]].append({"x": np.stack([features(r["solver_detail"], n, k) for r in recs]),
                             "inner": np.array([r["solver_detail"].get("inner", 0) for r in recs], dtype=np.float64),
                             "products": np.array([r["solver_detail"]["products"] for r in recs], dtype=np.float64),
                             "t": np.array([r["time"] for r in recs]), "total": float(sum(r["time"] for r in recs)),
                             "threads": summ.get("threads"), "n_lambdas": len(recs)})
    return dict(runs)


def fit(runs: dict[str, list[dict]], ratio: float) -> np.ndarray:
    """Non-negative coefficients (seconds per unit of each regressor), least relative error."""
    from scipy.optimize import nnls

    X = np.concatenate([design_matrix(r["x"], ratio) for rs in runs.values() for r in rs])
    t = np.concatenate([r["t"] for rs in runs.values() for r in rs])
    scale = X.max(0)
    scale[scale == 0] = 1.0
    w = 1.0 / np.maximum(t, 1e-3)  # relative errors: every lambda counts, not just the slow ones
    coef, _ = nnls((X / scale) * w[:, None], t * w)
    return coef / scale


def predict(x: np.ndarray, coef: np.ndarray, ratio: float) -> np.ndarray:
    """Seconds per lambda of the counted work ``x`` under the fitted ``coef``."""
    return design_matrix(x, ratio) @ coef


def machine_peaks(threads: int) -> dict[str, float]:
    """This CPU's float32/float64 matrix-product rates (FLOP/s) and copy bandwidth (bytes/s)."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dt in (("flops_float32", torch.float32), ("flops_float64", torch.float64)):
        a, b = torch.randn(2048, 2048, dtype=dt), torch.randn(2048, 2048, dtype=dt)
        a @ b
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * 2048**3 / best
    src, dst = torch.randn(32 << 20, dtype=torch.float64), torch.empty(32 << 20, dtype=torch.float64)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    out["bandwidth"] = 2 * src.numel() * 8 / best  # read + write
    return out


def scaled_work(run: dict, measured: tuple[int, int, int], target: tuple[int, int, int]) -> np.ndarray:
    """The measured run's per-lambda work scaled to ``target``'s shape: products by
    ``n D K``, elementwise work by ``n K``, the working-set model by its ``m`` (taken to
    grow with ``D``) and ``K``."""
    (n0, d0, k0), (n1, d1, k1) = measured, target
    x = run["x"].copy()
    x[:, 0:2] *= (n1 * d1 * k1) / (n0 * d0 * k0)
    x[:, 2] *= (n1 * k1) / (n0 * k0)
    x[:, 3] *= (d1 / d0) ** (2 if k1 < 200 else 1) * (k1 / k0)
    return x


def gpu_seconds(run: dict, x: np.ndarray, coef: np.ndarray, peaks: dict[str, float], shape: tuple[int, int, int],
                gpus: int = 1) -> float:
    """Predicted GPU seconds of the per-lambda work ``x`` (regressors scaled to ``shape``).

    Products run at the GPU's published peaks times the fraction of this CPU's measured
    float32 peak the fitted rate reached; elementwise work moves as many bytes per element as
    the fitted rate implies at this CPU's copy bandwidth, at the GPU's bandwidth; the
    working-set model scales by the float64 peaks but costs at least ``INNER_KERNELS``
    launches per inner step; the fixed cost per lambda stays (it is host-side). On
    ``gpus`` GPUs the row terms split over them and every product adds a ring
    all-reduce of a ``(D, K)`` float64 array over NVLink.
    """
    _, d, k = shape
    frac = min((1 / coef[0]) / peaks["flops_float32"], 1.0) if coef[0] > 0 else 1.0
    bytes_per_elem = coef[1] * peaks["bandwidth"]
    rows = (x[:, 0] / (frac * GPU["flops_float32"]) + x[:, 1] / (frac * GPU["flops_float64"])
            + x[:, 2] * bytes_per_elem / GPU["bandwidth"]) / gpus
    model = np.maximum(x[:, 3] * coef[2] * peaks["flops_float64"] / GPU["flops_float64"],
                       run["inner"] * INNER_KERNELS * GPU["launch_s"])
    t = rows + model + coef[3]
    if gpus > 1:
        t = t + run["products"] * (2 * (gpus - 1) / gpus * 8 * d * k / GPU["nvlink"] + 30e-6)
    return float(t.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="JSONL outputs of benchmarks/glm_path.py (solver debuggable)")
    ap.add_argument("--threads", type=int, default=2, help="fit the runs made with this many threads (default 2)")
    ap.add_argument("--n-lambdas", type=int, default=100, help="lambdas of the predicted ImageNet path (default 100)")
    ap.add_argument("--template", default=None, help="the measured size whose work is scaled to ImageNet "
                    "(default: the one with the most classes, then the most features)")
    ap.add_argument("--plot", default=None, help="PNG of predicted against measured seconds per lambda")
    args = ap.parse_args(argv)

    runs = load(args.results, args.threads)
    if len(runs) < 2:
        raise SystemExit(f"glm_cost_model: need runs of at least two shapes with counted work at {args.threads} threads, "
                         f"got {sorted(runs)}; run benchmarks/glm_path.py with this version of the solver.")
    peaks = machine_peaks(args.threads)
    ratio = peaks["flops_float32"] / peaks["flops_float64"]
    coef = fit(runs, ratio)
    frac = (1 / coef[0]) / peaks["flops_float32"] if coef[0] > 0 else None
    emit({"kind": "machine", "threads": args.threads, **peaks})
    emit({"kind": "fit", "threads": args.threads, "coefficients": dict(zip(REGRESSORS, coef.tolist())),
          "float64_weight": ratio, "products_fraction_of_float32_peak": frac,
          "bytes_per_element_pass": coef[1] * peaks["bandwidth"], "shapes": sorted(runs),
          "runs": sum(len(v) for v in runs.values())})
    say(f"this CPU at {args.threads} threads: {peaks['flops_float32'] / 1e9:.0f} GFLOP/s float32, "
        f"{peaks['flops_float64'] / 1e9:.0f} float64, {peaks['bandwidth'] / 1e9:.1f} GB/s copy")
    say(f"fitted on {sum(len(v) for v in runs.values())} runs of {len(runs)} shapes: products at "
        + (f"{frac:.2f} of the float32 peak" if frac else "no cost")
        + f", {coef[1] * peaks['bandwidth']:.0f} bytes per (n, K) element-pass at the copy bandwidth, "
        f"working-set model {coef[2]:.3g} s per unit, {coef[3] * 1e3:.1f} ms per lambda")

    say("leave one shape out (fit on the others, predict the held-out shape's whole path):")
    points = []
    for label in sorted(runs, key=lambda s: shape_of(s)[2]):
        rest = {k: v for k, v in runs.items() if k != label}
        c_out = fit(rest, ratio)
        for r in runs[label]:
            pred_in, pred_out = float(predict(r["x"], coef, ratio).sum()), float(predict(r["x"], c_out, ratio).sum())
            emit({"kind": "check", "size": label, "measured": r["total"], "predicted_in_sample": pred_in,
                  "predicted_held_out": pred_out, "ratio_held_out": pred_out / r["total"], "n_lambdas": r["n_lambdas"]})
            say(f"   {label} ({r['n_lambdas']} lambdas): measured {r['total']:.1f} s, predicted {pred_out:.1f} s held out "
                f"({pred_out / r['total']:.2f}x), {pred_in:.1f} s in sample ({pred_in / r['total']:.2f}x)")
            points += [(label, float(p), float(m)) for p, m in zip(predict(r["x"], coef, ratio), r["t"])]

    template = args.template or max(runs, key=lambda s: (shape_of(s)[2], shape_of(s)[1]))
    tshape = shape_of(template)
    run = min(runs[template], key=lambda r: (-r["n_lambdas"], r["total"]))  # the whole path, its fastest run
    # The model misses some of how the cost grows with the shape (its held-out errors
    # above); the prediction is therefore calibrated on the template: its measured
    # time over the model's, applied to every term.
    calib = run["total"] / float(predict(run["x"], coef, ratio).sum())
    x = scaled_work(run, tshape, IMAGENET)
    per_lambda = args.n_lambdas / run["n_lambdas"]
    terms = design_matrix(x, ratio) * coef
    share = dict(zip(REGRESSORS, (terms.sum(0) / terms.sum()).tolist()))
    cpu = float(terms.sum()) * per_lambda * calib
    g1 = gpu_seconds(run, x, coef, peaks, IMAGENET, 1) * per_lambda * calib
    g8 = gpu_seconds(run, x, coef, peaks, IMAGENET, 8) * per_lambda * calib
    pred = {"kind": "prediction", "shape": list(IMAGENET), "n_lambdas": args.n_lambdas, "template": template,
            "calibration": calib, "this_cpu_s": cpu, "gpu_1_s": g1, "gpu_8_s": g8, "gpu": GPU["name"],
            "cpu_time_shares": share,
            "assumptions": [
                f"the work per lambda of {template} ({run['n_lambdas']} lambdas), scaled to ImageNet's n D K, "
                f"repeated for {args.n_lambdas} lambdas (an upper bound: a finer grid needs fewer iterations per lambda)",
                f"every term times the template's measured / modelled time ({calib:.2f})",
                "the GPU reaches the same fraction of its published peaks as this CPU of its measured ones",
                "not measured on any GPU: no device was lent"]}
    emit(pred)
    say(f"ImageNet shape {IMAGENET}, {args.n_lambdas} lambdas, work scaled from {template} "
        f"(calibrated x{calib:.2f}): this CPU {cpu / 3600:.1f} h ("
        + ", ".join(f"{k} {v:.0%}" for k, v in share.items()) + f"); 1 GPU {g1 / 60:.1f} min, "
        f"8 GPUs {g8 / 60:.1f} min ({GPU['name']}; predicted, not measured)")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for label in sorted(runs, key=lambda s: shape_of(s)[2]):
            pts = np.array([(p, m) for lab, p, m in points if lab == label])
            ax.scatter(pts[:, 1], pts[:, 0], s=14, label=label)
        lo = min(min(p, m) for _, p, m in points) * 0.8
        hi = max(max(p, m) for _, p, m in points) * 1.25
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="measured seconds per lambda", ylabel="predicted seconds per lambda",
               title=f"GLM path cost model ({args.threads} threads)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        say(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
