"""What every benchmark of ``benchmarks/`` shares: device facts (short GPU name, CPU model, peak
memory, TF32 switches, synchronisation), building a registered model without its checkpoint,
and number formatting for the CSVs.
"""
from __future__ import annotations

import math
import os
import platform
import threading
import time

import torch

from replicate import backbones, methods
from replicate.estimate import PEAK_TFLOPS

#: dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from NVIDIA's datasheets (the planner's
#: table, replicate/estimate.py: H100 SXM5 and H200 SXM 989.4, H100 PCIe 756, A100 312)
PEAK_BF16_TFLOPS = {k: v["bf16"] for k, v in PEAK_TFLOPS.items()}


def short_device_name(device: torch.device) -> str:
    """'cpu', or h100 / h100-pcie / h200 / a100 / the GPU's name in lower case."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    for key in ("h200", "h100", "a100", "l40s", "l4", "a10", "v100", "t4"):
        if key in name:
            return f"{key}-pcie" if key == "h100" and "pcie" in name else key
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or the peak rise of the process RSS."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.kind = "cuda_max_allocated" if self.cuda else "cpu_rss_rise"
        self.peak = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._base, self._max, self._stop = self._rss(), 0, False

        def sample():
            while not self._stop:
                self._max = max(self._max, self._rss())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop = True
            self._thread.join()
            peak = max(self._max, self._rss()) - self._base
        self.peak = max(self.peak, peak / 2 ** 20)


def set_tf32(device: torch.device, on: bool) -> None:
    """TF32 matmuls/convolutions on CUDA (each variant sets its own: they interleave)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)



def build(backbone: str, method: str, classes: int, device: torch.device, seed: int):
    entry = backbones.get(backbone)
    torch.manual_seed(1234)
    adapter = entry.adapter(entry.build(), attention="sdpa")  # no weights: speed only
    torch.manual_seed(seed)
    model = methods.build_model(adapter, method, {}, classes, entry.default_pool)
    return model.to(device), entry


def input_size(model) -> int:
    a = model.adapter  # both adapters carry timm's patch grid and patch size
    ps = a.patch_size[0] if isinstance(a.patch_size, (tuple, list)) else a.patch_size
    return int(a.grid_size[0]) * int(ps)


def fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
