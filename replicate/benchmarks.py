"""The benchmark table: what the harness knows about each benchmark, as data.

One :class:`Benchmark` per benchmark holds its tasks (class count, group, split sizes), the order
of the paper tables, the on-disk split names, the split its final runs train on, how its average
is formed, the metric, the reporting tolerance, its title and the module of its data loader.  The
loaders, the engine, the plan's estimate, the protocols and the results code read it from here
instead of testing a benchmark's name, so a new benchmark is one :func:`register_benchmark` call
(in ``replicate/`` or in a plug-in module named by a config's ``custom_imports``) plus a loader.

Torch-free and at the bottom layer: it imports only :mod:`replicate.errors`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import DataError

#: canonical split names (``data.load``; ``Protocol`` stages)
SPLITS = ("train", "val", "trainval", "test")
#: how a benchmark's average is formed (``Benchmark.average``)
AVERAGES = ("mean", "groups", "none")
#: the task names of aggregate rows (not datasets)
AGGREGATES = ("group_mean", "mean", "mean_of_group_means")


@dataclass(frozen=True)
class Task:
    """One dataset of a benchmark."""
    #: number of classes (the loaders check their label maps against it)
    classes: int
    #: group the task belongs to ('' for a benchmark without groups; VTAB-1k: natural |
    #: specialized | structured)
    group: str = ""
    #: images in (train, val, test), for the plan's estimate and verify's counts; trainval is
    #: train + val.  None: not tabulated (split_size gives 0)
    sizes: Optional[Tuple[int, int, int]] = None


@dataclass(frozen=True)
class Benchmark:
    """What the harness knows about one benchmark (see the module docstring)."""
    #: the name configs, records and published.csv use (``data.benchmark``)
    name: str
    #: how reports print it
    title: str
    #: task name -> Task, in the benchmark's own order (VTAB-1k: group by group)
    tasks: Mapping[str, Task]
    #: the metric of its published rows: top1 (classification) | miou (segmentation)
    metric: str = "top1"
    #: reporting tolerance in points when a record's protocol is not registered (a protocol's
    #: own tolerance wins; ``replicate/protocol.py`` takes it from here)
    tolerance: float = 1.0
    #: the task column of its published rows in the paper tables' order (default: the tasks'
    #: order); a benchmark that reports several numbers of one task lists those (ADE20K:
    #: single- and multi-scale mIoU)
    table_order: Tuple[str, ...] = ()
    #: canonical split -> its own name on disk, for the splits that exist on disk (a canonical
    #: split missing here, e.g. FGVC's trainval, is composed by the loader; default: train, val,
    #: test under their own names)
    split_names: Mapping[str, str] = field(
        default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    #: the canonical split final (and pinned) runs train on, and why
    final_train: str = "trainval"
    final_train_reason: str = ""
    #: mean: one 'mean' row over its tasks (when it has more than one); groups: a 'group_mean'
    #: per group, the 'mean' over all tasks (VTAB-1k's AVG) and 'mean_of_group_means' beside it;
    #: none: no aggregate
    average: str = "mean"
    #: position among the benchmarks in reports (smaller first; ties by name)
    report_order: int = 9
    #: module that registers the loader with ``@register_loader(name)`` (imported on first
    #: ``data.load``); '' when the loader registers itself some other way
    loader: str = ""
    #: tiny data for smoke runs: never a reproduction, never in a published table
    smoke: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", MappingProxyType(dict(self.tasks)))
        object.__setattr__(self, "split_names", MappingProxyType(dict(self.split_names)))
        if not self.table_order:
            object.__setattr__(self, "table_order", tuple(self.tasks))
        where = f"benchmark '{self.name}'"
        if self.average not in AVERAGES:
            raise ValueError(f"{where}: average {self.average!r} is not one of {AVERAGES}")
        if self.final_train not in SPLITS:
            raise ValueError(f"{where}: final_train {self.final_train!r} is not one of {SPLITS}")
        bad = [s for s in self.split_names if s not in SPLITS]
        if bad:
            raise ValueError(f"{where}: split_names keys {bad} are not canonical splits {SPLITS}")
        if self.average == "groups" and not all(t.group for t in self.tasks.values()):
            raise ValueError(f"{where}: average 'groups' needs a group on every task")

    @property
    def segmentation(self) -> bool:
        """Scored by mIoU: trained by mmseg's runner (``replicate/seg/``), its work dirs under
        ``RUNS_ROOT/<paper>/<name>/``, each record giving one value per ``table_order`` entry."""
        return self.metric == "miou"

    @property
    def classification(self) -> bool:
        """Scored by top-1: trained by the engine on the benchmark's splits."""
        return self.metric == "top1"

    # ---------------------------------------------------------------- tasks
    def task(self, task: str) -> Task:
        """The task, or a DataError naming the known ones."""
        if task not in self.tasks:
            raise DataError(f"unknown task '{task}' for benchmark '{self.name}'; known: "
                            f"{', '.join(sorted(self.tasks))}")
        return self.tasks[task]

    def num_classes(self, task: str) -> int:
        return self.task(task).classes

    def group_of(self, task: str) -> str:
        """The task's group ('' for an unknown task or a benchmark without groups)."""
        t = self.tasks.get(task)
        return t.group if t is not None else ""

    @property
    def groups(self) -> Dict[str, Tuple[str, ...]]:
        """group -> its tasks, both in the benchmark's order ({} without groups)."""
        out: Dict[str, List[str]] = {}
        for name, t in self.tasks.items():
            if t.group:
                out.setdefault(t.group, []).append(name)
        return {g: tuple(ts) for g, ts in out.items()}

    # ---------------------------------------------------------------- splits
    def split_name(self, split: str) -> str:
        """Canonical split -> the benchmark's own file/split name."""
        return self.split_names.get(split, split)

    def split_size(self, task: str, split: str) -> int:
        """Images of a canonical split (0 when the task or its sizes are not tabulated)."""
        t = self.tasks.get(task)
        if t is None or t.sizes is None:
            return 0
        tr, va, te = t.sizes
        return {"train": tr, "val": va, "trainval": tr + va, "test": te}[split]

    # ---------------------------------------------------------------- aggregates
    def aggregate_specs(self) -> List[Tuple[str, str, Tuple[str, ...]]]:
        """[(group, task, members)] of its aggregate rows, in report order (without
        'mean_of_group_means', which is formed from the group rows)."""
        if self.average == "groups":
            groups = self.groups
            specs = [(g, "group_mean", ts) for g, ts in groups.items()]
            specs.append(("", "mean", tuple(t for ts in groups.values() for t in ts)))
            return specs
        if self.average == "mean" and len(self.table_order) > 1:
            return [("", "mean", self.table_order)]
        return []

    def order_key(self, group: str, task: str) -> Tuple[int, int, int, str]:
        """Display order of a cell: the paper table's order, aggregates after their members."""
        b = self.report_order
        if self.average == "groups":
            groups = self.groups
            names = list(groups)
            if task == "mean":
                return (b, len(names), 0, task)
            if task == "mean_of_group_means":
                return (b, len(names), 1, task)
            gi = names.index(group) if group in names else len(names) + 1
            if task == "group_mean":
                return (b, gi, 99, task)
            members = groups.get(group, ())
            return (b, gi, members.index(task) if task in members else 98, task)
        order = self.table_order
        return (b, 0, order.index(task) if task in order else 99, task)

    def average_label(self) -> str:
        """How reports name its 'mean' row."""
        if self.average == "groups":
            return f"AVG ({len(self.tasks)}-task mean)"
        return "AVG (mean)"


