"""CPU thread counts for torch: one thread for many small products, and a budget
that follows the cores other processes leave free."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
import time

import torch


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """Run torch on one intra-op thread while on CPU (restored afterwards); no-op elsewhere.

    For small products (a model on a handful of images, the GLM's parameter-space
    solves): there, intra-op threads cost more than they bring, and on a busy machine
    OpenMP's barriers stall them badly (the demo's interpret stage took 71 s instead of
    9 s with 2 threads under a load of 4).
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _proc_stat_busy(count_nice: bool) -> float | None:
    """Seconds of CPU time all processes spent busy since boot, from ``/proc/stat``
    (``None`` where there is no ``/proc``). Time of niced processes counts only when
    ``count_nice``: a process at a higher nice value yields its core to us."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]] + [0] * max(0, 9 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    busy = user + system + irq + softirq + steal + (nice if count_nice else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def niced_processes_yield() -> bool:
    """Whether other processes' niced CPU time leaves its core to this process.

    Only when this process is not niced itself and the kernel's autogroup scheduling
    is off: with autogroups (the default on desktop Linux) nice values weigh processes
    only within one session, so a niced job started from another terminal competes
    for a core as much as any other (seen on this project's machines: a niced
    benchmark in another session took a quarter of glmnet's core)."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            return False
    except (AttributeError, OSError):
        return False
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True  # no autogroup support in this kernel: nice values apply machine-wide


def openmp_waits_passively() -> bool:
    """Whether ``OMP_WAIT_POLICY`` asks OpenMP's idle threads to sleep rather than spin
    (it takes effect only if set before torch starts its thread pool)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def _affinity() -> set[int]:
    """The CPUs this thread may run on (all of them where affinity is not supported)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


_SCHED_SETATTR = {"x86_64": (314, 315), "aarch64": (274, 275), "riscv64": (274, 275)}  # (setattr, getattr)
_SCHED_ATTR = "=IIqiIQQQ"  # struct sched_attr as of Linux 3.14 (48 bytes)
_FAIR_POLICIES = (0, 3)  # SCHED_OTHER, SCHED_BATCH


def request_slice(ns: int) -> bool:
    """Ask the kernel to run the calling thread in slices of ``ns`` nanoseconds; True when
    the request was accepted.

    Linux 6.12+ (EEVDF) reads ``sched_attr.sched_runtime`` of a normal thread as the
    slice it wants (0.1-100 ms; 0 resets the default: 0.7 ms times 1 + log2 of the core
    count, up to about 3 ms). A shorter slice gives the thread an earlier deadline, so
    when it wakes on a core a CPU-bound process holds, it runs within about that time
    instead of after the other's whole slice. Its share of the CPU does not change.

    The thread's policy and nice value are kept; a thread that is not under a normal
    policy (``SCHED_IDLE``, real-time), another architecture or another system is left
    alone. Older kernels accept the request and ignore it.
    """
    import platform
    import sys

    calls = _SCHED_SETATTR.get(platform.machine())
    if calls is None or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import struct

        libc = ctypes.CDLL(None, use_errno=True)
        size = struct.calcsize(_SCHED_ATTR)
        buf = ctypes.create_string_buffer(size)
        if libc.syscall(calls[1], 0, buf, size, 0) != 0:
            return False
        _size, policy, _flags, nice, prio, _runtime, deadline, period = struct.unpack(_SCHED_ATTR, buf.raw)
        if policy not in _FAIR_POLICIES:
            return False
        attr = struct.pack(_SCHED_ATTR, size, policy, 0, nice, prio, int(ns), deadline, period)
        return libc.syscall(calls[0], 0, ctypes.create_string_buffer(attr, size), 0) == 0
    except (OSError, AttributeError, ValueError):
        return False


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    return max(1, len(_affinity()))


class ThreadBudget:
    """Choose torch's intra-op thread count from the cores other processes leave free.

    OpenMP threads wait for each other at the end of every parallel product. When
    another process takes one of two cores, the thread that shares it is descheduled
    and the other one spins at the barrier: the same work then costs several times the
    CPU and the wall time (measured: 8x on the GLM path on two cores). So the budget
    measures, over the interval since its last look, how many cores were busy with
    *other* processes (all busy time in ``/proc/stat`` minus this process's own CPU
    time; niced processes only where they yield, :func:`niced_processes_yield`) and runs
    ``clamp(round_down(free + 0.2), 1, max_threads)`` threads; it adds a thread back
    only at ``round_down(free + 0.1)``, so a competitor near the threshold does not
    make the count flip at every look.

    With ``OMP_WAIT_POLICY=PASSIVE`` in the environment (set before torch starts) the
    threads do not spin, and the budget keeps ``max_threads``: measured on the GLM path
    beside one CPU-bound process, passive waiting on two threads took 1.47x the quiet
    time, the budget with spinning threads 1.62x, spinning on two threads 3.09x.

    Use as a context manager around long CPU work and call :meth:`update` often (it
    looks at most every ``interval`` seconds, so a call costs a clock read); the
    thread count in force before is restored on exit. On a non-CPU device, without
    ``/proc``, or with ``max_threads == 1`` it does nothing.

    Args:
        device: the device the work runs on.
        max_threads: upper bound (default: ``torch.get_num_threads()`` on entry).
        interval: seconds between looks.
        first_look: seconds of the first measurement, taken on entry.
        fixed: run exactly this many threads instead (no measuring).
        row_workers: while torch runs on one thread and ``max_threads`` are allowed,
            let :attr:`rows` run the large products on ``max_threads`` worker threads
            (:class:`RowChunks`); ``False`` keeps everything on torch's one thread.
            ``None``: the class default :attr:`ROW_WORKERS` (benchmarks flip it to compare).

    Attributes:
        threads: torch's thread count in force (``None`` while the budget has not set one).
        history: the thread counts set, in order.
        rows: the row-chunk workers the design's products use; active only while the
            budget holds torch at one thread below ``max_threads``.
        row_history: the worker counts :attr:`rows` was given, in order (1: off).
    """

    #: Whether budgets use row-chunk workers unless told otherwise.
    ROW_WORKERS = True

    def __init__(self, device: torch.device | str = "cpu", max_threads: int | None = None, interval: float = 0.5,
                 first_look: float = 0.05, fixed: int | None = None, row_workers: bool | None = None):
        self.device = torch.device(device)
        self.fixed = fixed
        self.max_threads = max_threads
        self.interval = interval
        self.first_look = first_look
        self.threads: int | None = None
        self.last_others: float | None = None  # cores busy elsewhere at the last look
        self.history: list[int] = []
        self._saved: int | None = None
        self._last: tuple[float, float, float] | None = None
        self._count_nice = False
        self._active = False
        self.row_workers = self.ROW_WORKERS if row_workers is None else row_workers
        self.rows = RowChunks()
        self.row_history: list[int] = []

    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = _proc_stat_busy(self._count_nice)
        if busy is None:
            return None
        return time.monotonic(), busy, time.process_time()

    def __enter__(self) -> "ThreadBudget":
        self._saved = torch.get_num_threads()
        if self.fixed is not None:
            self._active = False
            if self.device.type == "cpu":
                torch.set_num_threads(self.fixed)
                self.threads = self.fixed
                self.history.append(self.fixed)
            return self
        limit = self.max_threads or self._saved
        self.max_threads = max(1, min(limit, usable_cores()))
        self._count_nice = not niced_processes_yield()
        # passive OpenMP threads sleep instead of spinning at barriers, so beside another
        # process every thread still gets its share of the cores: keep them all
        self._active = self.device.type == "cpu" and self.max_threads > 1 and not openmp_waits_passively()
        if self._active:
            self._last = self._snapshot()
            if self._last is None:
                self._active = False
            else:
                time.sleep(self.first_look)
                self.update(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.rows.close()
        self.rows.set_workers(1)
        if self._saved is not None and self.threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self._saved)
        self._active = False

    def others_busy(self, now: tuple[float, float, float]) -> float:
        """Cores busy with other processes between the last look and ``now``."""
        t0, busy0, own0 = self._last
        t1, busy1, own1 = now
        wall = max(t1 - t0, 1e-9)
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / wall)

    def update(self, force: bool = False) -> int | None:
        """Look again if ``interval`` has passed (or ``force``); return the thread count."""
        if not self._active:
            return self.threads
        if not force and time.monotonic() - self._last[0] < self.interval:
            return self.threads
        now = self._snapshot()
        if now is None:
            return self.threads
        self.last_others = self.others_busy(now)
        free = usable_cores() - self.last_others
        self._last = now
        threads = int(min(self.max_threads, max(1, math.floor(free + 0.2))))
        if self.threads is not None and threads > self.threads:
            # back up only once the other work has clearly left (hysteresis: a competitor
            # hovering near the threshold made the count flip at every look)
            threads = int(min(self.max_threads, max(self.threads, math.floor(free + 0.1))))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.history.append(threads)
        # one torch thread on a machine where we may run more: the free part of the
        # second core is still ours if nothing waits at a barrier for it
        workers = self.max_threads if (self.row_workers and threads == 1 and self.max_threads > 1) else 1
        if workers != self.rows.workers or not self.row_history:
            self.rows.set_workers(workers)
            self.row_history.append(workers)
        return threads


