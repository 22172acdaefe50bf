"""Wall-time estimates for ``plan``: counted FLOPs at a measured utilisation, plus data and
per-run terms.

For each run of a stage:

* **compute**: model FLOPs, counted (not assumed) with ``torch.utils.flop_counter`` on the
  run's own backbone, method and options at the real token count (``engine/cost.py``, on the
  meta device): epochs x training images x FLOPs of a training step per image, plus the
  evaluation forwards (per-epoch evaluations of the first eval split, and the final evaluation
  of every eval split).  Split sizes come from the run's own splits (the protocol's
  ``final_train`` / ``search_train`` ..., ``benchmarks.split_size``);
* divided by the **utilisation** the step benchmark measured on the device
  (``results/bench/<device>.csv``: the model TFLOP/s of the ``fast`` row at the run's
  precision, counted with the same counter), or :data:`DEFAULT_UTILISATION` of the device's
  dense peak at that precision when no row exists (the output says which);
* **data**: every distinct split decoded once into the image cache (``data/cache.py``) at
  the input-pipeline benchmark's ``cache_build`` images/s per core
  (``results/bench/cpu_input.csv``; :data:`DECODE_IMG_S_PER_WORKER` without it) x
  ``data.num_workers``, then each run reading its splits from the cache at
  :data:`CACHE_READ_IMG_S`;
* **per run**: process start-up, backbone checkpoint load and model build
  (:data:`PER_RUN_S`, shared by the runs of a pack) plus :data:`CHECKPOINT_SAVE_S` per
  checkpoint written (``train.checkpoint_every_epochs``).

Precision: ``train.precision`` as the engine resolves it ('protocol' -> the protocol's, fp32 for
every reproduction; 'auto' -> bf16 on a GPU).  fp32 runs use TF32 matmuls on the GPU (as the
official code did), so their peak is the TF32 tensor-core peak; fp32-strict uses the plain
fp32 peak.
"""
from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .benchmarks import find_benchmark, split_size
from .runs import Run

REPO = Path(__file__).resolve().parents[1]