_BENCHMARKS: Dict[str, Benchmark] = {}


def register_benchmark(bench: Benchmark) -> Benchmark:
    """Add a benchmark to the table (from ``replicate/`` or a plug-in module)."""
    if not bench.name or bench.name in _BENCHMARKS:
        raise KeyError(f"benchmark name {bench.name!r} missing or registered twice")
    _BENCHMARKS[bench.name] = bench
    return bench


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark, or a DataError naming the known ones."""
    try:
        return _BENCHMARKS[name]
    except KeyError:
        raise DataError(f"unknown benchmark '{name}'; known: {', '.join(names())}. A new "
                        f"benchmark registers itself with replicate.benchmarks."
                        f"register_benchmark (docs/contributing.md)") from None


def find_benchmark(name: str) -> Optional[Benchmark]:
    """The registered benchmark or None (for records of a benchmark no longer registered)."""
    return _BENCHMARKS.get(name)


def names() -> List[str]:
    return sorted(_BENCHMARKS)


def all_benchmarks(published: Optional[bool] = None) -> List[Benchmark]:
    """Registered benchmarks in report order; ``published=True``: those a published table may
    hold (not smoke), False: the smoke ones."""
    out = sorted(_BENCHMARKS.values(), key=lambda b: (b.report_order, b.name))
    if published is not None:
        out = [b for b in out if b.smoke != published]
    return out


def num_classes(benchmark: str, task: str) -> int:
    return get_benchmark(benchmark).num_classes(task)


def split_size(benchmark: str, task: str, split: str) -> int:
    """Images of a canonical split (0 when unknown)."""
    b = find_benchmark(benchmark)
    return b.split_size(task, split) if b is not None else 0


def split_name(benchmark: str, split: str) -> str:
    """Canonical split -> the benchmark's own file/split name (unchanged when not registered)."""
    b = find_benchmark(benchmark)
    return b.split_name(split) if b is not None else split


