"""Data layer.  Every dataset yields ``(uint8 tensor [3, S, S], int label)`` after the protocol's
geometric transform; normalisation (``/255``, mean/std) happens on the device in the engine, so
the in-memory and the streaming paths give identical tensors.  FGVC and VTAB-1k images are
decoded once into a cache (:mod:`.cache`) and their crops / resizes cut per batch on the device.

``load(spec, split, train)`` returns a :class:`Split`; ``split`` is canonical
(train | val | trainval | test) and mapped to the benchmark's own names by the protocol.

Torch-free as a package: ``DataError`` and the task tables (:mod:`.tasks`) import nothing heavy;
the engine-facing names (:class:`Split`, ``load`` ...) come from :mod:`.split` on first use and
each built-in loader module registers itself when ``load`` first needs it.
"""
from __future__ import annotations

from typing import Any

from ..errors import DataError  # noqa: F401  (defined at the bottom layer; re-exported)

#: names of :mod:`.split` kept importable from here (it imports torch: loaded on first use)
_SPLIT_NAMES = ("LOADERS", "BUILTIN_LOADERS", "Split", "TensorSplitDataset", "in_memory_split",
                "load", "num_classes", "register_loader")


def __getattr__(name: str) -> Any:
    if name in _SPLIT_NAMES:
        from . import split
        return getattr(split, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
