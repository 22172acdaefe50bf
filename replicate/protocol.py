"""Named, versioned evaluation protocols: a protocol is data.

A protocol fixes which split each stage trains and evaluates on, the tuning grid and lr scaling
rule, the selection rule, the seeds of the final runs and the reporting tolerance.  Results carry
the protocol id.  Selection only ever reads the ``search_eval`` split (never ``report``): see
``replicate.sweep.select`` and its test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .benchmarks import all_benchmarks, get_benchmark
from .benchmarks import split_name  # noqa: F401  (kept importable from here)
from .registry import Registry

VPT_SEEDS = (42, 44, 82, 100, 800)  # KMnP/vpt tune_vtab.py final runs
GATEVPT_LR_GRID = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # GateVPT paper App. A.2
VPT_PROMPT_LR_GRID_FGVC = (5.0, 2.5, 1.0, 50.0, 25.0, 10.0, 0.5, 0.25, 0.1)  # tune_fgvc.py
VPT_PROMPT_LR_GRID_VTAB = VPT_PROMPT_LR_GRID_FGVC + (0.05,)  # tune_vtab.py
VPT_WD_GRID = (0.01, 0.001, 0.0001, 0.0)
VPT_FINETUNE_LR_GRID = (0.001, 0.0001, 0.0005, 0.005)  # tune_*.py, train_type finetune


@dataclass(frozen=True)
class Protocol:
    id: str
    #: benchmark the protocol applies to (a name in ``replicate.benchmarks``)
    benchmark: str
    description: str
    #: stage -> canonical split name (train | val | trainval | test)
    search_train: str = "train"
    search_eval: str = "val"
    final_train: str = "trainval"
    report: str = "test"
    #: tuning grid (optimizer lr as the paper prints it; see lr_scaling) x weight decay
    lr_grid: Tuple[float, ...] = GATEVPT_LR_GRID
    wd_grid: Tuple[float, ...] = (0.0,)
    #: none | linear256 (lr * batch / 256), applied to the grid values and pinned lrs alike
    lr_scaling: str = "none"
    #: last_epoch_val_top1 (VPT's tune_vtab.py: val top-1 of the LAST epoch)
    selection: str = "last_epoch_val_top1"
    #: smaller_lr: ties go to the smaller lr, then the larger wd (VPT iterates lr descending)
    tie_break: str = "smaller_lr"
    seeds: Tuple[int, ...] = VPT_SEEDS
    #: |delta| <= max(tolerance, 2 * std over seeds) counts as reproduced (docs/contributing.md)
    tolerance: float = 1.0
    #: numeric precision of the runs (``train.precision='protocol'`` resolves to it): fp32 =
    #: float32 with TF32 matmuls/convolutions allowed on Ampere+ GPUs, as the official code
    #: trained (torch 1.7-1.11 enabled TF32 by default); bf16 stays an explicit fast option
    precision: str = "fp32"
    #: whose published numbers this protocol reproduces: the paper key that published.csv's
    #: ``measured_by`` names (gatevpt | vpt); a row is reproduced under that paper's protocol
    measured_by: str = ""
    #: documented choices of this protocol that its paper leaves open
    assumed: Mapping[str, str] = field(default_factory=dict)


_REGISTRY: Registry[Protocol] = Registry("protocol", lambda p: p.id)
register = _REGISTRY.register
registered = _REGISTRY.names
get = _REGISTRY.get


_GATEVPT_ASSUMED = {
    "wd_grid": "GateVPT's paper states no weight decay; its run.sh fixes SOLVER.WEIGHT_DECAY 0.0",
    "seeds": "GateVPT states no seeds (run.sh: seed 42 only); VPT's five final seeds are used",
    "search_eval": "the paper does not say on which split the lr was searched; VPT's val split",
    "selection": "the paper states no rule; VPT's tune_vtab.py last-epoch val top-1",
    "precision": "the paper states none; the official code trains in float32 (torch 1.7.1, "
                 "where TF32 matmuls were on by default on Ampere GPUs)",
}
_FGVC, _VTAB = get_benchmark("fgvc"), get_benchmark("vtab1k")
#: why final runs train on the split they do (official train.py: replicate/benchmarks.py)
_FINAL_VTAB, _FINAL_FGVC = _VTAB.final_train_reason, _FGVC.final_train_reason

_GATEVPT_BY = "gatevpt"  # GateVPT's authors' runs (App. A.2, official run.sh)
_VPT_BY = "vpt"  # VPT's runs (KMnP/vpt tune_*.py), e.g. GateVPT's Table 2 dagger rows
_VPT_ASSUMED = {"precision": "KMnP/vpt trains in float32 (TF32 matmuls on by default in the "
                             "torch it pinned, on Ampere GPUs)"}

register(Protocol(
    id="vtab1k-gatevpt", benchmark=_VTAB.name,
    description="VTAB-1k as GateVPT: lr grid of App. A.2 on train800/val200, wd 0, final runs "
                "on train800val200, test reported",
    final_train=_VTAB.final_train, assumed={**_GATEVPT_ASSUMED, "final_train": _FINAL_VTAB},
    tolerance=_VTAB.tolerance,
    measured_by=_GATEVPT_BY))
register(Protocol(
    id="fgvc-gatevpt", benchmark=_FGVC.name,
    description="FGVC as GateVPT: lr grid of App. A.2 on VPT's train/val split, wd 0, final "
                "runs on train, official test reported",
    final_train=_FGVC.final_train, assumed={**_GATEVPT_ASSUMED, "final_train": _FINAL_FGVC},
    tolerance=_FGVC.tolerance, measured_by=_GATEVPT_BY))
register(Protocol(
    id="vtab1k-vpt", benchmark=_VTAB.name,
    description="VTAB-1k as KMnP/vpt tune_vtab.py: prompt lr grid x wd grid on train800/val200, "
                "lr*bs/256, final runs on train800val200",
    lr_grid=VPT_PROMPT_LR_GRID_VTAB, wd_grid=VPT_WD_GRID, lr_scaling="linear256",
    final_train=_VTAB.final_train, tolerance=_VTAB.tolerance,
    assumed={**_VPT_ASSUMED, "final_train": _FINAL_VTAB}, measured_by=_VPT_BY))
register(Protocol(
    id="fgvc-vpt", benchmark=_FGVC.name,
    description="FGVC as KMnP/vpt tune_fgvc.py: prompt lr grid x wd grid, lr*bs/256, final "
                "runs on train",
    lr_grid=VPT_PROMPT_LR_GRID_FGVC, wd_grid=VPT_WD_GRID, lr_scaling="linear256",
    final_train=_FGVC.final_train, tolerance=_FGVC.tolerance,
    assumed={**_VPT_ASSUMED, "final_train": _FINAL_FGVC}, measured_by=_VPT_BY))
for _b in (_VTAB, _FGVC):
    register(Protocol(
        id=f"{_b.name}-vpt-finetune", benchmark=_b.name,
        description=f"{_b.name} full fine-tuning as KMnP/vpt tune_*.py: fine-tune lr grid x wd "
                    "grid, lr*bs/256",
        lr_grid=VPT_FINETUNE_LR_GRID, wd_grid=VPT_WD_GRID, lr_scaling="linear256",
        final_train=_b.final_train, assumed={**_VPT_ASSUMED, "final_train": _b.final_train_reason},
        tolerance=_b.tolerance, measured_by=_VPT_BY))
_ADE20K = get_benchmark("ade20k")
register(Protocol(
    id="ade20k-setr-pup", benchmark=_ADE20K.name,
    description="ADE20K semantic segmentation as GateVPT Table 3: SETR-PUP defaults, train on "
                "training, report single- and multi-scale mIoU on validation",
    search_train="train", search_eval="val", final_train=_ADE20K.final_train, report="val",
    lr_grid=(0.001,), wd_grid=(0.0,), seeds=(0,), tolerance=_ADE20K.tolerance,
    measured_by=_GATEVPT_BY,
    assumed={"seeds": "the paper reports one number per row and states no seeds; one run",
             "report": "ADE20K has no public test labels: the validation split, as mmseg"}))
for _b in all_benchmarks(published=False):
    register(Protocol(
        id=f"{_b.name}-smoke", benchmark=_b.name,
        description="SMOKE: tiny data split 800/200/test like VTAB-1k; never a reproduction",
        lr_grid=(0.1, 1.0), wd_grid=(0.0,), seeds=(0, 1), final_train=_b.final_train,
        tolerance=_b.tolerance))


def optimizer_lr(lr: float, batch_size: int, scaling: str) -> float:
    """The lr the optimizer gets from the lr a paper prints."""
    if scaling == "none":
        return lr
    if scaling == "linear256":
        return lr * batch_size / 256.0
    raise ValueError(f"unknown lr scaling {scaling!r}")


#: ``train.precision`` values: protocol (the protocol's, the default) | fp32 (TF32 matmuls
#: allowed on CUDA, as the official code) | fp32-strict (TF32 off) | bf16 (autocast) | auto (bf16
#: on CUDA, fp32 on CPU: the fast option)
PRECISIONS = ("protocol", "fp32", "fp32-strict", "bf16", "auto")


def protocol_for(pid: Optional[str]) -> Protocol:
    return get(pid or "vtab1k-gatevpt")
