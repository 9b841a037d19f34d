"""Per-lambda checkpoints of a path fit, so a killed fit resumes at the last solved lambda.

A checkpoint is a directory:

* ``header.json``: the problem's fingerprint (family, penalty, tolerances, data
  shape and feature moments, see :func:`problem_fingerprint`) and the lambda grid;
* ``lambda_00000.pt``, ``lambda_00001.pt``, ...: one file per solved lambda (its
  standardised coefficients ``(D, K)``, intercept ``(K,)``, the solver's curvature
  ratio and the path's per-lambda figures), each written atomically after the
  lambda's certificate, so a kill leaves only whole files.

Rank 0 writes and reads it and broadcasts what it read, so under a process group
only rank 0 needs to see the directory. A checkpoint whose fingerprint differs from
the problem being solved (another config, other data) is cleared and the path starts
over. The solver's state between lambdas is the previous two solutions and the
curvature ratio, all restored, so a resumed path takes the same steps as one that was
never stopped (in a single process the coefficients are bit-identical).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from debuggable.errors import DebuggableError
from debuggable.glm.distributed import Communicator

HEADER = "header.json"
_VERSION = 1


def problem_fingerprint(**fields: Any) -> dict[str, Any]:
    """A JSON-able description of a problem; arrays are reduced to a short digest of
    their values rounded to 9 significant digits (so the rounding differences between
    one process's and several processes' feature moments do not count)."""
    out: dict[str, Any] = {"version": _VERSION}
    for key, val in fields.items():
        if isinstance(val, torch.Tensor):
            val = val.detach().cpu().numpy()
        if isinstance(val, np.ndarray):
            text = np.array2string(np.asarray(val, dtype=np.float64).ravel(), precision=8, separator=",",
                                   threshold=1 << 62, floatmode="maxprec_equal", formatter={"float": lambda v: f"{v:.8e}"})
            val = hashlib.sha256(text.encode()).hexdigest()[:16]
        out[key] = val
    return out


def _lambda_file(directory: Path, i: int) -> Path:
    return directory / f"lambda_{i:05d}.pt"


class PathCheckpoint:
    """Reads and writes one fit's checkpoint directory (see the module docstring).

    Args:
        directory: the checkpoint directory (created by rank 0 when missing).
        comm: the fit's communicator; only rank 0 touches the files.
        fingerprint: :func:`problem_fingerprint` of the problem.
    """

    def __init__(self, directory: Any, comm: Communicator, fingerprint: dict[str, Any]):
        try:
            self.dir = Path(directory)
        except TypeError:
            raise DebuggableError(f"checkpoint: expected a directory path, got {directory!r}.") from None
        self.comm = comm
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back

    # -- reading -----------------------------------------------------------------------
    def _read(self, grid: np.ndarray) -> tuple[np.ndarray | None, list[dict[str, Any]], str]:
        head = self.dir / HEADER
        if not head.is_file():
            return None, [], "no checkpoint"
        try:
            header = json.loads(head.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, [], "an unreadable checkpoint header"
        if header.get("fingerprint") != self.fingerprint:
            return None, [], "a checkpoint of another problem"
        stored = np.asarray(header.get("lambdas", []), dtype=np.float64)
        if stored.shape != grid.shape or not np.allclose(stored, grid, rtol=1e-9, atol=0):
            return None, [], "a checkpoint with another lambda grid"
        records = []
        for i in range(stored.size):
            f = _lambda_file(self.dir, i)
            if not f.is_file():
                break
            try:
                rec = torch.load(f, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - a damaged file ends what can be trusted
                break
            records.append(rec)
        return stored, records, f"{len(records)} saved lambdas"

    def resume(self, grid: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]], str]:
        """``(grid, records, note)``: the grid to solve (the saved one when it matches,
        so a resumed path continues on exactly the lambdas it started with), the saved
        lambdas' records in order (empty when starting over) and what was found.

        A mismatching or unreadable checkpoint is cleared (rank 0) and a fresh header
        written; every rank gets rank 0's answer."""
        if self.comm.is_root:
            stored, records, note = self._read(grid)
            if stored is None:
                self._start(grid)
            answer = (stored, records, note)
        else:
            answer = None
        stored, records, note = self.comm.broadcast_object(answer, "reading the checkpoint")
        return (grid if stored is None else stored), records, note

    # -- writing -----------------------------------------------------------------------
    def _start(self, grid: np.ndarray) -> None:
        from debuggable.run.atomic import atomic_write_json

        self.dir.mkdir(parents=True, exist_ok=True)
        for f in self.dir.glob("lambda_*.pt"):
            f.unlink()
        atomic_write_json(self.dir / HEADER, {"fingerprint": self.fingerprint, "lambdas": [float(v) for v in grid]})

    def save(self, i: int, record: dict[str, Any]) -> None:
        """Write lambda ``i``'s record atomically (rank 0; a no-op elsewhere).

        ``record`` holds tensors (moved to the CPU) and plain numbers."""
        if not self.comm.is_root:
            return
        from debuggable.run.atomic import atomic_write_file

        rec = {k: (v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        atomic_write_file(_lambda_file(self.dir, i), lambda p: torch.save(rec, p), fsync=False)

    def remove(self) -> None:
        """Delete the checkpoint (rank 0), e.g. once the finished path is saved."""
        if not self.comm.is_root or not self.dir.is_dir():
            return
        for f in list(self.dir.glob("lambda_*.pt")) + [self.dir / HEADER]:
            if f.exists():
                f.unlink()
        try:
            self.dir.rmdir()
        except OSError:
            pass
