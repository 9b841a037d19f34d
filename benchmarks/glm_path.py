"""Benchmark: debuggable.glm's elastic-net path against glm-saga and scikit-learn.

Every solver gets the same standardised float32 features (mean 0, unbiased std 1,
as glm-saga's ``NormalizedRepresentation``) and the same lambda grid (log-spaced from
the exact ``lambda_max`` down to ``lambda_min_ratio * lambda_max``), in one run, on
the same device and thread count. Every solution is then scored by one float64
evaluator that is independent of all three solvers: the objective

    mean_i CE(x_i, y_i; W, b) + lam * alpha * |W|_1 + 0.5 * lam * (1 - alpha) * |W|_F^2

and the KKT residual (largest subgradient violation, coefficients and intercept)
divided by ``lam * alpha``.

Output: one JSON object per line on stdout (``"kind": "lambda"`` per solver and
lambda, ``"kind": "solver"`` per solver, ``"kind": "compare"`` per size, and
``"kind": "projection"`` for the GPU projection); a readable summary on stderr.

Examples::

    python benchmarks/glm_path.py                          # 20k x 512 x 10 and 100k x 2048 x 100
    python benchmarks/glm_path.py --size 20000x512x10 --n-lambdas 20
    python benchmarks/glm_path.py --npz feats.npz          # keys features/labels (or X/y)
    python benchmarks/glm_path.py --store RUN/features/inspected:train   # a run's feature store
    python benchmarks/glm_path.py --size imagenet --device cuda --n-lambdas 100 --solvers debuggable

Reference solvers that exceed ``--ref-budget`` seconds (and our path, with
``--ours-budget``) stop after the lambda they are in; the comparison then uses the
lambdas both finished and says so, and the speed-up is also given per finished
lambda (``speedup_same_lambdas``). ``--ref-checkpoint FILE`` lets glm-saga's path go on
over several sittings, and ``benchmarks/glm_path_report.py`` pairs runs made apart
(ours in one, the reference in another) and draws the comparison.

``--record FILE`` appends every record to ``FILE`` as well; started again with the same
settings (and the same ``src/debuggable``), it keeps the complete runs already there,
runs only the missing ones and summarises them all, so ``--runs 5`` of a path that
takes glmnet half an hour can be gathered over several sittings
(``benchmarks/run_record.py``)::

    python benchmarks/glm_path.py --size k1000 --n-lambdas 9 --lambda-min-ratio 0.1438449888287663 \
        --solvers debuggable,glmnet,glm_saga --runs 5 --threads 2 --saga-timeout 600 --record k1000.jsonl

``--solvers`` also takes ``debuggable_no_rows``: our path without the row-chunk workers
the thread budget turns on beside a competing process (``--load``), so the two run
round robin in one benchmark::

    python benchmarks/glm_path.py --size k25 --lambda-min-ratio 1e-2 --solvers debuggable,debuggable_no_rows \
        --runs 5 --threads 2 --load 1
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout

import numpy as np
import torch

from debuggable.run.atomic import atomic_write_file

SIZES = {"small": (20_000, 512, 10), "medium": (100_000, 2048, 100), "imagenet": (1_281_167, 2048, 1000),
         # the shapes of the comparison with glmnet (docs/glm.md, "Against glmnet")
         "k10": (20_000, 512, 10), "k25": (30_000, 384, 25), "k100": (20_000, 2048, 100), "k1000": (10_000, 512, 1000)}


#: where :func:`emit` also appends its records (``--record``), or None
RECORD = None


def emit(obj: dict) -> None:
    print(json.dumps(obj, default=float), flush=True)
    if RECORD is not None:
        RECORD.append(obj)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
def synthetic_relu_features(n: int, d: int, k: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features shaped like a network's penultimate ReLU layer.

    Class-dependent low-rank latent signal (rank ``min(d // 4, 4 k)``), a random
    linear map, a bias, per-unit noise and a ReLU: non-negative, sparse-ish (about
    40% zeros), strongly correlated across units, with 10% label noise, so that the
    problem is neither separable nor trivial. Generated in row blocks on ``device``.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    r = max(16, min(d // 4, 4 * k))
    mu = torch.randn(k, r, generator=g) * 1.0
    M = torch.randn(r, d, generator=g) / math.sqrt(r)
    c = torch.randn(d, generator=g) * 0.5 - 0.3
    y = torch.randint(0, k, (n,), generator=g)
    y[:k] = torch.arange(k)
    X = torch.empty(n, d, dtype=torch.float32, device=device)
    mu, M, c = mu.to(device), M.to(device), c.to(device)
    step = 65536
    for s in range(0, n, step):
        e = min(n, s + step)
        z = mu[y[s:e].to(device)] + 1.5 * torch.randn(e - s, r, generator=g).to(device)
        X[s:e] = torch.relu(z @ M + c + 0.5 * torch.randn(e - s, d, generator=g).to(device))
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = torch.randint(0, k, (int(flip.sum()),), generator=g)
    y[:k] = torch.arange(k)
    return X, y.to(device)


def load_npz(path: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as f:
        keys = set(f.files)
        xk = next((k for k in ("features", "X", "x") if k in keys), None)
        yk = next((k for k in ("labels", "y", "targets") if k in keys), None)
        if xk is None or yk is None:
            raise SystemExit(f"--npz: expected arrays 'features' and 'labels' (or 'X' and 'y') in {path}, found {sorted(keys)}")
        X = torch.as_tensor(np.asarray(f[xk], dtype=np.float32), device=device)
        y = np.asarray(f[yk]).astype(np.int64)
    _, y = np.unique(y, return_inverse=True)
    return X, torch.as_tensor(y, device=device)


def store_spec(spec: str) -> tuple[str, str]:
    """``DIR[:SPLIT]`` as ``(DIR, SPLIT)``; the split defaults to ``train``."""
    path, _, split = spec.partition(":")
    return path, split or "train"


def load_store(spec: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``DIR[:SPLIT]``: a feature store's split (default ``train``), e.g. a demo run's
    ``features/inspected``; returns its features and labels (relabelled 0..K-1)."""
    from debuggable.errors import DebuggableError
    from debuggable.features import FeatureStore

    path, split = store_spec(spec)
    try:
        reader = FeatureStore(path).split(split)
        X = reader.to_numpy("features").astype(np.float32, copy=False)
        y = reader.to_numpy("labels")
    except DebuggableError as exc:
        raise SystemExit(f"--store {spec}: {exc}") from None
    _, y = np.unique(y, return_inverse=True)
    return torch.as_tensor(X, device=device), torch.as_tensor(y.astype(np.int64), device=device)


