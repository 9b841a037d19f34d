"""Benchmark: attributions per second for every method, on CPU and (when present) GPU.

The built-in model under inspection (the demo's small CNN: width 16, 64 features, 10
classes; its trained weights with ``--model RUN/models/inspected``, else a seeded
initialisation, which costs the same) explains ``--images`` Animal-MNIST test images
(28x28) in batches of ``--batch-size``. For each method and device:

* ``debuggable``: ``get_method(name, model).attribute(x, target)`` with the method's
  default settings (``--quick``: the demo's smaller sample counts);
* ``captum``: the same Captum class called directly with the same settings, for the
  methods where that is one call (the reference; ``overhead`` = debuggable time /
  captum time - 1).

Prints one JSON object per line: ``{"method", "device", "impl", "images",
"seconds", "images_per_s", ...}``. Usage::

    python benchmarks/explain_tests.py [--images 64] [--batch-size 32] [--repeats 3]
        [--threads N] [--quick] [--methods saliency,occlusion] [--model DIR] [--device cpu|cuda|all]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from debuggable.data import load_dataset
from debuggable.explain_tests import get_method, list_methods
from debuggable.models import SmallCNN, load_model

QUICK = {"lime": {"n_samples": 64}, "kernel_shap": {"n_samples": 64}, "integrated_gradients": {"n_steps": 8},
         "smoothgrad": {"n_samples": 8}, "gradient_shap": {"n_samples": 8}, "occlusion": {"window": 4, "stride": 4}}


def captum_call(name: str, model, params: dict):
    """The direct Captum equivalent of ``name`` with ``params`` (None when it is not one call)."""
    import captum.attr as ca

    if name == "saliency":
        return lambda x, t: ca.Saliency(model).attribute(x, target=t, abs=False)
    if name == "input_x_gradient":
        return lambda x, t: ca.InputXGradient(model).attribute(x, target=t)
    if name == "integrated_gradients":
        return lambda x, t: ca.IntegratedGradients(model).attribute(
            x, baselines=0.0, target=t, n_steps=params.get("n_steps", 32), internal_batch_size=256)
    if name == "guided_backprop":
        return lambda x, t: ca.GuidedBackprop(model).attribute(x, target=t)
    if name == "grad_cam":
        return lambda x, t: ca.LayerAttribution.interpolate(
            ca.LayerGradCam(model, model.features).attribute(x, target=t, relu_attributions=True), x.shape[-2:],
            "bilinear")
    if name == "occlusion":
        w, s = params.get("window", 4), params.get("stride", 2)
        return lambda x, t: ca.Occlusion(model).attribute(
            x, sliding_window_shapes=(1, w, w), strides=(1, s, s), baselines=0.0, target=t,
            perturbations_per_eval=max(1, 256 // x.shape[0]))
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, batches, device, repeats: int) -> list[float]:
    fn(*batches[0])  # warm-up (kernels, Captum imports)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for x, t in batches:
            fn(x, t)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="the demo's smaller sample counts")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: all registered)")
    ap.add_argument("--model", default=None, help="a saved small CNN directory, e.g. RUN/models/inspected")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",") if args.methods else list_methods()
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    x_all, _ = load_dataset("animal_mnist", seed=0).test.batch(np.arange(args.images))
    for device in devices:
        if args.model:
            model = load_model(args.model, device=device)
        else:
            torch.manual_seed(0)
            model = SmallCNN(in_channels=1, num_classes=10, width=16, feature_dim=64).to(device).eval()
        x = x_all.to(device)
        with torch.no_grad():
            targets = model(x).argmax(1)
        batches = [(x[i: i + args.batch_size], targets[i: i + args.batch_size]) for i in range(0, x.shape[0], args.batch_size)]
        for name in methods:
            params = dict(QUICK.get(name, {})) if args.quick else {}
            method = get_method(name, model, **params)
            ours = _time(method.attribute, batches, device, args.repeats)
            base = {"method": name, "device": device.type, "images": int(x.shape[0]), "batch_size": args.batch_size,
                    "params": params, "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "machine": platform.machine()}
            med = statistics.median(ours)
            print(json.dumps({**base, "impl": "debuggable", "seconds": med, "seconds_min": min(ours),
                              "images_per_s": x.shape[0] / med}), flush=True)
            ref = captum_call(name, model, {**method.params})
            if ref is not None:
                theirs = _time(ref, batches, device, args.repeats)
                rmed = statistics.median(theirs)
                print(json.dumps({**base, "impl": "captum", "seconds": rmed, "seconds_min": min(theirs),
                                  "images_per_s": x.shape[0] / rmed, "overhead": med / rmed - 1}), flush=True)


if __name__ == "__main__":
    main()
