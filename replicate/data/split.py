"""The engine-facing data types and the loader registry: :class:`Split`, ``register_loader``,
``load``.  In its own module so the loaders (``builtin``, ``fgvc``, ``vtab``) register themselves
without importing the package that imports them; ``replicate.data`` re-exports every name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch.utils.data import Dataset

from .. import benchmarks
from ..config import DataSpec
from ..errors import DataError


@dataclass
class Split:
    """One split of one task, ready for the engine."""
    dataset: Dataset
    num_classes: int
    #: canonical split name and the benchmark's own name for it
    split: str
    source_name: str
    #: when the whole split is held in memory: uint8 (N, 3, S, S) and int64 (N,)
    images: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    #: augmentation to apply on the device to in-memory training batches (None: none)
    device_augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None
    #: decoded-image cache that cuts whole batches (``cache.FgvcCrops`` / ``cache.Tf1Resized``):
    #: ``source.place(device).batch(indices, epoch generator, device)`` -> uint8 [B, 3, S, S];
    #: the engine uses it instead of a DataLoader over ``dataset`` (which stays for other uses)
    source: Optional[object] = None

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def __len__(self) -> int:
        return len(self.dataset)


#: benchmark name -> loader(spec, split, train) -> Split
LOADERS: Dict[str, Callable[[DataSpec, str, bool], Split]] = {}




def loader_modules() -> Dict[str, str]:
    """Benchmark -> the module that registers its loader (``Benchmark.loader`` in
    ``replicate/benchmarks.py``; imported on first ``load``, so the package and the benchmark
    table import no torch)."""
    return {b.name: b.loader for b in benchmarks.all_benchmarks() if b.loader}


#: the built-in ones, kept for older imports
BUILTIN_LOADERS = loader_modules()


def register_loader(benchmark: str):
    def deco(fn):
        if benchmark in LOADERS:
            raise KeyError(f"data loader '{benchmark}' registered twice")
        LOADERS[benchmark] = fn
        return fn
    return deco


def load(spec: DataSpec, split: str, train: bool) -> Split:
    if split not in ("train", "val", "trainval", "test"):
        raise DataError(f"unknown split '{split}' (train, val, trainval, test)")
    modules = loader_modules()
    if spec.benchmark not in LOADERS and spec.benchmark in modules:
        import importlib  # a loader registers itself when its module is imported

        importlib.import_module(modules[spec.benchmark])
    try:
        loader = LOADERS[spec.benchmark]
    except KeyError:
        raise DataError(f"unknown benchmark '{spec.benchmark}'; known: "
                        f"{', '.join(sorted(set(LOADERS) | set(modules)))}") from None
    return loader(spec, split, train)


def num_classes(spec: DataSpec) -> int:
    return benchmarks.num_classes(spec.benchmark, spec.task)


class TensorSplitDataset(Dataset):
    """Dataset over in-memory uint8 images and labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def in_memory_split(images: torch.Tensor, labels: torch.Tensor, num_classes: int, split: str,
                    source_name: str, device_augment=None) -> Split:
    return Split(TensorSplitDataset(images, labels), num_classes, split, source_name,
                 images=images, labels=labels, device_augment=device_augment)