#: dense (no sparsity) peaks, TFLOP/s, from NVIDIA's datasheets: H100 SXM5 and H200 SXM
#: (bf16 989.4, TF32 494.7, fp32 66.9), H100 PCIe (756, 378, 51.2), A100 SXM (312, 156, 19.5)
PEAK_TFLOPS: Dict[str, Dict[str, float]] = {
    "h100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "h100-pcie": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "h200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "a100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
#: model-FLOP utilisation assumed when the device's benchmark CSV has no row for a run's method
#: and precision (a ViT-B/16 prompt-tuning step at batch 64-128 on one GPU; labelled as an
#: assumption in the output; `make bench` on the device replaces it)
DEFAULT_UTILISATION = 0.40
#: JPEG decode + resize per worker process (4-18 ms per image per core measured for FGVC;
#: 10 ms assumed), building the decoded-image cache once per split
DECODE_IMG_S_PER_WORKER = 100.0
#: a run reading a cached split (memory-mapped uint8, ~0.15-0.26 MB per image)
CACHE_READ_IMG_S = 10_000.0
#: process start-up, CUDA context, backbone checkpoint load and model build, per process
PER_RUN_S = 20.0
#: one synced checkpoint write (prompts, head, optimizer state)
CHECKPOINT_SAVE_S = 0.5
#: precision -> the peak it runs at on a GPU (fp32 = TF32 matmuls allowed)
PEAK_KIND = {"bf16": "bf16", "fp32": "tf32", "fp32-strict": "fp32"}
#: the benchmark CSV's precision column (as the engine records it) -> peak kind
CSV_KIND = {"bf16": "bf16", "fp32+tf32": "tf32", "tf32": "tf32", "fp32": "fp32"}


def _family(backbone_name: str) -> str:
    for fam in ("vit_base", "beit_base"):
        if backbone_name.startswith(fam):
            return fam
    return "micro"


def throughput_family(method: str) -> Optional[str]:
    """The method class's ``throughput_family`` (methods whose measured model FLOP/s stand in
    for each other), or None for a name no longer registered (an old benchmark row)."""
    from . import methods  # the FLOP count (engine.cost) imports the methods anyway

    try:
        return methods.get(method).throughput_family
    except KeyError:
        return None


def run_precision(run: Run, gpu: bool = True) -> str:
    """bf16 | fp32 (TF32 on a GPU) | fp32-strict: ``train.precision`` resolved as the engine
    does ('protocol' -> the protocol's precision, 'auto' -> bf16 on a GPU, fp32 on a CPU)."""
    from .protocol import get as get_protocol

    p = run.experiment.train.precision
    if p == "protocol":
        p = getattr(get_protocol(run.experiment.protocol), "precision", "fp32")
    if p == "auto":
        p = "bf16" if gpu else "fp32"
    return p


# ------------------------------------------------------------------ measured utilisation
def measured_rates(device: str) -> Dict[Tuple[str, str, str], float]:
    """(method, backbone family, peak kind) -> model FLOP/s of the benchmark's single-config
    fast-path rows in results/bench/<device>.csv (peak kind: bf16 | tf32 | fp32)."""
    path = REPO / "results" / "bench" / f"{device}.csv"
    out: Dict[Tuple[str, str, str], float] = {}
    if not path.is_file():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("variant") not in ("fast", "fast_tf32") or row.get("configs", "1") != "1":
                continue
            if not row.get("tflops"):
                continue
            kind = CSV_KIND.get(row.get("precision") or "fp32", "fp32")
            out[(row["method"], _family(row["backbone"]), kind)] = float(row["tflops"]) * 1e12
    return out


def measured_decode_rate(benchmark: str) -> Optional[float]:
    """Images/s per core of building the decoded-image cache, from the input-pipeline
    benchmark (``results/bench/cpu_input.csv``, rows ``cache_build``), or None."""
    path = REPO / "results" / "bench" / "cpu_input.csv"
    if not path.is_file():
        return None
    # the input-pipeline benchmark names its pipelines by the loader module (fgvc*, vtab*)
    bench = find_benchmark(benchmark)
    prefix = bench.loader.rpartition(".")[2] if bench is not None and bench.loader else benchmark
    with open(path, newline="") as f:
        rates = [float(r["images_per_s"]) for r in csv.DictReader(f)
                 if r.get("variant") == "cache_build" and r.get("images_per_s")
                 and str(r.get("pipeline", "")).startswith(prefix)]
    return statistics.median(rates) if rates else None


# ------------------------------------------------------------------ counted work of a run
@dataclass
class RunWork:
    """What a run computes and reads (device independent)."""
    train_flops: float
    eval_flops: float
    precision: str
    checkpoints: int
    #: (benchmark, task, split) -> images, every split the run reads
    splits: Dict[Tuple[str, str, str], int]
    decode_workers: int
    benchmark: str = ""

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops


def run_work(run: Run, gpu: bool = True) -> RunWork:
    """Counted FLOPs and the splits of one run."""
    from . import data
    from .engine.cost import flops_per_image

    e = run.experiment
    o, t = e.optim, e.train
    train_fpi, eval_fpi = flops_per_image(e.backbone.name, e.method.type,
                                          dict(e.method.options), data.num_classes(e.data))
    n_train = split_size(e.data.benchmark, e.data.task, run.train_split)
    bench = find_benchmark(e.data.benchmark)
    if n_train == 0 and (bench is None or not bench.segmentation):
        raise ValueError(f"plan: no size known for split '{run.train_split}' of "
                         f"{e.data.benchmark}/{e.data.task} (Task.sizes in "
                         f"replicate/benchmarks.py)")
    per_epoch = n_train
    if t.max_steps_per_epoch is not None:
        per_epoch = min(n_train, t.max_steps_per_epoch * o.batch_size)
    sizes = {s: split_size(e.data.benchmark, e.data.task, s) for s in run.eval_splits}
    first = run.eval_splits[0] if run.eval_splits else None
    mid_evals = 0 if (first is None or t.eval_every <= 0) else \
        sum(1 for ep in range(o.epochs - 1) if (ep + 1) % t.eval_every == 0)
    eval_images = sum(sizes.values()) + (mid_evals * sizes[first] if first else 0)
    every = max(1, int(getattr(t, "checkpoint_every_epochs", 1) or 1))
    splits = {(e.data.benchmark, e.data.task, run.train_split): n_train}
    splits.update({(e.data.benchmark, e.data.task, s): n for s, n in sizes.items()})
    return RunWork(train_flops=o.epochs * per_epoch * train_fpi,
                   eval_flops=eval_images * eval_fpi, precision=run_precision(run, gpu),
                   checkpoints=math.ceil(o.epochs / every), splits=splits,
                   decode_workers=max(1, e.data.num_workers), benchmark=e.data.benchmark)


# ------------------------------------------------------------------ a stage
@dataclass
class StageEstimate:
    device: str
    runs: int
    train_flops: float = 0.0
    eval_flops: float = 0.0
    #: seconds per term
    compute_s: float = 0.0
    data_s: float = 0.0
    per_run_s: float = 0.0
    #: peak kind -> FLOPs run at that precision
    flops_by_kind: Dict[str, float] = field(default_factory=dict)
    #: peak kind -> utilisation used (FLOP-weighted) and where it came from
    utilisation: Dict[str, float] = field(default_factory=dict)
    sources: List[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return self.train_flops + self.eval_flops

    @property
    def seconds(self) -> float:
        return self.compute_s + self.data_s + self.per_run_s

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def gpu_hours(self) -> float:  # the name older callers use
        return self.hours

    def floor_s(self, kind: str) -> Optional[float]:
        """Seconds for all FLOPs at the device's dense ``kind`` peak (bf16 | tf32 | fp32)."""
        peak = PEAK_TFLOPS.get(self.device, {}).get(kind)
        return self.flops / (peak * 1e12) if peak else None

    @property
    def dominant(self) -> str:
        terms = {"compute": self.compute_s, "data": self.data_s, "per-run": self.per_run_s}
        return max(terms, key=terms.get)

    @property
    def source(self) -> str:
        return "; ".join(self.sources) if self.sources else "no runs"

    def __getitem__(self, key: str):  # dict-style access of older callers
        return {"runs": self.runs, "gpu_hours": self.hours, "source": self.source}[key]

    def lines(self) -> List[str]:
        """Human-readable summary for ``plan``."""
        if not self.runs:
            return ["0 runs: nothing to estimate"]
        floors = [f"{k} {_dur(self.floor_s(k))}" for k in ("bf16", "tf32")
                  if self.floor_s(k) is not None]
        kinds = ", ".join(f"{k} at {100 * u:.0f}%" for k, u in sorted(self.utilisation.items()))
        out = [f"{_eflop(self.flops)} counted (training {_eflop(self.train_flops)}, evaluation "
               f"{_eflop(self.eval_flops)})"]
        if floors:
            out.append(f"compute floor at the {self.device} dense peak: {' / '.join(floors)}")
        out.append(f"estimate {_dur(self.seconds)} on one {self.device} = compute "
                   f"{_dur(self.compute_s)} ({kinds or 'measured rate'}"
                   f"{' of peak' if kinds else ''}) + data {_dur(self.data_s)} + per-run "
                   f"{_dur(self.per_run_s)}; dominant term: {self.dominant}")
        out.append(f"utilisation from: {self.source}")
        return out


def _eflop(f: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f:.3g} FLOP"


def _dur(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def estimate(runs: Sequence[Run], device: str = "h100", pack: int = 1) -> StageEstimate:
    """Estimate a stage's wall time on one ``device`` (see the module docstring).  ``pack``:
    runs per process (``--pack``), sharing the start-up term."""
    gpu = device != "cpu"
    rates = measured_rates(device)
    peaks = PEAK_TFLOPS.get(device, {})
    est = StageEstimate(device=device, runs=len(runs))
    decoded: Dict[Tuple[str, str, str], Tuple[int, float]] = {}
    used: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
    sources = set()
    for r in runs:
        w = run_work(r, gpu)
        est.train_flops += w.train_flops
        est.eval_flops += w.eval_flops
        kind = PEAK_KIND.get(w.precision, "fp32") if gpu else "fp32"
        est.flops_by_kind[kind] = est.flops_by_kind.get(kind, 0.0) + w.flops
        e = r.experiment
        fam = _family(e.backbone.name)
        rate = rates.get((e.method.type, fam, kind))
        if rate is None:  # other methods measured at this precision on this backbone family:
            # those of the method's throughput family if any (the same kind of step), else all
            same = [v for (m, f, k), v in rates.items() if f == fam and k == kind]
            tf = throughput_family(e.method.type)
            kin = [v for (m, f, k), v in rates.items()
                   if f == fam and k == kind and throughput_family(m) == tf]
            rate = statistics.median(kin or same) if same else None
            if kin:
                sources.add(f"results/bench/{device}.csv ({kind}, median of the '{tf}' "
                            "throughput family)")
            elif rate is not None:
                sources.add(f"results/bench/{device}.csv ({kind}, other methods' median)")
        else:
            sources.add(f"results/bench/{device}.csv ({kind})")
        if rate is None:
            if kind not in peaks:
                raise ValueError(f"plan: no benchmark row for {device} in results/bench/ and no "
                                 f"known peak for it; known devices: {', '.join(PEAK_TFLOPS)} "
                                 f"(or run `make bench` on it)")
            rate = DEFAULT_UTILISATION * peaks[kind] * 1e12
            sources.add(f"default {100 * DEFAULT_UTILISATION:.0f}% of the {kind} peak "
                        "(no benchmark row; run `make bench` on the device)")
        est.compute_s += w.flops / rate
        if kind in peaks:
            used[kind].append((w.flops, rate / (peaks[kind] * 1e12)))
        per_core = measured_decode_rate(w.benchmark) or DECODE_IMG_S_PER_WORKER
        for key, n in w.splits.items():
            decoded.setdefault(key, (n, per_core * w.decode_workers))
        est.data_s += sum(w.splits.values()) / CACHE_READ_IMG_S
        est.per_run_s += PER_RUN_S / max(1, pack) + w.checkpoints * CHECKPOINT_SAVE_S
    est.data_s += sum(n / rate for n, rate in decoded.values())
    est.utilisation = {k: sum(f * u for f, u in v) / max(sum(f for f, _ in v), 1e-30)
                       for k, v in used.items()}
    est.sources = sorted(sources)
    return est


__all__ = ["estimate", "StageEstimate", "run_work", "RunWork", "run_precision",
           "measured_rates", "measured_decode_rate", "PEAK_TFLOPS", "DEFAULT_UTILISATION"]
