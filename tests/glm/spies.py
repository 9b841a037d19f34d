"""A test helper: row-chunk workers that record which threads ran their tasks."""

from __future__ import annotations

import threading

from debuggable._threads import RowChunks


def spying_rows(workers: int = 2) -> tuple[RowChunks, set[str]]:
    """Active :class:`RowChunks` with ``workers`` threads, and the set that collects the
    names of the threads that ran a task (``map`` goes through ``each``, so both are
    seen). The caller closes the workers."""
    rows = RowChunks()
    rows.set_workers(workers)
    seen: set[str] = set()
    inner = rows.each

    def spying_each(fn, items):
        def record(item):
            seen.add(threading.current_thread().name)
            return fn(item)
        return inner(record, items)

    rows.each = spying_each
    return rows, seen