def standardise(X: torch.Tensor) -> torch.Tensor:
    """float64 mean / unbiased std, result in float32; constant columns dropped."""
    mean = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    sq = torch.zeros_like(mean)
    for s in range(0, X.shape[0], 65536):
        b = X[s : s + 65536].to(torch.float64)
        mean += b.sum(0)
    mean /= X.shape[0]
    for s in range(0, X.shape[0], 65536):
        b = X[s : s + 65536].to(torch.float64) - mean
        sq += (b * b).sum(0)
    std = (sq / (X.shape[0] - 1)).sqrt()
    keep = std > 1e-10 * mean.abs().clamp_min(1e-300)
    if not bool(keep.all()):
        say(f"dropping {int((~keep).sum())} constant feature(s)")
        X, mean, std = X[:, keep], mean[keep], std[keep]
    out = torch.empty(X.shape, dtype=torch.float32, device=X.device)
    for s in range(0, X.shape[0], 65536):
        out[s : s + 65536] = ((X[s : s + 65536].to(torch.float64) - mean) / std).to(torch.float32)
    return out


# ----------------------------------------------------------------------------------------
# the common evaluator (float64, independent of every solver)
# ----------------------------------------------------------------------------------------
def evaluate(Xs: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor, lam: float, alpha: float) -> dict:
    """Objective and KKT residual of ``(W (D, K), b (K,))`` in float64."""
    n, d = Xs.shape
    W = W.to(Xs.device, torch.float64)
    b = b.to(Xs.device, torch.float64)
    G = torch.zeros(d, W.shape[1], dtype=torch.float64, device=Xs.device)
    gb = torch.zeros(W.shape[1], dtype=torch.float64, device=Xs.device)
    loss = 0.0
    correct = 0
    step = max(1024, (1 << 24) // max(d, W.shape[1]))
    for s in range(0, n, step):
        xb = Xs[s : s + step].to(torch.float64)
        yb = y[s : s + step]
        Z = xb @ W + b
        lse = torch.logsumexp(Z, 1)
        loss += float((lse - Z.gather(1, yb[:, None])[:, 0]).sum())
        correct += int((Z.argmax(1) == yb).sum())
        R = torch.exp(Z - lse[:, None])
        R[torch.arange(len(yb), device=R.device), yb] -= 1
        G += (R.T @ xb).T  # (K x rows)(rows x d): several times faster than xb.T @ R with MKL
        gb += R.sum(0)
    loss /= n
    G /= n
    gb /= n
    l1 = float(W.abs().sum())
    obj = loss + lam * alpha * l1 + 0.5 * lam * (1 - alpha) * float((W * W).sum())
    viol = torch.where(W != 0, (G + lam * (1 - alpha) * W + lam * alpha * W.sign()).abs(), (G.abs() - lam * alpha).clamp_min(0))
    kkt = max(float(viol.max()), float(gb.abs().max()))
    return {"objective": obj, "loss": loss, "kkt_rel": kkt / (lam * alpha), "nnz": int((W != 0).sum()), "accuracy": correct / n}


# ----------------------------------------------------------------------------------------
# solvers
# ----------------------------------------------------------------------------------------
def run_debuggable(Xs, y, grid, alpha, device, budget, dtype, verbose=1, threads="auto"):
    from debuggable.glm import elastic_net_path

    t0 = time.perf_counter()
    # the solver's one line per lambda goes to stderr, so a long run shows where it is
    with redirect_stdout(sys.stderr):
        path = elastic_net_path(Xs, y.cpu().numpy(), lambdas=grid, alpha=alpha, standardize=False, device=device,
                                dtype=dtype, max_time=budget, verbose=verbose, threads=threads)
    total = time.perf_counter() - t0
    sols = [(torch.as_tensor(path.coef[i].T), torch.as_tensor(path.intercept[i]), float(path.time[i])) for i in range(len(path))]
    extra = {"converged": bool(path.converged.all()), "outer_iterations": int(path.n_iter.sum()), "solver_kkt_rel_max": float(path.kkt.max()),
             "solver_gap_rel_max": float(path.gap.max()), "thread_counts": path.info.get("threads"), "row_workers": path.info.get("row_workers"),
             "row_chunked_products": path.info.get("row_chunked_products"),
             # per lambda: outer iterations and the products' counted work (the cost model's input)
             "per_lambda": [{"n_iter": int(path.n_iter[i]), **(path.info["work"][i] or {})} for i in range(len(path))],
             "work_setup": path.info.get("work_setup")}
    return sols, total, extra


class _SagaTimeout(Exception):
    """Raised by the interval timer of ``--saga-timeout`` inside glm-saga's epochs."""


def run_glm_saga(Xs, y, grid, alpha, device, budget, lr, batch, epochs, tol, checkpoint=None, timeout=None):
    """glm-saga's path on ``grid``; returns ``(sols, total seconds, settings)``.

    ``timeout`` (seconds, from the start of this call) stops glm-saga inside the lambda it
    is solving, which ``budget`` (checked between lambdas) cannot: the lambdas it
    finished are kept, and the total includes the time spent on the unfinished one, so
    it bounds the whole path's time from below (settings ``"timed_out"``, as glmnet's).

    ``checkpoint`` (a file path) makes the run resumable: after every lambda the weights, the
    SAGA table state and the per-lambda times so far are saved there, and a later run with
    the same file, data and settings continues after the last saved lambda. Each lambda's time
    is measured in the run that solved it; the total is their sum.
    """
    from torch.utils.data import DataLoader

    from glm_saga.elasticnet import IndexedTensorDataset, train_saga

    n, d = Xs.shape
    k = int(y.max()) + 1
    loader = DataLoader(IndexedTensorDataset(Xs, y), batch_size=batch, shuffle=True)
    linear = torch.nn.Linear(d, k).to(device)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    state = None
    sols = []
    settings = {"lr": lr, "batch_size": batch, "max_epochs": epochs, "tol": tol}
    # the grid starts at the data's exact lambda_max, so with the shape and labels it
    # fingerprints the data (a sum of standardised features is ~0 for any data)
    key = {"shape": [n, d, k], "grid": [float(v) for v in grid], "alpha": alpha, **settings, "labels_sum": int(y.sum())}
    if checkpoint is not None and os.path.exists(checkpoint):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        # "data_sum": written by the first version of this option, not compared
        if {name: v for name, v in saved["key"].items() if name != "data_sum"} != key:
            raise SystemExit(f"--ref-checkpoint {checkpoint}: saved for other data or settings; remove it to start over")
        sols = saved["sols"]
        state = saved["state"]  # train_saga keeps it on the CPU between lambdas too
        with torch.no_grad():
            linear.weight.copy_(sols[-1][0].T)
            linear.bias.copy_(sols[-1][1])
        say(f"   glm_saga: resuming after lambda {len(sols)}/{len(grid)} from {checkpoint} "
            f"({sum(s[2] for s in sols):.1f}s so far)")
    armed = [True]

    def stop(signum, frame):
        if armed[0]:
            raise _SagaTimeout

    unfinished = 0.0  # seconds spent on a lambda the timeout stopped
    previous = signal.signal(signal.SIGALRM, stop) if timeout else None
    if timeout:
        # repeating: an exception raised while Python runs a finaliser (a DataLoader
        # iterator collected between epochs) is printed and dropped, and a one-shot
        # timer would then never stop glm-saga
        signal.setitimer(signal.ITIMER_REAL, timeout, 0.25)
    t0 = time.perf_counter()
    try:
        for lam in grid[len(sols):]:
            t1 = time.perf_counter()
            try:
                with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    # glm_saga.glm_saga's loop body, on our grid (its own grid is the same up to
                    # float32 rounding of lambda_max; calling train_saga directly removes even that)
                    state = train_saga(linear, loader, lr, epochs, float(lam), alpha, table_device=device, group=False,
                                       verbose=None, state=state, n_ex=n, n_classes=k, tol=tol, family="multinomial",
                                       logger=lambda *a, **kw: None)
            except _SagaTimeout:
                armed[0] = False
                unfinished = time.perf_counter() - t1
                say(f"   glm_saga: stopped by --saga-timeout {timeout:.0f}s after {unfinished:.1f}s on lambda "
                    f"{len(sols) + 1}/{len(grid)}, unfinished")
                break
            sols.append((linear.weight.detach().T.clone().cpu(), linear.bias.detach().clone().cpu(), time.perf_counter() - t1))
            say(f"   glm_saga: lambda {len(sols)}/{len(grid)} in {sols[-1][2]:.1f}s")
            if checkpoint is not None:
                record = {"key": key, "sols": sols, "state": state}
                atomic_write_file(checkpoint, lambda tmp: torch.save(record, tmp), fsync=False)
            if budget is not None and time.perf_counter() - t0 > budget:
                break
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    settings.update(timed_out=unfinished > 0, timeout=timeout, unfinished_lambda_s=unfinished)
    return sols, sum(s[2] for s in sols) + unfinished, settings


def run_glmnet(Xs, y, grid, alpha, tol, max_iter, work_dir, timeout=None):
    """glmnet's path on ``grid`` in its own environment (``glmnet_runner.py``); returns
    ``(sols, total seconds, settings)``. glmnet reports one time for the whole path, so
    each lambda gets an equal share of it (per-lambda speed-ups are then not meaningful:
    ``compare`` uses the totals)."""
    import subprocess
    import tempfile

    from glmnet_env import ensure_glmnet_env

    python = ensure_glmnet_env(say)
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        data = os.path.join(tmp, "problem.npz")
        out = os.path.join(tmp, "solution.npz")
        np.savez(data, X=Xs.cpu().numpy(), y=y.cpu().numpy(), grid=np.asarray(grid, dtype=np.float64), alpha=alpha,
                 tol=tol, max_iter=max_iter)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([python, os.path.join(here, "glmnet_runner.py"), "--data", data, "--out", out],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            # glmnet solves the path in one Fortran call: nothing of it can be kept, but
            # the time it took without finishing bounds its whole path from below
            spent = time.perf_counter() - t0
            say(f"   glmnet: no answer within --glmnet-timeout {timeout:.0f}s (killed)")
            return [], spent, {"tol": tol, "max_iter": max_iter, "timed_out": True, "timeout": timeout}
        if proc.returncode != 0:
            raise SystemExit(f"glmnet failed:\n{proc.stderr[-2000:]}")
        with np.load(out) as f:
            coef, intercept, total = f["coef"], f["intercept"], float(f["time"])
            n_done, jerr = int(f["n_lambda"]), int(f["jerr"])
    if n_done < len(grid):
        # jerr = -k: glmnet's maxit iterations did not converge the k-th lambda (it returns
        # the lambdas before); other negative values are its other non-fatal stops
        why = f"lambda {-jerr} did not converge in {max_iter} iterations" if -len(grid) <= jerr < 0 else f"jerr={jerr}"
        say(f"   glmnet: stopped after {n_done} of {len(grid)} lambdas ({why})")
    share = total / max(n_done, 1)
    sols = [(torch.as_tensor(coef[i].T.copy()), torch.as_tensor(intercept[i].copy()), share) for i in range(n_done)]
    return sols, total, {"tol": tol, "max_iter": max_iter, "jerr": jerr, "timed_out": False,
                         "per_lambda_time": "equal shares of the total"}


def run_sklearn(Xs, y, grid, alpha, budget, tol, max_iter):
    from sklearn.linear_model import LogisticRegression

    X = Xs.cpu().numpy()
    yy = y.cpu().numpy()
    n = X.shape[0]
    clf = LogisticRegression(solver="saga", l1_ratio=alpha, tol=tol, max_iter=max_iter, warm_start=True)
    if clf.get_params().get("penalty") == "l2":  # scikit-learn < 1.8
        clf.set_params(penalty="elasticnet")
    sols = []
    t0 = time.perf_counter()
    for lam in grid:
        t1 = time.perf_counter()
        clf.set_params(C=1.0 / (n * float(lam)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, yy)
        sols.append((torch.as_tensor(clf.coef_.T.copy()), torch.as_tensor(clf.intercept_.copy()), time.perf_counter() - t1))
        say(f"   sklearn: lambda {len(sols)}/{len(grid)} in {sols[-1][2]:.1f}s")
        if budget is not None and time.perf_counter() - t0 > budget:
            break
    return sols, time.perf_counter() - t0, {"tol": tol, "max_iter": max_iter}


def compare(label: str, ours: list[dict], ours_summary: dict, ref: str, theirs: list[dict], ref_summary: dict,
            n_lambdas: int) -> dict:
    """The ``"kind": "compare"`` record of our rows against a reference's (same grid), also
    printed as one readable line on stderr.

    The speed-up over the whole path is given only when both finished every lambda;
    ``speedup_same_lambdas`` uses the lambdas both finished. When ours finished every
    lambda and the reference did not, ``speedup_total_lower_bound`` is the time the
    reference spent (on the lambdas it finished, and on one it was stopped in) over our
    whole path's: the rest of its path cannot take less than no time, so its whole path
    is at least that many times slower. (With both complete it equals ``speedup_total``.)
    """
    m = min(len(theirs), len(ours))  # the lambdas both finished
    if m == 0:  # e.g. glmnet killed by its timeout: only a bound on its whole path
        bound = ref_summary["total_time"] / ours_summary["total_time"] if len(ours) == n_lambdas else None
        say(f"   vs {ref}: no lambda in common; its {ref_summary['total_time']:,.0f}s without an answer are "
            + ("n/a" if bound is None else f"{bound:.1f}x our whole path"))
        return {"kind": "compare", "size": label, "reference": ref, "lambdas_compared": 0, "n_lambdas": n_lambdas,
                "speedup_total": None, "speedup_same_lambdas": None, "speedup_total_lower_bound": bound,
                "objective_le_reference_all": None, "objective_strictly_le_reference_all": None,
                "max_rel_objective_excess": None, "min_rel_objective_excess": None,
                "max_kkt_rel_ours": max(r["kkt_rel"] for r in ours), "max_kkt_rel_reference": None,
                "kkt_rel_reference_last": None}
    for a, b in zip(ours[:m], theirs[:m]):
        if abs(a["lambda"] - b["lambda"]) > 1e-9 * abs(a["lambda"]):
            raise SystemExit(f"{label}: lambda {a['index']} differs ({a['lambda']} vs {b['lambda']}): not the same grid")
    rr = theirs[:m]
    t_ours_m = sum(r["time"] for r in ours[:m])
    t_ref_m = sum(r["time"] for r in rr)
    d_obj = [ours[i]["objective"] - rr[i]["objective"] for i in range(m)]
    rel = [d_obj[i] / abs(rr[i]["objective"]) for i in range(m)]
    whole = m == n_lambdas
    ours_whole = len(ours) == n_lambdas
    cmp = {
        "kind": "compare", "size": label, "reference": ref, "lambdas_compared": m, "n_lambdas": n_lambdas,
        "speedup_total": ref_summary["total_time"] / ours_summary["total_time"] if whole else None,
        "speedup_same_lambdas": t_ref_m / max(t_ours_m, 1e-12),
        "speedup_total_lower_bound": (max(ref_summary["total_time"], sum(r["time"] for r in theirs))
                                      / ours_summary["total_time"] if ours_whole else None),
        # our duality gap certifies objective <= optimum + tol * objective (tol = 1e-6 by
        # default), so no solver can be lower by more than that; "strict" is the raw test
        "objective_le_reference_all": all(x <= 1e-6 * abs(rr[i]["objective"]) for i, x in enumerate(d_obj)),
        "objective_strictly_le_reference_all": all(x <= 0 for x in d_obj),
        "max_rel_objective_excess": max(rel),
        "min_rel_objective_excess": min(rel),
        "max_kkt_rel_ours": max(r["kkt_rel"] for r in ours[:m]),
        "max_kkt_rel_reference": max(r["kkt_rel"] for r in rr),
        "kkt_rel_reference_last": rr[-1]["kkt_rel"],
    }
    if not whole and ref_summary.get("per_lambda_time") == "equal shares of the total":
        # glmnet times only its whole call: per-lambda ratios on a partial path mean nothing
        cmp["speedup_same_lambdas"] = None
    sp = cmp["speedup_total"] if whole else (cmp["speedup_same_lambdas"] or cmp["speedup_total_lower_bound"] or float("nan"))
    bound = ("" if whole or not ours_whole else
             f" and at least {cmp['speedup_total_lower_bound']:.1f}x on the whole path "
             f"({m} of its lambdas took {t_ref_m:,.0f}s of its {ref_summary['total_time']:,.0f}s, "
             f"our {n_lambdas} took {ours_summary['total_time']:,.0f}s)")
    say(f"   vs {ref}: {sp:.1f}x faster ({'whole path' if whole else f'first {m} lambdas'}){bound}, "
        f"our objective <= theirs at every lambda: {cmp['objective_strictly_le_reference_all']} "
        f"(within our 1e-6 certified gap: {cmp['objective_le_reference_all']}) "
        f"(largest relative excess {cmp['max_rel_objective_excess']:.1e}), "
        f"max KKT/(lam*alpha) ours {cmp['max_kkt_rel_ours']:.1e} vs theirs {cmp['max_kkt_rel_reference']:.1e}")
    return cmp


# ----------------------------------------------------------------------------------------
def bench_one(label: str, make_data, args, device: torch.device) -> dict:
    """``make_data()`` returns ``(X, y)``; only the standardised copy is kept."""
    from debuggable.glm import lambda_max

    t = time.perf_counter()
    X, y = make_data()
    Xs = standardise(X)
    del X
    n, d = Xs.shape
    k = int(y.max()) + 1
    lam_max = lambda_max(Xs, y.cpu().numpy(), alpha=args.alpha, standardize=False, device=device)
    grid = lam_max * np.logspace(0, math.log10(args.lambda_min_ratio), args.n_lambdas)
    say(f"\n== {label}: n={n} d={d} k={k}, {args.n_lambdas} lambdas from {lam_max:.4g} to {grid[-1]:.4g}, alpha={args.alpha}, "
        f"device={device}, threads={torch.get_num_threads()} (setup {time.perf_counter() - t:.1f}s)")
    try:
        from glm_saga.elasticnet import maximum_reg

        gs_lmax = maximum_reg(Xs, y, group=False) / max(0.001, args.alpha)
        say(f"   glm-saga's own lambda_max: {gs_lmax:.6g} (ours {lam_max:.6g}, rel diff {abs(gs_lmax - lam_max) / lam_max:.1e})")
    except Exception:  # noqa: BLE001 - glm-saga is optional here
        pass
    results: dict[tuple[str, str], list[dict]] = {}  # (solver, condition) -> one entry per run
    conditions = ["quiet", "loaded"] if args.load else ["quiet"]
    cid, runs = None, range(args.runs)
    if RECORD is not None:
        from run_record import config_id

        cid = config_id(run_config(label, args))
        timed = [name for name in args.solvers if not (name == "sklearn" and k < 3)]  # see run_solver
        kept, first = RECORD.runs(label, cid, {(name, c) for name in timed for c in conditions})
        for run in sorted(kept)[: args.runs]:
            for key, got in kept[run].items():
                results.setdefault(key, []).append(got)
        have = min(len(kept), args.runs)
        runs = range(first, first + args.runs - have)
        say(f"   {RECORD.path}: {have} complete run(s) of these settings kept (configuration {cid}), "
            f"{len(runs)} to run" + (f"; {RECORD.skipped} unreadable line(s) skipped" if RECORD.skipped else ""))
    for nth, run in enumerate(runs, args.runs - len(runs) + 1):
        # round robin: each run starts with the next solver, so slow drifts of the machine
        # do not always fall on the same one
        order = args.solvers[run % len(args.solvers):] + args.solvers[: run % len(args.solvers)]
        for name in order:
            for condition in conditions:
                say(f"   run {nth}/{args.runs}: {name}"
                    + (f" ({condition})" if args.load else "") + " ...")
                with competitors(args.load if condition == "loaded" else 0):
                    got = run_solver(name, Xs, y, grid, k, args, device)
                if got is None:
                    continue
                sols, total, extra = got
                per_lambda = extra.pop("per_lambda", None)
                rows = []
                for i, (W, b, tl) in enumerate(sols):
                    ev = evaluate(Xs, y, W, b, float(grid[i]), args.alpha)
                    row = {"kind": "lambda", "size": label, "solver": name, "run": run, "condition": condition, "index": i,
                           "lambda": float(grid[i]), "time": tl, **ev}
                    if cid is not None:
                        row["config_id"] = cid
                    if per_lambda is not None:
                        row["solver_detail"] = per_lambda[i]
                    emit(row)
                    rows.append(row)
                summ = {"kind": "solver", "size": label, "solver": name, "run": run, "condition": condition,
                        "total_time": total, "n_lambdas_done": len(rows), "n_lambdas": args.n_lambdas,
                        "max_kkt_rel": max((r["kkt_rel"] for r in rows), default=None), "threads": torch.get_num_threads(),
                        "device": str(device), **extra}
                if cid is not None:
                    summ.update(config_id=cid, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                emit(summ)
                results.setdefault((name, condition), []).append({"rows": rows, "summary": summ})
                kkt = "-" if summ["max_kkt_rel"] is None else f"{summ['max_kkt_rel']:.2e}"
                say(f"   {name}: {total:.2f}s for {len(rows)}/{args.n_lambdas} lambdas, "
                    f"max KKT/(lam*alpha) {kkt}" + (f" [{condition}]" if args.load else ""))

    for condition in conditions:
        ours_runs = results.get(("debuggable", condition), [])
        for ref in ("glmnet", "glm_saga", "sklearn"):
            ref_runs = results.get((ref, condition), [])
            if not ours_runs or not ref_runs:
                continue
            cmps = [compare(label, o["rows"], o["summary"], ref, r["rows"], r["summary"], args.n_lambdas)
                    for o, r in zip(ours_runs, ref_runs)]
            emit(summarise_runs(label, ref, condition, cmps, ours_runs, ref_runs))
    if args.load:
        for name in args.solvers:
            quiet, loaded = results.get((name, "quiet"), []), results.get((name, "loaded"), [])
            if quiet and loaded:
                tq = float(np.median([q["summary"]["total_time"] for q in quiet]))
                tl = float(np.median([q["summary"]["total_time"] for q in loaded]))
                # each run times quiet then loaded back to back: the paired ratio is the one a
                # drift of the machine's speed between runs does not move
                per_run = [lo["summary"]["total_time"] / q["summary"]["total_time"] for q, lo in zip(quiet, loaded)]
                emit({"kind": "load", "size": label, "solver": name, "competitors": args.load, "runs": len(quiet),
                      "median_quiet_time": tq, "median_loaded_time": tl, "loaded_over_quiet": tl / tq,
                      "loaded_over_quiet_per_run": per_run, "median_loaded_over_quiet_per_run": float(np.median(per_run))})
                say(f"   {name}: median {tq:.2f}s quiet, {tl:.2f}s with {args.load} competing process(es): "
                    f"{tl / tq:.2f}x its quiet time (per run: median {np.median(per_run):.2f}x, "
                    + ", ".join(f"{r:.2f}" for r in per_run) + ")")
    return results


SOLVERS = ("debuggable", "glmnet", "glm_saga", "sklearn", "debuggable_no_rows")


def run_config(label: str, args) -> dict:
    """Every setting that changes what a run times, and the hash of our solver's code:
    ``--record`` keeps earlier runs only when this is the same."""
    from run_record import code_hash

    keys = ("n_lambdas", "lambda_min_ratio", "alpha", "device", "threads", "fixed_threads", "no_row_workers",
            "load", "glmnet_tol", "glmnet_max_iter", "glmnet_timeout", "dtype", "ref_budget", "ours_budget",
            "saga_lr", "saga_batch", "saga_epochs", "saga_tol", "saga_timeout", "sklearn_tol", "sklearn_max_iter",
            "seed")
    return {"size": label, **{key: getattr(args, key) for key in keys}, "code": code_hash()}


def check_solvers(names):
    """Fail before any data is made or timed when a named solver cannot run: an unknown
    name, glm-saga or scikit-learn not installed, or glmnet's environment not buildable
    (it is built here, up front, so its minute of compiling is outside every timing)."""
    import importlib.util

    for name in names:
        if name not in SOLVERS:
            raise SystemExit(f"--solvers: unknown solver {name!r} (choose from {', '.join(SOLVERS)})")
    for module in ("glm_saga", "sklearn"):  # each named as its solver is
        if module in names and importlib.util.find_spec(module) is None:
            raise SystemExit(f"--solvers {module}: the {module} package is not installed "
                             f"(pip install -e '.[bench]' installs the benchmark's references)")
    if "glmnet" in names:
        from glmnet_env import ensure_glmnet_env

        ensure_glmnet_env(say)


def run_solver(name, Xs, y, grid, k, args, device):
    """One solver's path: ``(sols, total seconds, extra)``, or ``None`` when it does not apply."""
    if name in ("debuggable", "debuggable_no_rows"):
        from debuggable._threads import ThreadBudget

        saved = ThreadBudget.ROW_WORKERS
        if name == "debuggable_no_rows":
            # our path as it ran before the row-chunk workers: under load, torch on one thread only
            ThreadBudget.ROW_WORKERS = False
        try:
            return run_debuggable(Xs, y, grid, args.alpha, device, args.ours_budget, args.dtype, args.verbose,
                                  threads=args.threads if args.fixed_threads else "auto")
        finally:
            ThreadBudget.ROW_WORKERS = saved
    if name == "glm_saga":
        return run_glm_saga(Xs, y, grid, args.alpha, device, args.ref_budget, args.saga_lr, args.saga_batch,
                            args.saga_epochs, args.saga_tol, args.ref_checkpoint, args.saga_timeout)
    if name == "glmnet":
        return run_glmnet(Xs, y, grid, args.alpha, args.glmnet_tol, args.glmnet_max_iter, args.work_dir,
                          args.glmnet_timeout)
    if name == "sklearn":
        if k < 3:
            say("   sklearn: skipped (binary problems use a different objective there)")
            return None
        return run_sklearn(Xs, y, grid, args.alpha, args.ref_budget, args.sklearn_tol, args.sklearn_max_iter)
    raise SystemExit(f"--solvers: unknown solver {name!r}")


@contextmanager
def competitors(count: int):
    """``count`` CPU-bound processes (a pure-Python busy loop each, at this process's
    priority) for the duration of the block."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        if procs:
            time.sleep(0.5)  # let them reach the scheduler before the timed work starts
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def summarise_runs(label, ref, condition, cmps, ours_runs, ref_runs) -> dict:
    """The ``"kind": "summary"`` record: medians over runs of the times and of the per-run
    speed-ups (each run pairs our path with the reference's of the same run)."""
    t_ours = [o["summary"]["total_time"] for o in ours_runs]
    t_ref = [r["summary"]["total_time"] for r in ref_runs]
    def per_run_speedup(c):
        for key in ("speedup_total", "speedup_total_lower_bound", "speedup_same_lambdas"):
            if c[key] is not None:
                return c[key]
        return float("nan")

    def worst(key, pick=max):
        vals = [c[key] for c in cmps if c[key] is not None]
        return pick(vals) if vals else None

    per_run = [per_run_speedup(c) for c in cmps]
    rec = {
        "kind": "summary", "size": label, "reference": ref, "condition": condition, "runs": len(cmps),
        "median_time_ours": float(np.median(t_ours)), "median_time_reference": float(np.median(t_ref)),
        "times_ours": t_ours, "times_reference": t_ref,
        # per run: the whole-path ratio; where the reference did not finish, the measured
        # lower bound (its time spent over our whole path's)
        "median_speedup": float(np.median(per_run)), "speedups": per_run,
        "whole_path_every_run": all(c["speedup_total"] is not None for c in cmps),
        "lambdas_compared": min(c["lambdas_compared"] for c in cmps),
        "objective_le_reference_every_run": all(c["objective_le_reference_all"] is not False for c in cmps),
        "max_rel_objective_excess": worst("max_rel_objective_excess"),
        "max_kkt_rel_ours": worst("max_kkt_rel_ours"),
        "max_kkt_rel_reference": worst("max_kkt_rel_reference"),
        "threads": ours_runs[0]["summary"]["threads"],
    }
    if any("finished_at" in o["summary"] for o in ours_runs):  # --record: the runs may span sittings
        rec["finished_at"] = [o["summary"].get("finished_at") for o in ours_runs]
    fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
    say(f"   == {label} vs {ref} ({condition}, {len(cmps)} run(s)): median {rec['median_time_ours']:.2f}s ours vs "
        f"{rec['median_time_reference']:.2f}s, median speed-up {rec['median_speedup']:.2f}x "
        f"(runs: {', '.join(f'{v:.2f}' for v in per_run)}); objective within our certified gap of theirs in every run: "
        f"{rec['objective_le_reference_every_run']} ({rec['lambdas_compared']} lambdas compared); max KKT/(lam*alpha) "
        f"ours {fmt(rec['max_kkt_rel_ours'])} vs {fmt(rec['max_kkt_rel_reference'])}"
        + ("" if rec["whole_path_every_run"] else "; where the reference did not finish, the speed-up is a lower bound"))
    return rec


def projection(args, device):
    """Time the ImageNet-shaped path (or ``--project-shape``) on row subsets and extrapolate linearly in n."""
    n, d, k = parse_size(args.project_shape)
    pts = []
    for frac in args.project_fractions:
        m = int(n * frac)
        X, y = synthetic_relu_features(m, d, k, args.seed, device)
        Xs = standardise(X)
        del X
        from debuggable.glm import elastic_net_path

        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        path = elastic_net_path(Xs, y.cpu().numpy(), alpha=args.alpha, n_lambdas=args.n_lambdas, lambda_min_ratio=args.lambda_min_ratio,
                                standardize=False, device=device, dtype=args.dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        el = time.perf_counter() - t0
        pts.append((m, el))
        emit({"kind": "projection_point", "rows": m, "d": d, "k": k, "n_lambdas": args.n_lambdas, "time": el,
              "max_kkt_rel": float(path.kkt.max()), "converged": bool(path.converged.all()), "device": str(device)})
        say(f"   {m} x {d} x {k}: {el:.1f}s for {args.n_lambdas} lambdas (max KKT/(lam*alpha) {path.kkt.max():.1e})")
        del Xs, path
    # time per outer iteration is linear in n (passes over the data) plus an n-free part
    # (the parameter-space model solves); scaling the largest subset's time by n / rows is
    # an upper bound on the first part's growth, so it is the projection we report. A
    # two-point linear fit is given as well when it is increasing.
    m_last, t_last = pts[-1]
    proj = t_last * n / m_last
    fit = None
    if len(pts) >= 2:
        (m1, t1), (m2, t2) = pts[-2], pts[-1]
        slope = (t2 - t1) / (m2 - m1)
        if slope > 0:
            fit = t2 + slope * (n - m2)
    emit({"kind": "projection", "rows": n, "d": d, "k": k, "n_lambdas": args.n_lambdas, "projected_time": proj,
          "projected_time_linear_fit": fit, "target_time": 600.0, "from": [list(p) for p in pts], "device": str(device)})
    say(f"   projected {n} x {d} x {k}, {args.n_lambdas} lambdas: {proj / 60:.1f} min (target < 10 min)")


def parse_size(spec: str) -> tuple[int, int, int]:
    if spec in SIZES:
        return SIZES[spec]
    try:
        n, d, k = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size: expected small, medium, imagenet or NxDxK, got {spec!r}") from None
    return n, d, k


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", action="append", help="small, medium, imagenet or NxDxK (repeatable; default small and medium)")
    ap.add_argument("--npz", action="append", default=[], help="an .npz with features/labels (or X/y) to benchmark")
    ap.add_argument("--store", action="append", default=[],
                    help="DIR[:SPLIT]: a feature store's split (default train) to benchmark, e.g. a demo run's "
                         "features/inspected")
    ap.add_argument("--n-lambdas", type=int, default=20)
    ap.add_argument("--lambda-min-ratio", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=0.99)
    ap.add_argument("--solvers", default="debuggable,glm_saga,sklearn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every solver (default: torch's); ours follows the free cores up to "
                         "this many unless --fixed-threads")
    ap.add_argument("--fixed-threads", action="store_true",
                    help="run our solver on exactly --threads threads (no ThreadBudget)")
    ap.add_argument("--runs", type=int, default=1, help="repeat every solver this many times (round robin); "
                    "the summary gives medians")
    ap.add_argument("--no-row-workers", action="store_true",
                    help="our solver: when the thread budget sees a competitor, drop to one torch thread without "
                         "the row-chunk workers (the behaviour before 2026-12-07, for comparison)")
    ap.add_argument("--load", type=int, default=0,
                    help="also run every solver with this many CPU-bound competing processes and report "
                         "loaded / quiet time: of the medians, and the median of each run's own ratio (every "
                         "run times quiet then loaded back to back)")
    ap.add_argument("--glmnet-tol", type=float, default=1e-7)
    ap.add_argument("--glmnet-max-iter", type=int, default=100000)
    ap.add_argument("--glmnet-timeout", type=float, default=None,
                    help="seconds after which glmnet is killed; its time then bounds its path from below")
    ap.add_argument("--work-dir", default=None, help="where glmnet's input and output files go (default: the system's temp)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--ref-budget", type=float, default=1800.0, help="seconds of reference solving in this run; it stops after the lambda it is in")
    ap.add_argument("--ours-budget", type=float, default=None,
                    help="seconds for our path before it stops (default: none); the comparison then uses the "
                         "lambdas both finished")
    ap.add_argument("--ref-checkpoint", default=None,
                    help="file to save glm-saga's state after every lambda and resume from, for paths longer "
                         "than one sitting (one size per file)")
    ap.add_argument("--saga-lr", type=float, default=0.1)
    ap.add_argument("--saga-batch", type=int, default=256)
    ap.add_argument("--saga-epochs", type=int, default=2000)
    ap.add_argument("--saga-tol", type=float, default=1e-4)
    ap.add_argument("--saga-timeout", type=float, default=None,
                    help="seconds after which glm-saga is stopped, inside a lambda if need be; the time it "
                         "spent then bounds its path from below (--ref-budget only stops between lambdas)")
    ap.add_argument("--record", default=None, metavar="FILE",
                    help="also append every record to FILE, and keep the complete runs of the same settings "
                         "already there: only the missing ones of --runs are run (benchmarks/run_record.py)")
    ap.add_argument("--sklearn-tol", type=float, default=1e-4)
    ap.add_argument("--sklearn-max-iter", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=1, help="our solver's verbosity on stderr (2: every outer step)")
    ap.add_argument("--project", action="store_true", help="project the ImageNet-shaped case from row subsets")
    ap.add_argument("--project-fractions", type=float, nargs="+", default=[1 / 16, 1 / 8])
    ap.add_argument("--project-shape", default="imagenet", help="the shape to project (default imagenet: 1281167x2048x1000)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fixed_threads and not args.threads:
        raise SystemExit("--fixed-threads: give --threads N too")
    if args.no_row_workers:
        from debuggable._threads import ThreadBudget

        ThreadBudget.ROW_WORKERS = False
    args.solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    global RECORD
    RECORD = None
    if args.record:
        from run_record import RunRecord

        RECORD = RunRecord(args.record)
    device = torch.device(args.device)
    sizes = args.size if args.size else ([] if (args.npz or args.store or args.project) else ["small", "medium"])
    if sizes or args.npz or args.store:
        check_solvers(args.solvers)
    if args.project:
        say(f"\n== projection of the {args.project_shape} case from row subsets")
        projection(args, device)
    for spec in sizes:
        n, d, k = parse_size(spec)
        if spec == "imagenet" and device.type == "cuda" and not args.project:
            say("\n== projection of the ImageNet-shaped case from row subsets")
            projection(args, device)
        bench_one(f"{n}x{d}x{k}", lambda: synthetic_relu_features(n, d, k, args.seed, device), args, device)
    for path in args.npz:
        bench_one(os.path.basename(path), lambda: load_npz(path, device), args, device)
    for spec in args.store:
        path, split = store_spec(spec)
        label = "/".join(os.path.normpath(path).split(os.sep)[-2:]) + ":" + split
        bench_one(label, lambda: load_store(spec, device), args, device)


if __name__ == "__main__":
    main()
