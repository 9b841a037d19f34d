"""A benchmark's runs kept in a JSON-lines file, so that a long comparison can be run in
several sittings and still give its median over every run.

A reference path can take the better part of an hour (glmnet at 10,000 x 512 x 1,000),
so "the median over 5 runs" may not fit in one sitting. ``benchmarks/glm_path.py
--record FILE`` appends every record it prints to ``FILE``; started again with the same
settings it reads the runs already there, runs only the ones still missing and
summarises all of them.

A run counts only when every solver (and every load condition) of it finished, so the
ratio of each run always pairs paths timed back to back. Runs are kept apart by a
*configuration id*: a hash of every setting that changes what is timed (the problem,
the grid, the solvers' options, the threads) and of the project's solver code
(``src/debuggable``), so a run of other settings or of other code is never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "debuggable"


def code_hash(root: Path = SRC) -> str:
    """The first 12 hex digits of a SHA-256 over every ``.py`` file under ``root``
    (relative path and contents, in path order): equal only for identical solver code."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:12]


def config_id(config: dict) -> str:
    """The first 12 hex digits of a SHA-256 of ``config`` as sorted JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


class RunRecord:
    """Appends records to ``path`` and finds the complete runs already in it.

    Records are the benchmark's JSON objects; the ones this reads are ``"kind":
    "lambda"`` rows and ``"kind": "solver"`` summaries carrying ``size``, ``solver``,
    ``run``, ``condition`` and ``config_id``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.skipped = 0

    def append(self, rec: dict) -> None:
        """Add one record as a line (flushed, so a killed run loses at most that line)."""
        lead = ""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                lead = "" if fh.read(1) == b"\n" else "\n"  # end a line a killed run left unfinished
        with open(self.path, "a") as fh:
            fh.write(lead + json.dumps(rec, default=float) + "\n")

    def _read(self) -> list[dict]:
        """The file's records; a line that is not JSON (one a killed run was writing) is
        skipped and counted in ``self.skipped``."""
        self.skipped = 0
        if not self.path.exists():
            return []
        out = []
        with open(self.path) as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    self.skipped += 1
        return out

    def runs(self, size: str, cid: str, wanted: set[tuple[str, str]]) -> tuple[dict[int, dict], int]:
        """``(complete, next_run)`` for one size and configuration.

        ``complete`` maps a run index to ``{(solver, condition): {"rows": [...],
        "summary": {...}}}`` for the runs in which every ``(solver, condition)`` of
        ``wanted`` finished (lambda rows in index order); ``next_run`` is one more than
        the largest run index of this configuration in the file (complete or not), so a
        new run never reuses an index.
        """
        rows: dict[tuple[int, str, str], list[dict]] = defaultdict(list)
        summaries: dict[tuple[int, str, str], dict] = {}
        top = -1
        for rec in self._read():
            if rec.get("size") != size or rec.get("config_id") != cid:
                continue
            key = (int(rec["run"]), rec["solver"], rec["condition"])
            if rec.get("kind") == "lambda":
                rows[key].append(rec)
                top = max(top, key[0])
            elif rec.get("kind") == "solver":
                summaries[key] = rec  # a run index is never reused, so one per key
                top = max(top, key[0])
        complete: dict[int, dict] = {}
        for run in sorted({k[0] for k in summaries}):
            got = {}
            for solver, condition in wanted:
                summary = summaries.get((run, solver, condition))
                if summary is None:
                    break
                lam = sorted(rows[(run, solver, condition)], key=lambda r: r["index"])
                if [r["index"] for r in lam] != list(range(summary["n_lambdas_done"])):
                    break  # rows missing: not a run to trust
                got[(solver, condition)] = {"rows": lam, "summary": summary}
            else:
                complete[run] = got
        return complete, top + 1
