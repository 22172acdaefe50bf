"""Data layer.  Every dataset yields ``(uint8 tensor [3, S, S], int label)`` after the protocol's
geometric transform; normalisation (``/255``, mean/std) happens on the device in the engine, so
the in-memory and the streaming paths give identical tensors.  FGVC and VTAB-1k images are
decoded once into a cache (:mod:`.cache`) and their crops / resizes cut per batch on the device.

``load(spec, split, train)`` returns a :class:`Split`; ``split`` is canonical
(train | val | trainval | test) and mapped to the benchmark's own names by the protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from torch.utils.data import Dataset

from ..config import DataSpec


class DataError(RuntimeError):
    """Missing or malformed data; the message names the path and the command that fixes it."""


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
    try:
        loader = LOADERS[spec.benchmark]
    except KeyError:
        raise DataError(f"unknown benchmark '{spec.benchmark}'; known: "
                        f"{', '.join(sorted(LOADERS))}") from None
    return loader(spec, split, train)


def num_classes(spec: DataSpec) -> int:
    from . import tasks
    return tasks.num_classes(spec.benchmark, spec.task)


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


from . import builtin  # noqa: E402,F401  (digits, synthetic)
from . import fgvc, vtab  # noqa: E402,F401  (FGVC, VTAB-1k: docs/data.md)