def group_of(benchmark: str, task: str) -> str:
    b = find_benchmark(benchmark)
    return b.group_of(task) if b is not None else ""


def benchmark_of_task(task: str, among: Optional[List[str]] = None) -> Optional[str]:
    """The (first, in report order) benchmark with a task of that name, or None."""
    for b in all_benchmarks():
        if (among is None or b.name in among) and task in b.tasks:
            return b.name
    return None


# ------------------------------------------------------------------ the built-in benchmarks
#: official train.py (GateVPT and KMnP/vpt) merges train+val only for ``vtab-`` datasets;
#: KMnP/vpt's FGVC dataset class refuses a train+val split, so FGVC final runs train on train
_FINAL_VTAB = "official train.py trains vtab- datasets on train800val200 (KMnP/vpt, GateVPT)"
_FINAL_FGVC = ("official train.py trains FGVC on train only (train+val is merged only for "
               "vtab- datasets; KMnP/vpt's JSONDataset has no train+val split)")

# FGVC: class counts; sizes from VPT's split files (the gift copy, docs/data.md)
register_benchmark(Benchmark(
    name="fgvc", title="FGVC", metric="top1", tolerance=0.5,
    tasks={"cub": Task(200, sizes=(5394, 600, 5794)),
           "nabirds": Task(555, sizes=(21536, 2393, 24633)),
           "flowers": Task(102, sizes=(1020, 1020, 6149)),
           "dogs": Task(120, sizes=(10800, 1200, 8580)),
           "cars": Task(196, sizes=(7329, 815, 8041))},
    # the order of GateVPT's / VPT's Table 1
    table_order=("cub", "flowers", "cars", "dogs", "nabirds"),
    final_train="train", final_train_reason=_FINAL_FGVC,
    average="mean", report_order=0, loader="replicate.data.fgvc"))


def _vtab(group: str, classes: int, test: int) -> Task:
    return Task(classes, group, (800, 200, test))


# VTAB-1k: class counts as KMnP/vpt tune_vtab.py DATA2CLS; 800/200 + the test sizes of the TFDS
# versions VPT used (TFDS catalog, docs/data.md)
register_benchmark(Benchmark(
    name="vtab1k", title="VTAB-1k", metric="top1", tolerance=1.0,
    tasks={"cifar100": _vtab("natural", 100, 10000), "caltech101": _vtab("natural", 102, 6084),
           "dtd": _vtab("natural", 47, 1880), "flowers102": _vtab("natural", 102, 6149),
           "pets": _vtab("natural", 37, 3669), "svhn": _vtab("natural", 10, 26032),
           "sun397": _vtab("natural", 397, 21750),
           "patch_camelyon": _vtab("specialized", 2, 32768),
           "eurosat": _vtab("specialized", 10, 5400),
           "resisc45": _vtab("specialized", 45, 6300),
           "retinopathy": _vtab("specialized", 5, 42670),
           "clevr_count": _vtab("structured", 8, 15000),
           "clevr_dist": _vtab("structured", 6, 15000), "dmlab": _vtab("structured", 6, 22735),
           "kitti_dist": _vtab("structured", 4, 711),
           "dsprites_loc": _vtab("structured", 16, 73728),
           "dsprites_ori": _vtab("structured", 16, 73728),
           "smallnorb_azi": _vtab("structured", 18, 12150),
           "smallnorb_ele": _vtab("structured", 9, 12150)},
    split_names={"train": "train800", "val": "val200", "trainval": "train800val200",
                 "test": "test"},
    final_train="trainval", final_train_reason=_FINAL_VTAB,
    average="groups", report_order=1, loader="replicate.data.vtab"))

# ADE20K (segmentation, trained by mmseg's runner: replicate/seg/); no public test labels, so
# runs train on training and report on validation (protocol ade20k-setr-pup)
register_benchmark(Benchmark(
    name="ade20k", title="ADE20K", metric="miou", tolerance=1.0,
    tasks={"ade20k": Task(150)}, table_order=("miou_ss", "miou_ms"),
    final_train="train", average="none", report_order=2))

# smoke benchmarks: tiny in-memory data (replicate/data/builtin.py), split 800/200/test like
# VTAB-1k
register_benchmark(Benchmark(
    name="digits", title="digits", tasks={"digits": Task(10, sizes=(800, 200, 400))},
    split_names={s: s for s in SPLITS}, loader="replicate.data.builtin", smoke=True))
register_benchmark(Benchmark(
    name="synthetic", title="synthetic",
    tasks={"shapes": Task(4, sizes=(800, 200, 400)), "stripes": Task(6, sizes=(800, 200, 400))},
    split_names={s: s for s in SPLITS}, loader="replicate.data.builtin", smoke=True))
