"""Which runs can train as one pack: the single definition, torch-free.

A pack (``engine/packed.py``) shares one frozen backbone, one data split and one batch
schedule, so its runs may differ only in the config keys of :data:`MAY_DIFFER` (lr, weight
decay, momentum, naming) and their seed.  :func:`pack_key` turns that rule into a grouping key
for planning and submission (``launch/submit.py``'s ``make_packs``): runs with equal keys pass
``engine.packed.check_packable``'s config comparison.  This module imports no torch, so
``replicate.launch`` can group runs without loading the engine.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Tuple

#: config keys a pack's runs may differ in (everything else must be equal)
MAY_DIFFER = ("name", "source", "assumed", "cell", "seeds", "optim.lr", "optim.weight_decay",
              "optim.momentum", "optim.wd_on_head_bias")

#: sections kept whole (their values are compared as one, not flattened further)
_WHOLE = ("options", "assumed", "cell")


def flat_config(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim.lr": ..., "method.options": {...}}``: a config dict flattened to dotted keys."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in _WHOLE:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _frozen(v: Any) -> Hashable:
    """A hashable stand-in for a config value (lists -> tuples, dicts -> sorted items)."""
    if isinstance(v, dict):
        return tuple(sorted((str(k), _frozen(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def pack_key(run) -> Tuple:
    """Equal for two runs exactly when they may share a pack: same stage splits and the same
    config outside :data:`MAY_DIFFER` (``run`` is a ``replicate.runs.Run``)."""
    flat = flat_config(run.experiment.to_dict())
    same = tuple(sorted((k, _frozen(v)) for k, v in flat.items() if k not in MAY_DIFFER))
    return (run.train_split, tuple(run.eval_splits), same)


__all__ = ["MAY_DIFFER", "flat_config", "pack_key"]
