"""One CPU thread for torch, for work made of many small products."""

from __future__ import annotations

import contextlib

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
