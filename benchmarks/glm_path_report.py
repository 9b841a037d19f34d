"""Compare and plot the results of ``benchmarks/glm_path.py``, across runs.

A long reference path (glm-saga's 100k x 2048 x 100 path takes hours) is often run
apart from ours, possibly over several sittings (``--ref-checkpoint``). This reads the
JSON lines those runs printed, pairs every size's solvers (refusing rows whose lambda
grids differ), prints the same ``"kind": "compare"`` record ``glm_path.py`` prints for
a single run, and draws one figure per size: seconds per lambda, cumulative seconds and
the KKT residual over ``lam * alpha`` against the issue's 5e-3 target.

Examples::

    python benchmarks/glm_path.py --size medium --solvers debuggable > ours.jsonl
    python benchmarks/glm_path.py --size medium --solvers glm_saga --ref-checkpoint saga.pt > saga.jsonl
    python benchmarks/glm_path_report.py ours.jsonl saga.jsonl --out docs/img/glm_path_medium.png

When a solver of a size appears in several files, the run with more lambdas done is
used (the later file on a tie).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KKT_TARGET = 5e-3  # issue 3: KKT residual at most 5e-3 * lam * alpha at every lambda
KKT_FLOOR = 1e-6
COLOURS = {"debuggable": "tab:blue", "glm_saga": "tab:orange", "sklearn": "tab:green"}


def read_runs(paths: list[str]) -> dict[str, dict[str, dict]]:
    """``{size: {solver: {"rows": [...], "summary": {...}, "file": path}}}``, one run per
    size and solver: the one with the most lambdas done."""
    runs: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
        summaries: dict[tuple[str, str], dict] = {}
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{n}: not a JSON line ({exc})") from None
                if rec.get("kind") == "lambda":
                    rows[rec["size"], rec["solver"]].append(rec)
                elif rec.get("kind") == "solver":
                    summaries[rec["size"], rec["solver"]] = rec
        for key, summary in summaries.items():
            size, solver = key
            got = sorted(rows[key], key=lambda r: r["index"])
            if [r["index"] for r in got] != list(range(len(got))):
                raise SystemExit(f"{path}: {size} {solver}: the lambda rows are not 0..{len(got) - 1}")
            old = runs[size].get(solver)
            if old is None or len(got) >= len(old["rows"]):
                runs[size][solver] = {"rows": got, "summary": summary, "file": path}
    if not runs:
        raise SystemExit("no solver results in " + ", ".join(paths) + " (expected glm_path.py's JSON lines)")
    return dict(runs)


def plot_size(size: str, solvers: dict[str, dict], out: str) -> None:
    """One figure for a size: seconds per lambda, cumulative seconds, KKT / (lam alpha)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name, run in solvers.items():
        idx = [r["index"] + 1 for r in run["rows"]]
        times = [r["time"] for r in run["rows"]]
        cum = list(itertools.accumulate(times))
        label = (f"{name} ({run['summary']['n_lambdas_done']}/{run['summary']['n_lambdas']} lambdas, "
                 f"{run['summary']['total_time']:,.0f} s)")
        kw = {"color": COLOURS.get(name), "marker": "o", "ms": 3, "label": label}
        axes[0].plot(idx, times, **kw)
        axes[1].plot(idx, cum, **kw)
        # lambda_max's all-zero solution is exact (~1e-16): drawn at the floor
        axes[2].plot(idx, [max(r["kkt_rel"], KKT_FLOOR) for r in run["rows"]], **kw)
    axes[2].axhline(KKT_TARGET, color="black", ls="--", lw=1, label="target 5e-3")
    titles = ("seconds per lambda", "cumulative seconds", "KKT residual / (lambda alpha)")
    for ax, title in zip(axes, titles):
        ax.set_yscale("log")
        ax.set_xlabel("lambda index (1 = lambda_max)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    threads = {run["summary"].get("threads") for run in solvers.values()}
    fig.suptitle(f"elastic-net path {size}, threads {', '.join(str(t) for t in sorted(threads, key=str))}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="JSON-lines output of benchmarks/glm_path.py")
    ap.add_argument("--out", help="figure path (PNG); with several sizes, the size is added to the name")
    args = ap.parse_args(argv)
    from glm_path import compare, emit, say

    runs = read_runs(args.files)
    records = []
    for size, solvers in runs.items():
        say(f"== {size}: " + ", ".join(f"{name} from {run['file']}" for name, run in solvers.items()))
        ours = solvers.get("debuggable")
        for ref in ("glm_saga", "sklearn"):
            if ours is not None and ref in solvers:
                theirs = solvers[ref]
                n_lambdas = ours["summary"]["n_lambdas"]
                if theirs["summary"]["n_lambdas"] != n_lambdas:
                    raise SystemExit(f"{size}: {ref} ran a {theirs['summary']['n_lambdas']}-lambda grid, ours {n_lambdas}")
                rec = compare(size, ours["rows"], ours["summary"], ref, theirs["rows"], theirs["summary"], n_lambdas)
                emit(rec)
                records.append(rec)
        if args.out:
            out = args.out if len(runs) == 1 else f"{os.path.splitext(args.out)[0]}_{size}.png"
            plot_size(size, solvers, out)
            say(f"   figure: {out}")
    return records


if __name__ == "__main__":
    main()
