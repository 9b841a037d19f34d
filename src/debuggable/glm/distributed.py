"""Distributed path solving on ``torch.distributed``: the one place the solver reduces.

Every rank of a process group holds its own rows of the problem (features, targets,
sample weights, validation rows) and the same coefficients. The solver's quantities
then split in two:

* **rows-local**: predictions ``Z``, residuals ``R``, per-sample curvature, the row
  blocks the products stream: each rank keeps its own and they never travel;
* **full-data**: anything summed over rows: ``X^T R`` (gradients and Hessian-vector
  products), ``1^T R``, losses and line-search values, the (weighted) Gram matrices,
  the curvature mean ``B``, the certificate's conjugate sums, class counts, feature
  moments, accuracy counts. These are all-reduced (a sum) by a :class:`Communicator`,
  so every rank holds the same bits afterwards, and every decision taken from them
  (working sets, step lengths, convergence) is the same on every rank.

Decisions that depend on something else than reduced values (free memory, a
deadline, the size of a rank's rows) go through :meth:`Communicator.all_true` /
:meth:`Communicator.any_true`, so no rank branches alone. Without a process group the
:class:`Communicator` is a no-op and the code paths are the single-process ones.

A collective that fails (a rank died, or stopped answering within the group's
timeout) raises :class:`DistributedError`, a :class:`~debuggable.errors.DebuggableError`,
on the surviving ranks instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from debuggable.errors import DebuggableError

T = TypeVar("T")

#: Seconds a collective may wait for another rank before the job fails (the gloo /
#: NCCL timeout given to :func:`init_from_env`).
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(DebuggableError):
    """A collective failed: another rank died or stopped answering."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class Communicator:
    """Sum-reductions over a process group; a no-op without one.

    Args:
        group: a ``torch.distributed`` process group (e.g. ``torch.distributed.group.WORLD``)
            or ``None`` for a single process.
        device: the device the solver computes on; reductions of tensors on another
            device than the backend's (CPU for gloo, CUDA for NCCL) go through a copy.

    Attributes:
        active: whether there is a group (a one-rank group takes the same code paths
            as several ranks, its reductions being trivial).
        rank, world_size: this process's rank in the group and the group's size.
    """

    def __init__(self, group: Any = None, device: torch.device | None = None):
        self.group = group
        self.active = group is not None
        self.device = torch.device("cpu") if device is None else torch.device(device)
        if not self.active:
            self.rank, self.world_size, self.backend = 0, 1, None
            self._dev = self.device
            return
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise DebuggableError("process_group: expected a torch.distributed process group, but torch.distributed "
                                  "is not initialised (call torch.distributed.init_process_group or run under torchrun).")
        try:
            self.rank = int(dist.get_rank(group))
            self.world_size = int(dist.get_world_size(group))
            self.backend = str(dist.get_backend(group))
        except (RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise DebuggableError(f"process_group: expected a torch.distributed process group this process belongs "
                                  f"to, got {group!r} ({_first_line(exc)}).") from None
        if self.rank < 0:
            raise DebuggableError("process_group: this process is not a member of the group it was given.")
        self._dev = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    @property
    def is_root(self) -> bool:
        """Rank 0, which writes results."""
        return self.rank == 0

    # -- the collectives -------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except DebuggableError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:  # DistBackendError is a RuntimeError
            raise DistributedError(
                f"process_group: {what} failed on rank {self.rank} of {self.world_size} ({_first_line(exc)}); another "
                "rank has died or stopped answering within the group's timeout, so the fit stops here (rerun it to "
                "resume from the last saved lambda)."
            ) from exc

    def _reduce(self, t: torch.Tensor, op: str, what: str) -> torch.Tensor:
        import torch.distributed as dist

        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        if t.device == self._dev and t.is_contiguous():
            self._call(what, lambda: dist.all_reduce(t, op=red, group=self.group))
            return t
        buf = t.to(self._dev).contiguous()
        self._call(what, lambda: dist.all_reduce(buf, op=red, group=self.group))
        t.copy_(buf)
        return t

    def sum_(self, t: torch.Tensor, what: str = "an all-reduce") -> torch.Tensor:
        """Sum ``t`` over the ranks, in place; returns ``t``."""
        return self._reduce(t, "sum", what) if self.active else t

    def sum_all_(self, tensors: list[torch.Tensor], what: str = "an all-reduce") -> list[torch.Tensor]:
        """Sum every tensor of ``tensors`` over the ranks, in place, in one collective."""
        if not self.active or not tensors:
            return tensors
        dtype = tensors[0].dtype
        flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
        self._reduce(flat, "sum", what)
        pos = 0
        for t in tensors:
            t.copy_(flat[pos : pos + t.numel()].view(t.shape))
            pos += t.numel()
        return tensors

    def _scalar(self, x, op: str, dtype: torch.dtype, what: str):
        """``x`` reduced with ``op`` over the ranks, as a Python number of ``dtype``'s kind."""
        cast = int if dtype == torch.int64 else float
        if not self.active:
            return cast(x)
        t = torch.tensor([cast(x)], dtype=dtype, device=self._dev)
        return cast(self._reduce(t, op, what)[0])

    def sum_float(self, x: float, what: str = "an all-reduce") -> float:
        """The sum of ``x`` over the ranks (``x`` itself without a group)."""
        return self._scalar(x, "sum", torch.float64, what)

    def sum_int(self, x: int, what: str = "an all-reduce") -> int:
        return self._scalar(x, "sum", torch.int64, what)

    def max_float(self, x: float, what: str = "an all-reduce") -> float:
        return self._scalar(x, "max", torch.float64, what)

    def min_int(self, x: int, what: str = "an all-reduce") -> int:
        return self._scalar(x, "min", torch.int64, what)

    def min_float(self, x: float, what: str = "an all-reduce") -> float:
        return -self.max_float(-float(x), what) if self.active else x

    def any_true(self, flag: bool, what: str = "an agreement") -> bool:
        """Whether ``flag`` holds on some rank (every rank gets the same answer)."""
        return bool(self.max_float(1.0 if flag else 0.0, what) > 0) if self.active else bool(flag)

    def all_true(self, flag: bool, what: str = "an agreement") -> bool:
        """Whether ``flag`` holds on every rank."""
        return not self.any_true(not flag, what) if self.active else bool(flag)

    def gather_ints(self, x: int, what: str = "an all-gather") -> list[int]:
        """``x`` of every rank, in rank order."""
        if not self.active:
            return [int(x)]
        t = torch.zeros(self.world_size, dtype=torch.int64, device=self._dev)
        t[self.rank] = int(x)
        return [int(v) for v in self._reduce(t, "sum", what).tolist()]

    def broadcast_object(self, obj: Any, what: str = "a broadcast") -> Any:
        """Rank 0's ``obj`` on every rank (pickled; small objects only)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_root else None]
        self._call(what, lambda: dist.broadcast_object_list(box, src=self._global_root(), group=self.group,
                                                            device=self._dev))
        return box[0]

    def _global_root(self) -> int:
        import torch.distributed as dist

        try:
            return int(dist.get_global_rank(self.group, 0))
        except (AttributeError, RuntimeError, ValueError):
            return 0

    def raise_if_any(self, err: "DebuggableError | None") -> None:
        """Raise on every rank when some rank's local checks failed (``err`` is this rank's
        failure or ``None``): the failing rank raises its own error, the others one
        naming it. A failure on one rank would otherwise leave the others waiting at the
        next collective."""
        if not self.active:
            if err is not None:
                raise err
            return
        import torch.distributed as dist

        msgs: list[Any] = [None] * self.world_size
        mine = None if err is None else str(err)
        self._call("checking the inputs", lambda: dist.all_gather_object(msgs, mine, group=self.group))
        if err is not None:
            raise err
        for r, m in enumerate(msgs):
            if m is not None:
                raise DebuggableError(f"process_group: rank {r} refused its inputs: {m}")

    def agree(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (local checks) and make every rank fail when one does.

        A :class:`DebuggableError` on one rank would leave the others waiting at the
        next collective; here every rank learns whether some rank failed and raises:
        the failing rank its own error, the others one naming it.
        """
        err: DebuggableError | None = None
        result = None
        try:
            result = fn()
        except DebuggableError as exc:
            err = exc
        self.raise_if_any(err)
        return result

    def barrier(self, what: str = "a barrier") -> None:
        """Wait for every rank (a no-op without a group)."""
        if self.active:
            self.sum_int(0, what)

    def check_same(self, t: torch.Tensor, what: str) -> None:
        """Raise when ``t`` (replicated state, e.g. the coefficients) differs between ranks.

        Compares a float64 checksum (a weighted sum) by its minimum and maximum over the
        ranks: one small collective."""
        if not self.active:
            return
        v = t.reshape(-1).to(torch.float64)
        pos = torch.arange(1, v.numel() + 1, dtype=torch.float64, device=v.device)
        s = torch.stack([(v * pos).sum(), v.sum()]).to(self._dev)
        both = torch.cat([s, -s])
        self._reduce(both, "max", "comparing " + what)
        if not torch.equal(both[:2], -both[2:]):
            raise DistributedError(f"process_group: the ranks hold different {what}; expected identical replicated "
                                   "state (a reduction is not deterministic across ranks on this backend).")


