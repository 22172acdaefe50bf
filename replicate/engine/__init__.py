"""Training engine: one run -> a run directory with a record (see ``replicate/runs.py`` for
the layout).

The run-directory names are re-exported from the torch-free :mod:`replicate.runs`; the training
names (``execute``, ``evaluate``, ``NonFiniteLoss``) are loaded on first use, so importing
``replicate.engine.run`` (or this package) for planning does not import torch.
"""
from __future__ import annotations

from typing import Any

from ..runs import Run, atomic_write_json, read_record, run_state

__all__ = ["Run", "execute", "evaluate", "read_record", "run_state", "atomic_write_json",
           "NonFiniteLoss"]

_LAZY = {"execute", "evaluate", "NonFiniteLoss"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # engine.train imports torch: only when training is asked for
        from . import train
        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
