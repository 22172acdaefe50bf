#!/usr/bin/env python
"""Training-step benchmark: the engine's fast path against the official code's plain step.

For each method x backbone, one process measures side by side, interleaved over ``--repeats``
rounds (so a noisy, shared machine slows every variant alike; the median round is reported):

``reference``       the step a faithful port of the official trainer runs (KMnP/vpt and
                    GatedPromptTuning ``src/engine/trainer.py`` ``forward_one_batch`` +
                    ``train_classifier``): fp32 with TF32 matmuls allowed on the GPU (the
                    default of the torch the official code pinned, on Ampere and later), eager
                    attention (explicit softmax), no compile,
                    no autocast; a DataLoader-style host batch (already decoded and normalised,
                    pinned on CUDA) moved to the device every step, the ``loss == inf`` /
                    ``isnan`` checks and ``loss.item()`` per step (host syncs);
``fast``            the engine's step with its default switches (``engine.train.train_step``):
                    uint8 split held on the device, normalised on the device, SDPA attention,
                    bf16 autocast on CUDA (precision 'auto'), loss accumulated on the device (no
                    host sync), no compile (``train.compile`` defaults to False);
``fast_tf32``       (GPU) the same step at the reproductions' precision: fp32 with TF32 matmuls
                    (``train.precision='fp32'``, what 'protocol' resolves to);
``fast_sliced``     (GateVPT, VPT-deep, LSPT) ``fast`` with the prompt assembly as it was before
                    issue 16 (slices + ``torch.cat``, ``benchmarks/legacy_assembly.py``): the
                    before/after of the assembly;
``fast_compile``    the same under ``torch.compile`` (``engine.train.compile_model``), unless
                    ``--compile off``;
``packed<K>``       K configs of one grid (different lr/wd) in one packed step
                    (``engine.packed.packed_step``); images/s counts all K x batch images, so
                    ``speedup_vs_fast`` is the packed grid against the same K runs one by one;
``cached``          linear probe only: the head-only step on cached features
                    (``engine/features.py``), to which one forward pass per image is added once.

Same model (one set of weights, the registered architecture built without its checkpoint:
``entry.build()``), same batch size, same data for every variant.  Model FLOPs per step
(forward + backward) are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the
reference step; TFLOP/s = those FLOPs / step time for every variant (model FLOPs, not hardware
FLOPs), MFU = TFLOP/s / the GPU's dense bf16 peak.  Peak memory: ``torch.cuda.max_memory_
allocated`` on GPU; on CPU the peak rise of the process RSS during the variant's timed steps
(sampled every ms; indicative only: the allocator keeps freed memory).

Autograd memory traffic (every single-config row): counted on the meta device for the row's
model at the row's batch (``engine/cost.py``, fused attention): ``backward_gb`` (bytes read and
written by the backward pass's operators), ``saved_gib`` (what autograd keeps for backward) and
``backward_nodes`` (nodes of the backward graph).

Modules, by what they measure: ``step.py`` (this file: the timed step variants, the CSV),
``grid.py`` (whole-grid wall time, rows ``grid<K>_*``), ``traffic.py`` (the counted autograd
columns), ``common.py`` (device facts, model building, formatting), ``legacy_assembly.py``
(the pre-issue-16 prompt assembly of the ``fast_sliced`` rows).

Writes ``results/bench/<device>.csv`` (device 'cpu' or a short GPU name: h100, h200, a100);
``replicate/estimate.py`` reads its ``fast`` rows for ``plan``'s GPU-hour estimate.

    python benchmarks/step.py                       # all methods, default backbone(s)
    python benchmarks/step.py --methods gatevpt --batch 128 --steps 30
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import (PEAK_BF16_TFLOPS, PeakMemory, build, cpu_name,  # noqa: E402
                               fmt, input_size, set_tf32, short_device_name, sync)
from benchmarks.grid import bench_grid  # noqa: E402
from benchmarks.traffic import traffic_columns  # noqa: E402
from replicate import backbones, methods  # noqa: E402
from replicate.engine import packed as packed_mod  # noqa: E402
from replicate.engine import train as engine  # noqa: E402

#: backbones measured when --backbones is not given; methods that need another architecture
#: (VPTM: BEiT v2 with its MIM head) use the counterpart below
DEFAULT_BACKBONE = {"cpu": "vit_micro_patch8_32.timm_test", "cuda": "vit_base_patch16_224.mae"}
NEEDS_BEIT = {"vptm": {"cpu": "beit_micro_patch8_32.beitv2_test",
                       "cuda": "beitv2_base_patch16_224.pt1k"}}

COLUMNS = ["device", "device_name", "torch", "method", "backbone", "variant", "configs", "batch",
           "precision", "attention", "compile", "data", "images_per_s", "step_ms",
           "speedup_vs_reference", "speedup_vs_fast", "speedup_vs_alone", "peak_mem_mib",
           "mem_kind",
           "gflop_per_image", "tflops", "mfu", "threads", "repeats", "steps", "measured", "note",
           "backward_gb", "saved_gib", "backward_nodes"]
#: methods whose prompt assembly changed in issue 16 (rows fast_sliced)
SLICED = ("gatevpt", "vpt_deep", "lspt")


# ------------------------------------------------------------------ the variants
@dataclass
class Variant:
    name: str
    configs: int
    precision: str
    attention: str
    compiled: bool
    data: str
    #: runs `steps` steps; returns nothing (the timer syncs the device itself)
    run: Callable[[int], None]
    note: str = ""
    #: the model whose step this is, when one model (autograd traffic is counted for it)
    model: Optional[object] = None


def synthetic_split(n: int, size: int, classes: int, seed: int = 0):
    """uint8 images and labels, as the data layer hands them to the engine."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    from replicate import data

    return data.in_memory_split(images, labels, classes, "train", "bench:synthetic")