def shard_bounds(n_rows: int, rank: int, world_size: int, chunk_rows: int | None = None) -> tuple[int, int]:
    """Rank ``rank``'s contiguous row range ``[lo, hi)`` of ``n_rows`` rows.

    With ``chunk_rows`` (a feature store's chunk size) the ranks get whole chunks, split
    as the distributed extraction splits them (``np.array_split`` of the chunk
    indices), so each rank reads its own chunk files; a rank may then get no rows
    when there are fewer chunks than ranks, which the solver refuses.
    """
    if chunk_rows:
        n_chunks = -(-n_rows // int(chunk_rows))
        mine = np.array_split(np.arange(n_chunks), world_size)[rank]
        if mine.size == 0:
            return n_rows, n_rows
        return int(mine[0]) * int(chunk_rows), min(n_rows, (int(mine[-1]) + 1) * int(chunk_rows))
    edges = np.linspace(0, n_rows, world_size + 1).round().astype(np.int64)
    return int(edges[rank]), int(edges[rank + 1])


class RowRangeReader:
    """Rows ``[start, stop)`` of a block reader, seen as a reader of its own (row 0 = ``start``).

    The reader must accept ``start``/``stop`` in ``iter_blocks`` (a feature store's
    :class:`~debuggable.features.store.SplitReader` does, and prefetches the next block
    in a background thread while the solver works on the current one).
    """

    def __init__(self, reader: Any, start: int, stop: int):
        n, d = (int(s) for s in reader.shape)
        if not 0 <= start <= stop <= n:
            raise DebuggableError(f"start, stop: expected 0 <= start <= stop <= {n}, got {start}, {stop}.")
        self.reader = reader
        self.start, self.stop = int(start), int(stop)
        self.shape = (self.stop - self.start, d)
        self.n_rows = self.shape[0]

    def iter_blocks(self, array: str = "features", block_rows: int | None = None, **kwargs: Any) -> Iterator[tuple[int, Any]]:
        kwargs.pop("start", None)
        kwargs.pop("stop", None)
        for s, blk in self.reader.iter_blocks(array, block_rows=block_rows, start=self.start, stop=self.stop, **kwargs):
            yield int(s) - self.start, blk

    def dtype(self, array: str = "features") -> Any:
        return self.reader.dtype(array)

    def read(self, array: str = "features") -> np.ndarray:
        """This range of ``array`` in memory (e.g. the labels)."""
        return self.reader.read(array, rows=slice(self.start, self.stop))


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` outside it)."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def init_from_env(device: Any = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Initialise ``torch.distributed`` from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) when ``WORLD_SIZE > 1``; returns the default group or
    ``None`` outside torchrun.

    The backend is NCCL for a CUDA device (this rank's ``LOCAL_RANK``-th GPU), gloo
    otherwise; ``timeout_s`` bounds how long a collective waits for a dead rank.
    """
    import torch.distributed as dist

    rank, world, local = env_world()
    if world <= 1:
        return None
    if dist.is_initialized():
        return dist.group.WORLD
    dev = torch.device(device) if device not in (None, "auto") else torch.device("cpu")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=float(timeout_s)))
    return dist.group.WORLD
