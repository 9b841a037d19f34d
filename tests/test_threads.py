"""``debuggable._threads``: the thread budget that follows the free cores."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from debuggable import _threads
from debuggable._threads import ThreadBudget, one_cpu_thread, usable_cores


class FakeClock:
    """``/proc/stat``'s busy seconds, our own CPU seconds and the monotonic clock, by hand."""

    def __init__(self, monkeypatch):
        self.wall = 100.0
        self.busy = 1000.0
        self.own = 5.0
        self.nice_seen = []
        monkeypatch.setattr(_threads.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(_threads.time, "process_time", lambda: self.own)
        monkeypatch.setattr(_threads.time, "sleep", lambda s: self.advance(s, others=self.others, own=0.0))
        monkeypatch.setattr(_threads, "_proc_stat_busy", self.read)
        monkeypatch.setattr(_threads, "usable_cores", lambda: 2)
        self.others = 0.0

    def read(self, count_nice):
        self.nice_seen.append(count_nice)
        return self.busy

    def advance(self, seconds, others, own):
        """``seconds`` of wall time with ``others`` cores busy elsewhere and ``own`` of ours."""
        self.wall += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own


@pytest.fixture()
def clock(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield FakeClock(monkeypatch)
    torch.set_num_threads(saved)


def test_budget_takes_every_core_on_a_quiet_machine(clock):
    with ThreadBudget("cpu") as budget:
        assert budget.threads == 2 and torch.get_num_threads() == 2


def test_budget_gives_up_the_core_another_process_takes_and_takes_it_back(clock):
    clock.others = 1.0
    with ThreadBudget("cpu", interval=0.5) as budget:
        assert budget.threads == 1 and torch.get_num_threads() == 1
        # we ran one thread flat out beside the competitor: still one core left for us
        clock.advance(1.0, others=1.0, own=1.0)
        assert budget.update() == 1
        # the competitor stops; our own busy time does not count against us
        clock.advance(1.0, others=0.0, own=1.0)
        assert budget.update() == 2 and torch.get_num_threads() == 2
        # within the interval nothing is read
        reads = len(clock.nice_seen)
        clock.advance(0.1, others=1.0, own=2.0)
        assert budget.update() == 2 and len(clock.nice_seen) == reads
    assert torch.get_num_threads() == 2  # restored
    assert budget.history == [1, 2]


def test_the_count_does_not_flip_around_the_threshold(clock):
    clock.others = 0.25
    with ThreadBudget("cpu", interval=0.5) as budget:
        assert budget.threads == 1
        clock.advance(1.0, others=0.15, own=1.0)  # between the two thresholds: stay
        assert budget.update() == 1
        clock.advance(1.0, others=0.05, own=1.0)  # clearly gone: back up
        assert budget.update() == 2
        clock.advance(1.0, others=0.15, own=2.0)  # between the thresholds again: keep two
        assert budget.update() == 2
    assert budget.history == [1, 2]


def test_a_partly_busy_core_is_left_alone(clock):
    clock.others = 0.5  # another process on half a core: our second thread would stall at barriers
    with ThreadBudget("cpu") as budget:
        assert budget.threads == 1
    clock.others = 0.1  # background noise
    with ThreadBudget("cpu") as budget:
        assert budget.threads == 2


def test_budget_respects_the_thread_limit_and_a_fixed_count(clock):
    torch.set_num_threads(1)
    with ThreadBudget("cpu") as budget:  # one thread allowed: nothing to decide
        assert budget.threads is None and torch.get_num_threads() == 1
    with ThreadBudget("cpu", fixed=2) as budget:
        assert torch.get_num_threads() == 2 and budget.history == [2]
    assert torch.get_num_threads() == 1


def test_budget_keeps_every_thread_when_openmp_waits_passively(clock, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    clock.others = 1.0
    with ThreadBudget("cpu") as budget:
        assert budget.threads is None and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with ThreadBudget("cpu") as budget:
        assert budget.threads == 1


def test_budget_does_nothing_off_the_cpu(clock):
    with ThreadBudget("meta") as budget:
        assert budget.threads is None
    assert torch.get_num_threads() == 2


def test_niced_processes_count_unless_they_yield(clock, monkeypatch):
    monkeypatch.setattr(_threads, "niced_processes_yield", lambda: True)
    with ThreadBudget("cpu"):
        pass
    assert set(clock.nice_seen) == {False}
    clock.nice_seen.clear()
    monkeypatch.setattr(_threads, "niced_processes_yield", lambda: False)
    with ThreadBudget("cpu"):
        pass
    assert set(clock.nice_seen) == {True}


def test_niced_processes_yield_only_without_autogroups_and_when_we_are_not_niced(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    flag = tmp_path / "autogroup"

    def fake_open(path, *a, **kw):
        if path == "/proc/sys/kernel/sched_autogroup_enabled":
            return real_open(flag, *a, **kw)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(_threads.os, "getpriority", lambda which, who: 0)
    flag.write_text("1\n")
    assert _threads.niced_processes_yield() is False
    flag.write_text("0\n")
    assert _threads.niced_processes_yield() is True
    monkeypatch.setattr(_threads.os, "getpriority", lambda which, who: 10)
    assert _threads.niced_processes_yield() is False


def test_proc_stat_is_read_in_seconds():
    busy = _threads._proc_stat_busy(False)
    if busy is None:
        pytest.skip("no /proc/stat on this system")
    assert busy > 0
    spin_until = time.perf_counter() + 0.3
    while time.perf_counter() < spin_until:
        pass
    # we were busy for 0.3 s: all processes together were busy at least about that long
    assert _threads._proc_stat_busy(False) - busy >= 0.2


@pytest.mark.skipif(usable_cores() < 2, reason="needs two usable cores to see one taken")
def test_a_real_competing_process_is_seen():
    torch.set_num_threads(2)
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        with ThreadBudget("cpu", first_look=0.5) as budget:
            pass
        assert budget.last_others >= 0.7, budget.last_others
        assert budget.threads <= usable_cores() - 1
    finally:
        competitor.kill()
        competitor.wait()


def test_elastic_net_path_restores_the_thread_count_and_records_it():
    from debuggable.errors import DebuggableError
    from debuggable.glm import elastic_net_path

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = rng.integers(0, 3, 300)
    torch.set_num_threads(2)
    path = elastic_net_path(X, y, n_lambdas=4, threads=1)
    assert path.info["threads"] == [1] and torch.get_num_threads() == 2
    path = elastic_net_path(X, y, n_lambdas=4)  # small: no look, the threads it was given
    assert path.info["threads"] == [2]
    Xl = rng.standard_normal((20_000, 100)).astype(np.float32)  # 2M entries: the budget decides
    yl = rng.integers(0, 3, 20_000)
    path = elastic_net_path(Xl, yl, n_lambdas=2)
    assert path.info["threads"] and all(1 <= t <= min(2, usable_cores()) for t in path.info["threads"])
    assert torch.get_num_threads() == 2
    with pytest.raises(DebuggableError, match="threads: expected 'auto' or a positive integer"):
        elastic_net_path(X, y, n_lambdas=4, threads=0)


def test_one_cpu_thread_inside_a_budget_restores_the_budget_count(clock):
    with ThreadBudget("cpu") as budget:
        with one_cpu_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == budget.threads == 2


def test_row_chunks_cover_the_rows_in_order_and_run_on_the_workers():
    import threading

    from debuggable._threads import RowChunks

    rows = RowChunks()
    assert rows.bounds(10_000) == [(0, 10_000)]  # one worker: one chunk
    assert rows.bounds(10_001, max_rows=3000) == [(0, 2501), (2501, 5002), (5002, 7503), (7503, 10_001)]
    rows.set_workers(2)
    for n, max_rows, min_rows in [(10_000, None, 1024), (10_001, 3000, 1024), (1500, None, 1024), (1, None, 1024),
                                  (20_000, 4096, 1024), (1201, None, 64), (5000, 500, 1024)]:
        b = rows.bounds(n, max_rows=max_rows, min_rows=min_rows)
        assert b[0][0] == 0 and b[-1][1] == n and all(e0 == s1 for (_, e0), (s1, _) in zip(b, b[1:]))
        sizes = [e - s for s, e in b]
        assert all(sizes)
        if max_rows:
            assert max(sizes) <= max_rows
        if n >= 2 * min(min_rows, max_rows or min_rows):
            assert min(sizes) >= min(min_rows, max_rows or min_rows)
        # guided: each chunk a quarter of what is left (2 workers), large ones first
        if len(sizes) > 1:
            assert sizes[0] == min(max_rows or n, max(min_rows, -(-n // 4)))
        assert sizes[:-1] == sorted(sizes[:-1], reverse=True)
    assert [e - s for s, e in rows.bounds(10_000, min_rows=1024)] == [2500, 1875, 1407, 1055, 1024, 1024, 1115]
    assert len(rows.bounds(1500, min_rows=1024)) == 1  # too few rows to split
    try:
        out = list(rows.map(lambda s, e: (s, e, threading.current_thread().name, torch.get_num_threads()),
                            rows.bounds(10_000)))
    finally:
        rows.close()
    assert [o[:2] for o in out] == rows.bounds(10_000)
    assert all(o[2].startswith("debuggable-rows") and o[3] == 1 for o in out)  # one torch thread per worker
    rows.set_workers(1)
    assert [o[2] for o in rows.map(lambda s, e: (s, e, threading.current_thread().name), [(0, 5), (5, 9)])] \
        == [threading.current_thread().name] * 2


def test_budget_turns_the_row_workers_on_only_while_it_holds_torch_at_one_thread(clock):
    clock.others = 1.0
    with ThreadBudget("cpu", interval=0.5) as budget:
        assert budget.threads == 1 and budget.rows.workers == 2
        clock.advance(1.0, others=0.0, own=1.5)  # the competitor leaves
        assert budget.update() == 2 and budget.rows.workers == 1
        clock.advance(1.0, others=1.0, own=1.3)  # and comes back
        assert budget.update() == 1 and budget.rows.workers == 2
    assert budget.row_history == [2, 1, 2] and budget.rows.workers == 1  # off after the block
    with ThreadBudget("cpu", row_workers=False) as budget:
        assert budget.threads == 1 and budget.rows.workers == 1
    clock.others = 0.0
    with ThreadBudget("cpu") as budget:  # quiet: torch's own threads
        assert budget.threads == 2 and budget.row_history == [1]


def test_a_path_beside_a_competitor_runs_its_products_on_the_row_workers(clock):
    """The budget (fooled by the fake clock into seeing one core taken) turns the workers on;
    the path's solution is the one-thread path's, to the certificate's tolerance."""
    from debuggable.glm import elastic_net_path

    rng = np.random.default_rng(1)
    X = rng.standard_normal((20_000, 100)).astype(np.float32)  # 2M entries: the budget decides
    y = (X[:, :3] @ np.array([1.0, -1.0, 0.5]) + 0.5 * rng.standard_normal(20_000) > 0).astype(int) \
        + (X[:, 3] > 1).astype(int)
    clock.others = 1.0
    loaded = elastic_net_path(X, y, n_lambdas=4, lambda_min_ratio=0.1)
    assert loaded.info["threads"] == [1] and loaded.info["row_workers"] == [2]
    assert loaded.info["row_chunked_products"] > 0
    plain = elastic_net_path(X, y, n_lambdas=4, lambda_min_ratio=0.1, threads=1)
    assert plain.info["row_chunked_products"] == 0
    np.testing.assert_allclose(loaded.objective, plain.objective, rtol=1e-6)
    assert loaded.converged.all()
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getaffinity") or usable_cores() < 2,
                    reason="needs two usable cores and per-thread CPU affinity (Linux)")
def test_row_chunk_workers_are_pinned_to_distinct_cores():
    import os

    from debuggable._threads import RowChunks

    rows = RowChunks()
    rows.set_workers(2)
    barrier = __import__("threading").Barrier(2)

    def where(s, e):
        barrier.wait(timeout=10)  # both workers at once: one chunk each
        return frozenset(os.sched_getaffinity(0))

    try:
        cores = list(rows.map(where, [(0, 1), (1, 2)]))
    finally:
        rows.close()
    assert all(len(c) == 1 for c in cores) and cores[0] != cores[1]
    assert len(os.sched_getaffinity(0)) == usable_cores()  # the caller is not pinned


def _sched_attr() -> tuple[int, int, int] | None:
    """The calling thread's (policy, nice, slice in ns) read by ``sched_getattr``, or None
    where this test cannot read it."""
    import ctypes
    import platform
    import struct

    calls = _threads._SCHED_SETATTR.get(platform.machine())
    if calls is None:
        return None
    size = struct.calcsize(_threads._SCHED_ATTR)
    buf = ctypes.create_string_buffer(size)
    if ctypes.CDLL(None, use_errno=True).syscall(calls[1], 0, buf, size, 0) != 0:
        return None
    _, policy, _, nice, _, runtime, _, _ = struct.unpack(_threads._SCHED_ATTR, buf.raw)
    return policy, nice, runtime


def _skip_without_custom_slices() -> None:
    if sys.platform != "linux" or _in_thread(_sched_attr) is None:
        pytest.skip("sched_getattr is not available on this platform/architecture")
    probe = _in_thread(lambda: (_threads.request_slice(500_000), _sched_attr()))
    if probe[1][2] != 500_000:
        pytest.skip("this kernel does not keep a normal thread's slice request (custom slices: Linux 6.12+)")


def _in_thread(fn):
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(timeout=10)
    return out[0]


def test_request_slice_sets_the_threads_slice_and_keeps_its_policy_and_nice():
    import os

    _skip_without_custom_slices()

    def batch_niced():
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # 0: this thread (Linux)
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 1)
        before = _sched_attr()
        return before, _threads.request_slice(400_000), _sched_attr()

    before, ok, after = _in_thread(batch_niced)
    assert ok and after == (os.SCHED_BATCH, before[1], 400_000)

    def idle():
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        before = _sched_attr()
        return before, _threads.request_slice(400_000), _sched_attr()

    before, ok, after = _in_thread(idle)
    assert not ok and after == before and after[0] == os.SCHED_IDLE  # not a normal policy: left alone
    main_before = _sched_attr()
    assert _in_thread(lambda: (_threads.request_slice(300_000), _sched_attr())) == (True, (0, main_before[1], 300_000))
    assert _sched_attr() == main_before  # only the calling thread changes


def test_row_chunk_workers_ask_for_short_slices():
    from debuggable._threads import RowChunks

    _skip_without_custom_slices()
    rows = RowChunks()
    rows.set_workers(2)
    barrier = __import__("threading").Barrier(2)

    def slice_of_worker(s, e):
        barrier.wait(timeout=10)  # both workers at once: both threads are started
        return _sched_attr()[2]

    try:
        slices = list(rows.map(slice_of_worker, [(0, 1), (1, 2)]))
    finally:
        rows.close()
    assert slices == [RowChunks.SLICE_NS] * 2 and rows.short_slices == 2
