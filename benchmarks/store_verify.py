"""What the feature store's per-chunk CRC-32C costs a reader.

Writes a synthetic split of demo size by default (7,000 x 64 float32 features, int64
labels, 10 logits and a 16 x 7 x 7 spatial map per row, in 1,024-row chunks: about
26 MiB), then streams every array with ``iter_blocks`` from the page cache:

* ``verify=False``: no checksum (the reader before checksums);
* ``verify=True``, first pass: every chunk checked as it is read;
* ``verify=True``, second pass over the same reader: chunks already checked are not
  checked again;
* ``FeatureStore.verify(split)``: the whole-split check ``debuggable verify`` does.

Interleaved repeats, medians; one JSON line per case, with the ratio to ``verify=False``.

    .venv/bin/python benchmarks/store_verify.py [--rows 7000] [--dim 64] [--spatial 16,7,7] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from debuggable.features import FeatureStore, SplitLayout


def build(path: Path, rows: int, dim: int, spatial: tuple[int, int, int] | None, chunk_rows: int) -> int:
    store = FeatureStore(path, mode="a")
    layout = SplitLayout(n_rows=rows, chunk_rows=chunk_rows, feature_dim=dim, num_classes=10, spatial_shape=spatial)
    w = store.create_split("train", layout, class_names=[str(k) for k in range(10)], fingerprint="bench")
    rng = np.random.default_rng(0)
    for c in range(layout.n_chunks):
        lo, hi = layout.chunk_bounds(c)
        n = hi - lo
        logits = rng.standard_normal((n, 10), dtype=np.float32)
        w.write_chunk(c, features=rng.random((n, dim), dtype=np.float32), labels=rng.integers(0, 10, n),
                      logits=logits, preds=logits.argmax(1),
                      spatial=None if spatial is None else rng.random((n,) + spatial, dtype=np.float32), fsync=False)
    w.finalize(fsync=False)
    return sum(p.stat().st_size for p in (path / "train").rglob("*") if p.is_file())


def stream(reader, arrays) -> None:
    for _ in reader.iter_blocks(arrays, prefetch=False):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--spatial", default="16,7,7", help="C,h,w of the spatial map, or 'none'")
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    spatial = None if args.spatial == "none" else tuple(int(v) for v in args.spatial.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fs"
        nbytes = build(path, args.rows, args.dim, spatial, args.chunk_rows)
        store = FeatureStore(path)
        arrays = store.split("train").arrays
        stream(store.split("train", verify=False), arrays)  # warm the page cache
        times: dict[str, list[float]] = {k: [] for k in ("no_verify", "verify_first_pass", "verify_second_pass",
                                                          "verify_whole_split")}
        for _ in range(args.repeats):
            plain, reader = store.split("train", verify=False), store.split("train", verify=True)  # opened untimed
            t = time.perf_counter()
            stream(plain, arrays)
            times["no_verify"].append(time.perf_counter() - t)
            t = time.perf_counter()
            stream(reader, arrays)
            times["verify_first_pass"].append(time.perf_counter() - t)
            t = time.perf_counter()
            stream(reader, arrays)
            times["verify_second_pass"].append(time.perf_counter() - t)
            t = time.perf_counter()
            assert store.verify("train").ok
            times["verify_whole_split"].append(time.perf_counter() - t)
    base = statistics.median(times["no_verify"])
    for case, ts in times.items():
        med = statistics.median(ts)
        print(json.dumps({"benchmark": "store_verify", "case": case, "rows": args.rows, "mib": round(nbytes / 2**20, 1),
                          "seconds": round(med, 5), "mib_per_s": round(nbytes / 2**20 / med, 1),
                          "ratio_to_no_verify": round(med / base, 3), "repeats": args.repeats}))


if __name__ == "__main__":
    main()
