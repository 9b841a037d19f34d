"""Extraction in a subprocess that can be SIGKILLed at chosen points (for test_extract.py).

Usage::

    python resume_worker.py STORE [--n N] [--chunk-rows R] [--batch-size B]
        [--kill MODE:K] [--delay SECONDS] [--rank R --world-size W] [--log FILE]

Kill modes (the process SIGKILLs itself, so nothing gets to clean up):

* ``after-marker:K``  right after the K-th chunk (data and done-marker) is written;
* ``before-marker:K`` after the K-th chunk's data is flushed, before its done-marker;
* ``torn:K``          while writing the K-th chunk: half of its features file is
  written in place, then the process dies (a torn chunk file).

``--delay`` sleeps after each chunk so that the parent can kill it from outside.
``--log`` appends the index of every chunk this process writes, one per line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import TinyConvBackbone, make_dataset  # noqa: E402

import debuggable.features.store as store_mod  # noqa: E402
from debuggable.features import extract_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--chunk-rows", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--kill", default="")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--world-size", type=int, default=None)
    ap.add_argument("--log", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)

    mode, _, k = args.kill.partition(":")
    k = int(k or 0)
    count = {"chunks": 0, "markers": 0}

    original_write_chunk = store_mod.SplitWriter.write_chunk
    original_atomic = store_mod.atomic_write_text
    original_array_write = store_mod._ArrayHandle.write_chunk

    def write_chunk(self, i, **kw):
        if args.log:
            with open(args.log, "a") as f:
                f.write(f"{i}\n")
        out = original_write_chunk(self, i, **kw)
        count["chunks"] += 1
        if mode == "after-marker" and count["chunks"] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.delay:
            time.sleep(args.delay)
        return out

    def atomic(path, text, fsync=True):
        if path.parent.name == "_chunks":
            count["markers"] += 1
            if mode == "before-marker" and count["markers"] == k:
                os.kill(os.getpid(), signal.SIGKILL)
        return original_atomic(path, text, fsync=fsync)

    def array_write(self, i, data, fsync):
        if mode == "torn" and self.path.name == "features" and count["chunks"] + 1 == k:
            cp = self.chunk_path(i)
            cp.parent.mkdir(parents=True, exist_ok=True)
            raw = data.tobytes()
            with open(cp, "wb") as f:
                f.write(raw[: len(raw) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return original_array_write(self, i, data, fsync)

    store_mod.SplitWriter.write_chunk = write_chunk
    store_mod.atomic_write_text = atomic
    store_mod._ArrayHandle.write_chunk = array_write

    backbone = TinyConvBackbone(seed=0)
    dataset = make_dataset(args.n, seed=1)
    reader = extract_features(
        backbone,
        dataset,
        args.store,
        "train",
        batch_size=args.batch_size,
        chunk_rows=args.chunk_rows,
        spatial=True,
        progress=False,
        rank=args.rank,
        world_size=args.world_size,
    )
    print("complete" if reader.complete else "incomplete", flush=True)


if __name__ == "__main__":
    main()