def make_opt(model, lr: float = 1e-3, wd: float = 1e-4) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.trainable_parameters(), lr=lr, momentum=0.9, weight_decay=wd)


def reference_variant(model, entry, split, batch: int, device: torch.device,
                      attention: str = "eager", amp: Optional[torch.dtype] = None,
                      name: str = "reference") -> Variant:
    """The official trainer's step on DataLoader output (host, float, normalised)."""
    mean = torch.tensor(entry.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(entry.std).view(1, 3, 1, 1) * 255
    host = []
    for i in range(0, len(split) - batch + 1, batch):
        x = (split.images[i:i + batch].float() - mean) / std  # done by the loader's workers
        y = split.labels[i:i + batch].clone()
        if device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        host.append((x, y))
    opt = make_opt(model)
    state = {"i": 0}

    def run(steps: int) -> None:
        model.adapter.attention = attention
        set_tf32(device, amp is None)  # fp32 as the official code ran it: TF32 matmuls
        model.train(True)
        for _ in range(steps):
            x, y = host[state["i"] % len(host)]
            state["i"] += 1
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            if loss == float("inf"):  # trainer.py: skip the update on inf / nan (host syncs)
                continue
            if torch.isnan(loss).any():
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # losses.update(train_loss.item(), ...)

    prec = ("fp32+tf32" if device.type == "cuda" else "fp32") if amp is None else "bf16"
    return Variant(name, 1, prec, attention, False, "host->device per step", run, model=model)


class _OfficialStyleItems(torch.utils.data.Dataset):
    """VPT's TFDataset.__getitem__ (``src/data/datasets/tf_dataset.py``): a pre-resized float
    image per item, normalised in the worker (``to_torch_imgs``), returned in a dict."""

    def __init__(self, split, entry):
        self.images = split.images.permute(0, 2, 3, 1).float().div(255).numpy()  # HWC in [0, 1]
        self.labels = split.labels.tolist()
        self.mean = torch.tensor(entry.mean).view(3, 1, 1)
        self.std = torch.tensor(entry.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        t = torch.from_numpy(self.images[i].transpose(2, 0, 1).copy())
        t -= self.mean
        t /= self.std
        return {"image": t, "label": self.labels[i]}


def loader_reference_variant(model, entry, split, batch: int, device: torch.device,
                             workers: int) -> Variant:
    """``reference`` fed by the official pipeline: a DataLoader (shuffle, ``workers`` worker
    processes, pinned memory; VPT's DATA.NUM_WORKERS=4, PIN_MEMORY=True) over per-item
    normalisation, re-created every epoch as the official loop does."""
    loader = torch.utils.data.DataLoader(
        _OfficialStyleItems(split, entry), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=device.type == "cuda")
    state = {"it": iter(loader)}

    def batches():
        while True:
            try:
                d = next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                continue
            yield d["image"], d["label"]

    stream = batches()
    opt = make_opt(model)

    def run(steps: int) -> None:
        model.adapter.attention = "eager"
        set_tf32(device, True)
        model.train(True)
        for _ in range(steps):
            x, y = next(stream)
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            if loss == float("inf") or torch.isnan(loss).any():
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()

    return Variant("reference+loader", 1, "fp32+tf32" if device.type == "cuda" else "fp32",
                   "eager", False,
                   f"official DataLoader ({workers} workers)", run,
                   note="reference step fed by the official-style DataLoader (per-item "
                        "normalisation in workers); not used for the ratios")


def fast_variant(model, split, batch: int, device: torch.device, norm, compiled: bool,
                 name: str, precision: str = "auto", note: str = "") -> Variant:
    """``engine.train.train_step`` on the engine's in-memory ``Batches`` (uint8 on device), at
    ``train.precision`` = ``precision``."""
    batches = engine.Batches(split, batch, device, True, 0)
    spec = type("T", (), {"precision": precision})()
    precision, amp = engine.resolve_precision(spec, device)
    opt = make_opt(model)
    fwd = engine.compile_model(model) if compiled else model
    stream = _batches_forever(batches)
    loss_sum = torch.zeros((), device=device)

    def run(steps: int) -> None:
        nonlocal loss_sum
        model.adapter.attention = "sdpa"
        engine.resolve_precision(spec, device)  # its TF32 switches (variants interleave)
        model.train(True)
        for _ in range(steps):
            x, y = next(stream)
            loss_sum += engine.train_step(fwd, model, opt, norm, x, y, amp) * y.numel()

    return Variant(name, 1, precision, "sdpa", compiled, "uint8 on device", run, note=note,
                   model=model)


def _batches_forever(batches):
    epoch = 0
    while True:
        for x, y in batches.epoch(0, epoch):
            if x.shape[0] == batches.bs:  # full batches only: every step times the same work
                yield x, y
        epoch += 1


def packed_variant(model0, backbone: str, method: str, classes: int, split, batch: int,
                   device: torch.device, norm, k: int, compiled: bool) -> Variant:
    """K runs of a grid (lr/wd differ, one seed: shared batches) in one packed step."""
    models = [model0] + [methods.build_model(model0.adapter, method, {}, classes,
                                             backbones.get(backbone).default_pool).to(device)
                         for _ in range(k - 1)]
    lrs = [10 ** (-3 + 0.25 * i) for i in range(k)]
    opts = [make_opt(m, lr=lr, wd=1e-4 * (i % 3)) for i, (m, lr) in enumerate(zip(models, lrs))]
    precision, amp = engine.resolve_precision(type("T", (), {"precision": "auto"})(), device)
    block = packed_mod.compiled_block(model0.adapter) if compiled else None
    batches = engine.Batches(split, batch, device, True, 0)
    stream = _batches_forever(batches)
    rng = packed_mod.RngStreams(device)
    for i in range(k):
        rng.seed(i, 0, 0)
    loss_sum = torch.zeros(k, device=device)

    def run(steps: int) -> None:
        nonlocal loss_sum
        model0.adapter.attention = "sdpa"
        engine.resolve_precision(type("T", (), {"precision": "auto"})(), device)
        for m in models:
            m.train(True)
        for _ in range(steps):
            x, y = next(stream)
            xn = norm(x)
            loss_sum += packed_mod.packed_step(models, opts, [xn] * k, [y] * k, amp, rng, block)

    return Variant(f"packed{k}", k, precision, "sdpa", compiled, "uint8 on device", run,
                   note=f"{k} configs (lr/wd differ) per step; images/s counts all of them")


def cached_variant(model, split, batch: int, device: torch.device, norm) -> Variant:
    from replicate.engine.features import feature_batches

    precision, amp = engine.resolve_precision(type("T", (), {"precision": "auto"})(), device)
    model.adapter.attention = "sdpa"
    fb = feature_batches(model, engine.Batches(split, batch, device, True, 0), norm, amp)
    opt = make_opt(model)
    head = model.method.head
    stream = _batches_forever(fb)
    loss_sum = torch.zeros((), device=device)

    def run(steps: int) -> None:
        nonlocal loss_sum
        model.train(True)
        for _ in range(steps):
            f, y = next(stream)
            loss_sum += engine.train_step(head, model, opt, lambda t: t, f, y, amp) * y.numel()

    return Variant("cached", 1, precision, "sdpa", False, "features on device", run,
                   note="head-only step on cached features; building the cache costs one "
                        "forward pass per image, once")


# ------------------------------------------------------------------ measuring
def count_step_flops(model, split, entry, batch: int, device: torch.device) -> float:
    """Model FLOPs of one fp32 eager training step (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    v = reference_variant(model, entry, synthetic_subset(split, batch), batch, device)
    with FlopCounterMode(display=False) as counter:
        v.run(1)
    return float(counter.get_total_flops())


def synthetic_subset(split, n: int):
    from replicate import data

    return data.in_memory_split(split.images[:n], split.labels[:n], split.num_classes, "train",
                                "bench:subset")


def time_variant(v: Variant, steps: int, device: torch.device, mem: PeakMemory) -> float:
    """Seconds per step over ``steps`` steps (device synchronised at both ends)."""
    with mem:
        sync(device)
        t0 = time.perf_counter()
        v.run(steps)
        sync(device)
        dt = time.perf_counter() - t0
    return dt / steps


def bench_pair(method: str, backbone: str, args, device: torch.device) -> List[dict]:
    classes = args.classes
    model, entry = build(backbone, method, classes, device, seed=0)
    split = synthetic_split(max(4 * args.batch, 256), input_size(model), classes)
    norm = engine.normalizer(entry, device)
    flops = count_step_flops(model, split, entry, args.batch, device)

    compiled = args.compile == "on"
    variants = [reference_variant(model, entry, split, args.batch, device)]
    if args.loader_workers > 0:
        variants.append(loader_reference_variant(model, entry, split, args.batch, device,
                                                 args.loader_workers))
    if args.ablate:
        amp = torch.bfloat16 if device.type == "cuda" else None
        variants.append(reference_variant(model, entry, split, args.batch, device, "sdpa", None,
                                          "ref+sdpa"))
        if amp is not None:
            variants.append(reference_variant(model, entry, split, args.batch, device, "eager",
                                              amp, "ref+bf16"))
    variants.append(fast_variant(model, split, args.batch, device, norm, False, "fast"))
    if device.type == "cuda":  # on a CPU, fp32 is what 'fast' runs already
        variants.append(fast_variant(model, split, args.batch, device, norm, False, "fast_tf32",
                                     "fp32", note="the reproductions' precision: fp32 with TF32 "
                                                  "matmuls"))
    if method in SLICED and args.sliced:
        from benchmarks.legacy_assembly import old_assembly

        variants.append(fast_variant(old_assembly(model), split, args.batch, device, norm, False,
                                     "fast_sliced", note="prompt assembly before issue 16 "
                                                         "(slices + cat)"))
    if compiled:
        variants.append(fast_variant(model, split, args.batch, device, norm, True, "fast_compile"))
    if args.packed > 1 and not methods.get(method).trains_backbone:
        variants.append(packed_variant(model, backbone, method, classes, split, args.batch,
                                       device, norm, args.packed, compiled and args.packed_compile))
    if method == "linear":
        variants.append(cached_variant(model, split, args.batch, device, norm))

    times: Dict[str, List[float]] = {v.name: [] for v in variants}
    mems = {v.name: PeakMemory(device) for v in variants}
    errors: Dict[str, str] = {}
    for v in variants:  # warm-up (compilation happens here) outside the timed rounds
        t0 = time.perf_counter()
        try:
            v.run(args.warmup)
            sync(device)
        except Exception as e:  # e.g. out of memory for packed8: recorded, not fatal
            errors[v.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"  warm-up {method}/{v.name}: {time.perf_counter() - t0:.1f} s"
              + (f" FAILED {errors[v.name]}" if v.name in errors else ""), flush=True)
    for _ in range(args.repeats):
        for v in variants:
            if v.name not in errors:
                times[v.name].append(time_variant(v, args.steps, device, mems[v.name]))

    ref_t = statistics.median(times["reference"])
    ref_ips = args.batch / ref_t
    fast_ips = args.batch / statistics.median(times["fast"]) if times["fast"] else float("nan")
    peak = PEAK_BF16_TFLOPS.get(short_device_name(device)) if device.type == "cuda" else None
    rows = []
    for v in variants:
        base = {"method": method, "backbone": backbone, "variant": v.name, "configs": v.configs,
                "batch": args.batch, "precision": v.precision, "attention": v.attention,
                "compile": v.compiled, "data": v.data, "note": v.note}
        if v.name in errors:
            rows.append({**base, "note": f"not measured: {errors[v.name]}"})
            continue
        t = statistics.median(times[v.name])
        ips = v.configs * args.batch / t
        step_flops = flops * v.configs if v.name != "cached" else float("nan")
        tflops = step_flops / t / 1e12
        if v.model is not None:
            base.update(traffic_columns(backbone, method, classes, args.batch, v.attention,
                                        v.name == "fast_sliced"))
        rows.append({**base, "images_per_s": ips, "step_ms": 1e3 * t,
                     "speedup_vs_reference": ips / ref_ips, "speedup_vs_fast": ips / fast_ips,
                     "peak_mem_mib": mems[v.name].peak, "mem_kind": mems[v.name].kind,
                     "gflop_per_image": flops / args.batch / 1e9,
                     "tflops": tflops, "mfu": tflops / peak if peak else float("nan")})
    return rows


# ------------------------------------------------------------------ output
def print_table(rows: List[dict]) -> None:
    cols = ["method", "variant", "precision", "compile", "images_per_s", "step_ms",
            "speedup_vs_reference", "speedup_vs_fast", "speedup_vs_alone", "peak_mem_mib",
            "tflops", "mfu", "backward_gb", "backward_nodes"]
    head = ["method", "variant", "prec", "comp", "img/s", "ms/step", "x ref", "x fast",
            "x alone", "mem MiB", "TFLOP/s", "MFU", "bwd GB", "bwd nodes"]
    table = [head] + [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


def write_csv(path: Path, rows: List[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt(r[k]) if isinstance(r.get(k), float) else r.get(k, "")
                        for k in COLUMNS})
    os.replace(tmp, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--batch", type=int, default=None, help="images per step (GPU 128, CPU 64)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; median reported")
    p.add_argument("--methods", default="all", help="comma list or 'all' (registered methods)")
    p.add_argument("--backbones", default="auto",
                   help="comma list of registered backbones (default: the tiny ViT on CPU, "
                        "ViT-B/16 on GPU; VPTM on the BEiT v2 counterpart)")
    p.add_argument("--compile", default="on", choices=("on", "off"),
                   help="also measure the fast path under torch.compile (row fast_compile)")
    p.add_argument("--packed", type=int, default=8, help="configs of the packed row (0: none)")
    p.add_argument("--packed-compile", action="store_true",
                   help="compile the packed row's frozen blocks (with --compile on)")
    p.add_argument("--grid", type=int, default=8,
                   help="configs of the whole-grid rows (one process per run vs one packed "
                        "process, wall time); 0: not measured")
    p.add_argument("--grid-methods", default="gatevpt",
                   help="comma list of methods that get grid rows (they take minutes)")
    p.add_argument("--grid-epochs", type=int, default=3, help="epochs of each grid run")
    p.add_argument("--grid-compile", action="store_true", help="grid runs with train.compile")
    p.add_argument("--classes", type=int, default=100, help="head outputs (cifar100: 100)")
    p.add_argument("--no-sliced", dest="sliced", action="store_false",
                   help="skip the fast_sliced rows (the prompt assembly before issue 16)")
    p.add_argument("--ablate", action="store_true",
                   help="also the reference step with only SDPA / only bf16 switched on")
    p.add_argument("--loader-workers", type=int, default=0,
                   help="also time the reference fed by an official-style DataLoader with this "
                        "many workers (row reference+loader; VPT uses 4); 0: not measured")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/<device>.csv)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = engine.pick_device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch = args.batch or (128 if kind == "cuda" else 64)
    args.steps = args.steps or (20 if kind == "cuda" else 5)
    names = methods.registered() if args.methods == "all" else args.methods.split(",")
    args.grid_methods = [m for m in args.grid_methods.split(",")
                         if m and not methods.get(m).trains_backbone]
    for n in names:
        methods.get(n)  # unknown name -> KeyError listing the registered ones
    if args.backbones == "auto":
        pairs = [(m, NEEDS_BEIT.get(m, {}).get(kind, DEFAULT_BACKBONE[kind])) for m in names]
    else:
        bbs = args.backbones.split(",")
        for b in bbs:
            backbones.get(b)
        pairs = [(m, b) for m in names for b in bbs]
    dev_short = short_device_name(device)
    dev_name = torch.cuda.get_device_name(device) if kind == "cuda" else cpu_name()
    print(f"step benchmark on {dev_name} ({dev_short}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps x "
          f"{args.repeats} rounds", flush=True)
    rows: List[dict] = []
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    for method, backbone in pairs:
        print(f"{method} on {backbone}", flush=True)
        try:
            got = bench_pair(method, backbone, args, device)
        except Exception as e:  # a method that cannot run on this backbone: say so, go on
            print(f"  skipped: {type(e).__name__}: {e}", flush=True)
            continue
        if args.grid > 1 and method in args.grid_methods:
            try:
                got += bench_grid(method, backbone, args, device)
            except Exception as e:  # reported, the step rows stay
                print(f"  grid rows skipped: {type(e).__name__}: {e}", flush=True)
        for r in got:
            r.update({"device": dev_short, "device_name": dev_name, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "steps": args.steps, "measured": stamp})
        rows += got
        print_table(got)
    out = Path(args.out) if args.out else REPO / "results" / "bench" / f"{dev_short}.csv"
    write_csv(out, rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
