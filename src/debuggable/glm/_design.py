"""The design matrix as the solvers see it: in memory or streamed in row blocks.

Both classes expose the same small interface on the *standardised* features, so the
same solver code runs on a tensor that fits on the device and on a feature-store
reader that does not:

* ``set_columns(A)``: restrict products to the working set of feature columns ``A``;
* ``mv(V, exact=False)``: ``X_A @ V`` (``(n, K)``); ``mv_all(W)``: ``X @ W`` over all
  features, leaving the working set as it is;
* ``rmv(R, exact=False, full=False)``: ``X_A^T @ R`` (or ``X^T @ R`` with ``full``),
  accumulated in float64 over row blocks;
* ``gram()``: the weighted Gram matrix of ``[X, 1]`` divided by ``n``, float64.

Under a process group (:mod:`debuggable.glm.distributed`) a design holds this rank's
rows only: ``n`` is the number of local rows, ``n_total`` that of all ranks, ``mv``
stays local (``(n, K)`` predictions of the local rows) and everything summed over
rows (``rmv``, ``gram``, ``weighted_grams``) is all-reduced through ``comm``.

Products run in the compute dtype (float32 by default) on the data's device; with
``exact=True`` the blocks are promoted to float64 first, which is how convergence
certificates are computed, so they do not depend on float32 rounding.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from debuggable._threads import RowChunks
from debuggable.errors import DebuggableError
from debuggable.glm.distributed import Communicator

_BLOCK_ELEMS = 1 << 22  # ~16 MiB of float32 per row block
# A float64 copy of in-memory CPU features up to this size makes every certificate
# one float64 product instead of a block-by-block promotion.
_EXACT_COPY_BYTES = 1 << 29


def block_rows_for(d: int, device: torch.device | None = None) -> int:
    """Rows per block: ~16 MiB of float32 on a CPU (cache-friendly, and float32 sums
    stay short), ~256 MiB on an accelerator (fewer kernel launches)."""
    elems = _BLOCK_ELEMS if device is None or device.type == "cpu" else _BLOCK_ELEMS * 16
    return int(max(256, min(1 << 20, elems // max(1, d))))


#: Rows per chunk below which splitting ``R^T X`` over threads does not pay.
_MIN_CHUNK_ROWS = 1024


def thin_rt_x(R: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``R^T X`` (``(K, m)``) for ``R`` ``(r, K)`` with few columns and ``X`` ``(r, m)``.

    On a CPU, MKL runs this product on one thread whatever ``torch.get_num_threads()``
    says (the reduction runs along the long dimension), so the rows are split into one
    chunk per thread and the chunks multiplied as one batched product, which MKL does
    spread over the threads: 3.1 ms instead of 6.2 ms for 20,000 x 512 x 10 on two
    cores. The chunks' sums are added in a fixed order, so the result is reproducible
    for a given thread count.
    """
    r = R.shape[0]
    parts = torch.get_num_threads() if R.device.type == "cpu" else 1
    parts = min(parts, r // _MIN_CHUNK_ROWS)
    if parts <= 1 or not X.is_contiguous():
        return R.T @ X
    q = r // parts
    head = torch.bmm(R[: parts * q].reshape(parts, q, -1).transpose(1, 2), X[: parts * q].view(parts, q, -1)).sum(0)
    if parts * q < r:
        head += R[parts * q :].T @ X[parts * q :]
    return head


def _power_lmax(G: torch.Tensor, iters: int = 60) -> float:
    """Largest eigenvalue of a PSD matrix: exact up to 2048 rows (a few hundred
    milliseconds at most, once per working set), else by power iteration with a 10%
    margin (its estimate approaches the eigenvalue from below)."""
    m = G.shape[0]
    if m == 0:
        return 0.0
    if m <= 2048:
        return float(torch.linalg.eigvalsh(G.to(torch.float64))[-1]) * 1.0001 + 1e-300
    gen = torch.Generator(device="cpu").manual_seed(1)
    v = torch.rand(m, 1, generator=gen, dtype=torch.float64).to(G.device, G.dtype) + 0.5
    lam = 0.0
    for _ in range(iters):
        w = G @ v
        nrm = float(w.norm())
        if nrm == 0:
            return 1e-300
        lam_new = float((v * w).sum() / (v * v).sum())
        v = w / nrm
        if abs(lam_new - lam) <= 1e-4 * abs(lam_new):
            lam = lam_new
            break
        lam = lam_new
    return 1.1 * lam


class WorkCount:
    """The work of a design's products with ``X``, counted as they run.

    Attributes:
        flops: multiply-add FLOPs (2 per multiply-add) by compute dtype name
            (``"float32"``, ``"float64"``), over this rank's rows.
        x_bytes: bytes of ``X`` (or its working-set columns) the products read.
        products: the number of passes over this rank's rows that multiply by ``X``
            (one call of the weighted Gram matrices is one, whatever it computes).

    The cost model of ``benchmarks/glm_cost_model.py`` is fitted on these counts.
    """

    def __init__(self) -> None:
        self.flops = {"float32": 0, "float64": 0}
        self.x_bytes = 0
        self.products = 0

    def add(self, rows: int, inner: int, outer: int, dtype: torch.dtype, x_bytes: int, product: bool = True) -> None:
        """Count a ``(rows, inner) x (inner, outer)`` product; ``product=False`` for a
        further one in the same pass (the weighted Gram matrices of one call)."""
        key = "float64" if dtype == torch.float64 else "float32"
        self.flops[key] += 2 * int(rows) * int(inner) * int(outer)
        self.x_bytes += int(x_bytes)
        self.products += int(product)

    def snapshot(self) -> dict[str, int]:
        return {"flops_float32": self.flops["float32"], "flops_float64": self.flops["float64"],
                "x_bytes": self.x_bytes, "products": self.products}


class InMemoryDesign:
    """Standardised features held as one ``(n, D)`` tensor on the compute device."""

    streaming = False

    def __init__(self, X: torch.Tensor, sample_weight: torch.Tensor | None, comm: Communicator | None = None):
        self.X = X
        self.n, self.d = X.shape
        self.comm = comm or Communicator()
        self.n_total = self.comm.sum_int(self.n, "counting the rows")
        self.device = X.device
        self.dtype = X.dtype
        self.w = sample_weight
        self.block = block_rows_for(self.d, self.device)
        self._cols: torch.Tensor | None = None
        self._XA: torch.Tensor | None = None
        self._pad = False
        self._X64: torch.Tensor | None = None  # made on the first certificate, see _exact_copy
        self.work = WorkCount()
        #: row-chunk workers for ``mv``/``rmv`` (:class:`debuggable._threads.RowChunks`), set
        #: by the path from its thread budget; used only while active and on a CPU
        self.rows: RowChunks | None = None

    def _chunks(self) -> list[tuple[int, int]] | None:
        """Row ranges for the workers of :attr:`rows`, or None to multiply in one call."""
        rows = self.rows
        if rows is None or not rows.active or self.device.type != "cpu":
            return None
        chunks = rows.bounds(self.n, max_rows=self.block, min_rows=_MIN_CHUNK_ROWS)
        return chunks if len(chunks) > 1 else None

    # -- working set ---------------------------------------------------------------
    def set_columns(self, A: torch.Tensor | None) -> None:
        if A is not None and self._cols is not None and A.shape == self._cols.shape and bool((A == self._cols).all()):
            return
        self._XA = None
        self._pad = False
        if A is None or A.numel() == self.d:
            self._cols = None
            return
        self._cols = A
        if A.numel() > 0.6 * self.d:
            self._pad = True  # cheaper to multiply the full X with zero rows than to copy
        else:
            self._XA = self.X.index_select(1, A)

    def _matrix(self) -> torch.Tensor:
        return self._XA if self._XA is not None else self.X

    def _expand(self, V: torch.Tensor) -> torch.Tensor:
        if self._pad:
            Vf = torch.zeros(self.d, V.shape[1], dtype=V.dtype, device=V.device)
            Vf[self._cols] = V
            return Vf
        return V

    def _exact_copy(self) -> torch.Tensor | None:
        """A float64 copy of X for certificates when X is a CPU float32 tensor of at
        most ``_EXACT_COPY_BYTES`` in float64 (else None: blocks are promoted per product)."""
        if self._X64 is None and self.dtype != torch.float64 and self.device.type == "cpu" \
                and self.X.numel() * 8 <= _EXACT_COPY_BYTES:
            self._X64 = self.X.to(torch.float64)
        return self._X64

    # -- products --------------------------------------------------------------------
    def mv(self, V: torch.Tensor, exact: bool = False, out_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        V = self._expand(V)
        M = self._matrix()
        if V.shape[0] == 0:
            return torch.zeros(self.n, V.shape[1], dtype=out_dtype, device=self.device)
        dt = self.dtype if not exact else torch.float64
        self.work.add(self.n, M.shape[1], V.shape[1], dt, M.numel() * M.element_size())
        if not exact or self.dtype == torch.float64:
            # linear(M, V^T) is markedly faster than M @ V for thin V on CPU (MKL/oneDNN)
            return self._linear(M, V.T.to(self.dtype).contiguous(), out_dtype)
        V64 = V.to(torch.float64)
        X64 = self._exact_copy()
        if X64 is not None:
            M64 = X64 if self._XA is None else X64.index_select(1, self._cols)
            return self._linear(M64, V64.T.contiguous(), out_dtype)
        out = torch.empty(self.n, V.shape[1], dtype=out_dtype, device=self.device)
        for s in range(0, self.n, self.block):
            out[s : s + self.block] = torch.nn.functional.linear(M[s : s + self.block].to(torch.float64), V64.T.contiguous()).to(out_dtype)
        return out

    def mv_all(self, W: torch.Tensor, exact: bool = False, out_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``X @ W`` over all ``D`` features (``W`` is ``(D, K)``), leaving the working set as it is.

        Only ``W``'s non-zero rows are multiplied, except for an exact product on the
        float64 copy, which is one product with no column copies.
        """
        if exact and self.dtype != torch.float64:
            X64 = self._exact_copy()
            if X64 is not None:
                self.work.add(self.n, self.d, W.shape[1], torch.float64, X64.numel() * 8)
                return self._linear(X64, W.to(torch.float64).T.contiguous(), out_dtype)
        saved = (self._cols, self._XA, self._pad)
        rows = torch.nonzero(W.abs().sum(1) > 0).flatten()
        try:
            self.set_columns(rows)
            return self.mv(W.index_select(0, rows), exact=exact, out_dtype=out_dtype)
        finally:
            self._cols, self._XA, self._pad = saved

    def rmv(self, R: torch.Tensor, exact: bool = False, full: bool = False) -> torch.Tensor:
        M = self.X if (full or self._pad or self._cols is None) else self._matrix()
        m = M.shape[1]
        X64 = self._exact_copy() if exact and M is self.X else None
        self.work.add(self.n, m, R.shape[1], torch.float64 if exact else self.dtype,
                      M.numel() * (8 if X64 is not None else M.element_size()))
        chunks = self._chunks()
        if X64 is not None and chunks is None:
            G = self.comm.sum_(thin_rt_x(R.to(torch.float64), X64).contiguous(), "X^T R").T
            return G[self._cols] if (self._pad and not full) else G
        if X64 is not None:
            M = X64
        dt = torch.float64 if exact else self.dtype
        def piece(s: int, e: int) -> torch.Tensor:
            return thin_rt_x(R[s:e].to(dt), M[s:e].to(dt)).to(torch.float64)

        acc = torch.zeros(R.shape[1], m, dtype=torch.float64, device=self.device)
        # row blocks here, or the workers' chunks; either way the partial sums are added in order
        parts = (piece(s, min(self.n, s + self.block)) for s in range(0, self.n, self.block)) if chunks is None \
            else self.rows.map(piece, chunks)
        for part in parts:
            acc += part
        G = self.comm.sum_(acc, "X^T R").T
        if self._pad and not full:
            G = G[self._cols]
        return G

    def _linear(self, M: torch.Tensor, Vt: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """``M @ Vt^T`` as ``out_dtype``, over row chunks on :attr:`rows`'s workers when active."""
        chunks = self._chunks()
        if chunks is None:
            return torch.nn.functional.linear(M, Vt).to(out_dtype)
        out = torch.empty(M.shape[0], Vt.shape[0], dtype=out_dtype, device=M.device)

        def piece(s: int, e: int) -> None:
            out[s:e] = torch.nn.functional.linear(M[s:e], Vt)

        for _ in self.rows.map(piece, chunks):
            pass
        return out

    def weighted_grams(self, requests: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Weighted Gram matrices of row and column subsets, with the intercept.

        Args:
            requests: ``(rows, weights, cols)`` triples: sorted sample indices ``(r,)``,
                their weights ``(r,)`` and feature indices ``(c,)``.

        Returns:
            For each request the ``(c + 1, c + 1)`` float64 matrix
            ``[X_rc, 1]^T diag(weights) [X_rc, 1]`` (not divided by ``n``), computed in
            the compute dtype, ``X_rc`` being the standardised ``X[rows][:, cols]``.
        """
        for i, (rows, _, cols) in enumerate(requests):
            self.work.add(rows.numel(), cols.numel() + 1, cols.numel() + 1, self.dtype,
                          rows.numel() * cols.numel() * self.X.element_size(), product=i == 0)
        def one(request: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
            rows, wts, cols = request
            return _weighted_gram(self.X[rows[:, None], cols[None, :]], wts)

        # one request per task: the workers (when on) each gather and multiply whole ones
        tasks = self.rows if (self.rows is not None and self.device.type == "cpu") else None
        out = list(tasks.each(one, requests) if tasks is not None else map(one, requests))
        return self.comm.sum_all_(out, "the weighted Gram matrices")

    def gram(self) -> torch.Tensor:
        d = self.d
        self.work.add(self.n, d, d, self.dtype, self.n * d * self.X.element_size())
        G = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=self.device)
        for s in range(0, self.n, self.block):
            Xb = self.X[s : s + self.block]
            if self.w is not None:
                wb = self.w[s : s + self.block]
                Xw = Xb * wb.to(self.dtype).unsqueeze(1)
                G[:d, :d] += (Xw.T @ Xb).to(torch.float64)
                G[:d, d] += (Xb.to(torch.float64) * wb.unsqueeze(1)).sum(0)
                G[d, d] += wb.sum()
            else:
                G[:d, :d] += (Xb.T @ Xb).to(torch.float64)
                G[:d, d] += Xb.to(torch.float64).sum(0)
                G[d, d] += Xb.shape[0]
        G[d, :d] = G[:d, d]
        return self.comm.sum_(G, "the Gram matrix") / self.n_total


class StreamingDesign(InMemoryDesign):
    """Standardised features streamed from a block reader, one row block at a time.

    Only the ``(n, K)`` work arrays live in memory; every product is one pass over
    the reader. Blocks are standardised exactly as :func:`standardize_in_memory`
    does (float64 arithmetic, then the compute dtype), so the streamed and
    in-memory problems are bit-identical.
    """

    streaming = True

    def __init__(self, reader: Any, mean: torch.Tensor, std: torch.Tensor, sample_weight: torch.Tensor | None,
                 dtype: torch.dtype, device: torch.device, block_rows: int | None = None, comm: Communicator | None = None):
        self.reader = reader
        self.n, self.d = (int(s) for s in reader.shape)
        self.comm = comm or Communicator()
        self.n_total = self.comm.sum_int(self.n, "counting the rows")
        self.mean = mean
        self.std = std
        self.device = device
        self.dtype = dtype
        self.w = sample_weight
        self.block = int(block_rows or block_rows_for(self.d))
        self._cols = None
        self._XA = None
        self._pad = False
        self._scratch: torch.Tensor | None = None  # the float64 standardisation temporary, used by the prefetch thread only
        self.passes = 0
        self.work = WorkCount()
        try:  # bytes per stored feature value (float32 in a feature store)
            self.reader_item_bytes = int(np.dtype(getattr(reader, "dtype", None) or np.float32).itemsize)
        except TypeError:
            self.reader_item_bytes = 4

    def set_columns(self, A: torch.Tensor | None) -> None:
        self._cols = None if (A is None or A.numel() == self.d) else A

    def _exact_copy(self) -> None:
        return None  # nothing is held in memory; exact products promote each block

    def blocks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """The standardised row blocks of one pass, in row order.

        A background thread reads and standardises the next block while the caller
        works on the current one (so at most two blocks are in flight, which
        :func:`~debuggable.glm.path.streaming_memory` counts); on CUDA the raw block goes
        through pinned memory and is copied to the device asynchronously. The reader's
        own prefetching is turned off (``prefetch=False``) so blocks are not read ahead
        twice.
        """
        self.passes += 1
        cuda = self.device.type == "cuda"
        src = self.reader.iter_blocks("features", block_rows=self.block, as_torch=True,
                                      device=None if cuda else self.device, prefetch=False)

        def prepare(item: tuple[Any, Any]) -> tuple[int, torch.Tensor]:
            start, blk = item
            blk = torch.as_tensor(blk)
            if cuda:
                blk = (blk if blk.is_pinned() else blk.pin_memory()).to(self.device, non_blocking=True)
            else:
                blk = blk.to(self.device)
            if blk.ndim != 2 or blk.shape[1] != self.d:
                raise DebuggableError(f"X: the reader yielded a block of shape {tuple(blk.shape)}; expected (rows, {self.d}).")
            if self._scratch is None and self.dtype != torch.float64:
                self._scratch = torch.empty(self.block * self.d, dtype=torch.float64, device=self.device)
            return int(start), standardize_block(blk, self.mean, self.std, self.dtype, self._scratch)

        expect = 0
        for start, blk in _in_background(src, prepare):
            if start != expect:
                raise DebuggableError(f"X: the reader yielded a block at row {start}; expected consecutive blocks starting at row {expect}.")
            expect = start + blk.shape[0]
            yield start, blk
        if expect != self.n:
            raise DebuggableError(f"X: the reader yielded {expect} rows; expected {self.n} as its shape says.")

    def mv(self, V: torch.Tensor, exact: bool = False, out_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        out = torch.empty(self.n, V.shape[1], dtype=out_dtype, device=self.device)
        dt = torch.float64 if exact else self.dtype
        m = self.d if self._cols is None else self._cols.numel()
        self.work.add(self.n, m, V.shape[1], dt, self.n * self.d * self.reader_item_bytes)
        Vc = V.to(dt)
        for s, Xb in self.blocks():
            if self._cols is not None:
                Xb = Xb.index_select(1, self._cols)
            out[s : s + Xb.shape[0]] = torch.nn.functional.linear(Xb.to(dt), Vc.T.contiguous()).to(out_dtype)
        return out

    def rmv(self, R: torch.Tensor, exact: bool = False, full: bool = False) -> torch.Tensor:
        cols = None if full else self._cols
        m = self.d if cols is None else cols.numel()
        acc = torch.zeros(R.shape[1], m, dtype=torch.float64, device=self.device)
        dt = torch.float64 if exact else self.dtype
        self.work.add(self.n, m, R.shape[1], dt, self.n * self.d * self.reader_item_bytes)
        for s, Xb in self.blocks():
            if cols is not None:
                Xb = Xb.index_select(1, cols)
            acc += thin_rt_x(R[s : s + Xb.shape[0]].to(dt), Xb.to(dt)).to(torch.float64)
        return self.comm.sum_(acc, "X^T R").T

    def weighted_grams(self, requests: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """As :meth:`InMemoryDesign.weighted_grams`, in one pass over the reader."""
        out = [torch.zeros(c.numel() + 1, c.numel() + 1, dtype=torch.float64, device=self.device) for _, _, c in requests]
        for i, (rows, _, cols) in enumerate(requests):
            self.work.add(rows.numel(), cols.numel() + 1, cols.numel() + 1, self.dtype, 0, product=i == 0)
        self.work.x_bytes += self.n * self.d * self.reader_item_bytes
        for s, Xb in self.blocks():
            e = s + Xb.shape[0]
            for acc, (rows, wts, cols) in zip(out, requests):
                lo, hi = (int(v) for v in torch.searchsorted(rows, torch.tensor([s, e], device=rows.device)))
                if hi > lo:
                    acc += _weighted_gram(Xb[(rows[lo:hi] - s)[:, None], cols[None, :]], wts[lo:hi])
        return self.comm.sum_all_(out, "the weighted Gram matrices")

    def gram(self) -> torch.Tensor:
        d = self.d
        self.work.add(self.n, d, d, self.dtype, self.n * d * self.reader_item_bytes)
        G = torch.zeros(d + 1, d + 1, dtype=torch.float64, device=self.device)
        for s, Xb in self.blocks():
            b = Xb.shape[0]
            if self.w is not None:
                wb = self.w[s : s + b]
                G[:d, :d] += ((Xb * wb.to(self.dtype).unsqueeze(1)).T @ Xb).to(torch.float64)
                G[:d, d] += (Xb.to(torch.float64) * wb.unsqueeze(1)).sum(0)
                G[d, d] += wb.sum()
            else:
                G[:d, :d] += (Xb.T @ Xb).to(torch.float64)
                G[:d, d] += Xb.to(torch.float64).sum(0)
                G[d, d] += b
        G[d, :d] = G[:d, d]
        return self.comm.sum_(G, "the Gram matrix") / self.n_total


_END = object()
_MALLOC_FIXED = False


def fix_malloc_threshold(threshold: int = 1 << 17) -> bool:
    """Make glibc serve allocations above ``threshold`` bytes by ``mmap`` and return them
    to the system when freed (``mallopt(M_MMAP_THRESHOLD)``); True when it applied.

    By default glibc raises that threshold to the size of each large block freed (up
    to 32 MiB), after which the row blocks come from the heap, whose freed pages it
    keeps: streaming 1,353-row blocks under a 48 MiB ``memory_limit`` then grew the
    process by 153 MiB instead of 28 MiB. Called once per process when a memory
    limit is set on a CPU; elsewhere (not glibc) a no-op.
    """
    global _MALLOC_FIXED
    if _MALLOC_FIXED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _MALLOC_FIXED = bool(libc.mallopt(-3, int(threshold)))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        _MALLOC_FIXED = False
    return _MALLOC_FIXED


def _in_background(items: Iterator[Any], fn: Any) -> Iterator[Any]:
    """``fn(item)`` for each of ``items``, the next one computed in a background thread
    while the caller holds the current one (exceptions surface in the caller)."""
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)

    def step() -> Any:
        try:
            item = next(it)
        except StopIteration:
            return _END
        return fn(item)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="glm-prefetch") as pool:
        pending = pool.submit(step)
        while True:
            current = pending.result()
            if current is _END:
                return
            pending = pool.submit(step)
            yield current
            del current


def _weighted_gram(Xrc: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[Xrc, 1]^T diag(weights) [Xrc, 1]`` in ``Xrc``'s dtype, returned as float64."""
    X1 = torch.cat([Xrc, torch.ones(Xrc.shape[0], 1, dtype=Xrc.dtype, device=Xrc.device)], 1)
    return ((X1 * weights.to(Xrc.dtype).unsqueeze(1)).T @ X1).to(torch.float64)


def standardize_block(blk: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype,
                      scratch: torch.Tensor | None = None) -> torch.Tensor:
    """``(blk - mean) / std`` in float64 arithmetic, returned as a new tensor of ``dtype``.

    ``blk`` (rows, D) is not changed. The float64 temporary is updated in place, in
    ``scratch`` (a float64 tensor of at least ``blk.numel()`` elements on ``blk``'s
    device) when one is given and ``dtype`` is not float64: the streaming solver
    standardises every block of every pass, and a fresh block-sized allocation costs a
    page fault per page once a memory limit has glibc hand freed blocks back (half the
    time of a pass over a 1 GiB store went there).
    """
    if scratch is not None and dtype != torch.float64 and scratch.numel() >= blk.numel():
        x = scratch[: blk.numel()].view(blk.shape).copy_(blk)
    else:
        x = blk.to(torch.float64, copy=True)
    x.sub_(mean).div_(std)
    return x.to(dtype)


def standardize_in_memory(X: np.ndarray | torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                          dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A standardised copy of ``X`` on ``device`` (row blocks, float64 arithmetic)."""
    n, d = X.shape
    out = torch.empty(n, d, dtype=dtype, device=device)
    step = block_rows_for(d)
    for s in range(0, n, step):
        blk = torch.as_tensor(np.ascontiguousarray(X[s : s + step]) if isinstance(X, np.ndarray) else X[s : s + step])
        out[s : s + step] = standardize_block(blk.to(device), mean, std, dtype)
    return out


def moments_in_memory(X: np.ndarray | torch.Tensor, device: torch.device,
                      comm: Communicator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-feature mean and unbiased std (float64), plus the count of non-finite values
    (over every rank's rows under a process group)."""
    n, d = X.shape
    step = block_rows_for(d)
    acc = _Moments(d, device)
    for s in range(0, n, step):
        blk = torch.as_tensor(np.ascontiguousarray(X[s : s + step]) if isinstance(X, np.ndarray) else X[s : s + step])
        acc.update(blk.to(device), row0=s)
    if comm is not None:
        acc.reduce(comm)
    return acc.result()


class _Moments:
    """Chan et al.'s mergeable mean / sum of squares in float64, plus a finiteness count."""

    def __init__(self, d: int, device: torch.device):
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(d, dtype=torch.float64, device=device)
        self.nonfinite = 0
        self.first_bad: tuple[int, int] | None = None

    def update(self, blk: torch.Tensor, row0: int | None = None) -> None:
        b = blk.to(torch.float64)
        if not bool(torch.isfinite(b).all()):
            bad = ~torch.isfinite(b)
            self.nonfinite += int(bad.sum())
            if self.first_bad is None:
                r, c = torch.nonzero(bad)[0].tolist()
                self.first_bad = ((self.n if row0 is None else row0) + r, c)
            b = torch.where(bad, torch.zeros_like(b), b)
        nb = b.shape[0]
        if nb == 0:
            return
        mb = b.mean(0)
        m2b = ((b - mb) ** 2).sum(0)
        tot = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / tot)
        self.m2 = self.m2 + m2b + delta * delta * (self.n * nb / tot)
        self.n = tot

    def reduce(self, comm: Communicator) -> None:
        """Merge the moments of every rank's rows (all-reduced, so every rank gets the same).

        Two collectives: the pooled mean from the ranks' sums, then the pooled sum of
        squares ``sum_r m2_r + n_r (mean_r - mean)^2`` (exact up to rounding). The first
        non-finite value is reported at its row among the ranks' rows in rank order."""
        if not comm.active:
            return
        counts = comm.gather_ints(self.n, "merging the feature moments")
        offset = sum(counts[: comm.rank])
        tot = sum(counts)
        sums = comm.sum_(self.mean * self.n, "merging the feature moments")
        mean = sums / max(tot, 1)
        m2 = comm.sum_(self.m2 + (self.mean - mean) ** 2 * self.n, "merging the feature moments")
        self.nonfinite = comm.sum_int(self.nonfinite, "counting non-finite values")
        if self.nonfinite:
            big = 1 << 62
            mine = big if self.first_bad is None else (offset + self.first_bad[0]) * (1 << 24) + self.first_bad[1]
            first = comm.min_int(mine, "locating a non-finite value")
            self.first_bad = (first >> 24, first & ((1 << 24) - 1)) if first < big else None
        self.mean, self.m2, self.n = mean, m2, tot

    def result(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        var = self.m2 / max(1, self.n - 1)
        return self.mean, var.sqrt(), self.nonfinite