class RowChunks:
    """Products over row chunks on persistent worker threads: parallel work that never
    waits at a barrier.

    On two cores beside one CPU-bound process, :class:`ThreadBudget` drops torch to one
    thread (two OpenMP threads would spin at every barrier) and the process gets one
    core. Workers that each multiply their own rows with torch on one thread, pull
    chunks from a queue and meet only when the product is done can use the part of
    the second core the competitor leaves. Each worker is pinned to its own core: left
    free, the scheduler wakes both on the core the competitor is not on, and the
    process still gets one core (measured by ``benchmarks/glm_threads_load.py`` on the
    solver's products at 30,000 x 384 x 25 beside one busy process: 1.31 cores pinned,
    1.09 not; 12% less time than one thread). Quiet, the workers are about as fast as
    torch's own threads.

    The budget turns the workers on (``workers > 1``) only while it runs torch on one
    thread and could use more. The chunk bounds depend on ``n`` and the worker count
    only, and partial sums are added in chunk order, so a result is reproducible for a
    given worker count.

    Attributes:
        workers: threads in use (1: :meth:`map` runs in the caller).
        calls: parallel :meth:`map` and :meth:`each` calls so far (a diagnostic).
    """

    #: While active, each chunk takes ``1 / (GUIDED_SHARE * workers)`` of the rows not yet
    #: handed out (guided scheduling): large chunks first, so each multiply stays
    #: efficient, and small ones last, so the worker that shares its core with the
    #: competitor is never left finishing a large chunk while the other one waits.
    #: Measured beside one busy process (20,000 x 2048 x 100, 1,200 working-set columns):
    #: ``mv`` + ``rmv`` 8% faster than 4 equal chunks per worker, as fast as 16.
    GUIDED_SHARE = 2
    #: Pin worker ``i`` to the ``i``-th core of the process's affinity (where it has
    #: at least as many cores as workers).
    PIN = True
    #: The scheduler slice each worker asks for (ns, :func:`request_slice`; ``None``: the
    #: default). A worker wakes for every product, and on the core the competitor holds
    #: it used to wait out the competitor's slice (1.4 ms on two cores) first, while the other
    #: worker finished its chunks and the caller waited; products at 20,000 x 512 x 10
    #: take a few milliseconds. Measured there beside one busy process: 5-22% faster
    #: (``docs/glm.md``).
    SLICE_NS: int | None = 300_000

    def __init__(self) -> None:
        self.workers = 1
        self.calls = 0
        self.short_slices = 0  # workers whose slice request was accepted (a diagnostic)
        self._started = threading.Lock()  # the workers' initialisers count under it
        self._pool = None
        self._size = 0

    @property
    def active(self) -> bool:
        return self.workers > 1

    def set_workers(self, workers: int) -> None:
        self.workers = max(1, int(workers))

    def bounds(self, n: int, max_rows: int | None = None, min_rows: int = 1024) -> list[tuple[int, int]]:
        """Row ranges ``[(start, end), ...]`` covering ``0..n`` in order.

        Inactive: one range, or equal ranges of at most ``max_rows``. Active: guided
        sizes (see :attr:`GUIDED_SHARE`), none over ``max_rows`` and none under
        ``min_rows`` except where ``n`` itself is smaller; a short remainder joins the
        last range. The ranges depend on ``n``, the bounds and the worker count only.
        """
        if n <= 0:
            return []
        if not self.active:
            parts = -(-n // max_rows) if max_rows else 1
            step = -(-n // parts)
            return [(s, min(n, s + step)) for s in range(0, n, step)]
        min_rows = max(1, min(min_rows, max_rows or min_rows))
        out, s = [], 0
        while s < n:
            size = max(min_rows, -(-(n - s) // (self.GUIDED_SHARE * self.workers)))
            if max_rows:
                size = min(size, max_rows)
            e = min(n, s + size)
            if 0 < n - e < min_rows and (not max_rows or n - s <= max_rows):
                e = n  # no runt at the end
            out.append((s, e))
            s = e
        return out

    def map(self, fn, chunks: list[tuple[int, int]]):
        """``fn(start, end)`` for every chunk, results in chunk order (an iterator).

        Runs on the workers when :attr:`active` and there is more than one chunk, else
        in the calling thread."""
        return self.each(lambda b: fn(*b), chunks)

    def each(self, fn, items: list):
        """``fn(item)`` for every item, results in item order (an iterator): independent
        tasks (one per class, say) that the workers pull one at a time.

        Runs on the workers when :attr:`active` and there is more than one item, else in
        the calling thread."""
        if not self.active or len(items) < 2:
            return (fn(item) for item in items)
        if self._pool is None or self._size != self.workers:
            self.close()
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="debuggable-rows",
                                            initializer=self._start_worker, initargs=(itertools.count(),))
            self._size = self.workers
        self.calls += 1
        return self._pool.map(fn, items)

    def _start_worker(self, counter) -> None:
        # torch on one intra-op thread, set in the worker itself: torch's thread count and
        # MKL's are per thread once a thread has used them
        torch.set_num_threads(1)
        if self.SLICE_NS is not None and request_slice(self.SLICE_NS):
            with self._started:
                self.short_slices += 1
        if not self.PIN:
            return
        cores = sorted(_affinity())
        if len(cores) >= self.workers:
            try:
                os.sched_setaffinity(0, {cores[next(counter) % len(cores)]})  # 0: this thread (Linux)
            except (AttributeError, OSError):
                pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._size = 0
