"""Backbone registry: ``arch.tag`` names bound to an architecture and a checkpoint source.

The registry and its entries (``zoo.py``) are torch-free: config validation and planning list
names and defaults without importing torch; ``create`` imports the implementation.

``create(name, checkpoint)`` builds the timm model, loads the checkpoint through the converter
of the tag's source (strict key assertions, see ``converters.py``) and returns a
:class:`ViTAdapter`.  Tiny ``*_test`` variants have the same key layout as the real sources at
a size that runs on a CPU in milliseconds; tests build fake checkpoints for them.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from .entry import BackboneEntry, get, register, registered  # noqa: F401  (torch-free)

__all__ = ["BackboneEntry", "register", "registered", "get", "create", "ViTAdapter",
           "TimmViTAdapter", "resolve_checkpoint", "checkpoint_in"]


def checkpoint_in(folder: str, entry: BackboneEntry) -> str:
    """``folder/default_file``; when that is absent, the first of ``entry.other_files``
    present in ``folder`` (so ``ViT-B_16.npz`` loads as downloaded, without a rename)."""
    want = os.path.join(folder, entry.default_file)
    if not os.path.isfile(want):
        for name in entry.other_files:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return want


def resolve_checkpoint(entry: BackboneEntry, checkpoint: Optional[str]) -> Optional[str]:
    """The checkpoint path to load, or None for random init ('' on a tiny backbone).  A path
    ending in ``default_file`` that does not exist also accepts ``other_files`` beside it."""
    from ..errors import ConfigError
    from ..paths import expand_path

    if checkpoint == "":
        if not entry.tiny:
            raise ConfigError(f"backbone '{entry.name}' needs a checkpoint; random init is only "
                              "allowed for tiny test backbones")
        return None
    if checkpoint is None:
        if entry.tiny:
            return None
        if entry.default_checkpoint is not None:  # micro pre-trained backbones: their cache
            return entry.default_checkpoint(entry.extra.get("micro", ""))
        root = os.environ.get("CKPT_ROOT")
        if not root:
            raise ConfigError(f"backbone '{entry.name}': no checkpoint given and CKPT_ROOT is not "
                              f"set; export CKPT_ROOT=/dir holding {entry.default_file} "
                              f"(get it from {entry.url})")
        return checkpoint_in(root, entry)
    path = expand_path(checkpoint, f"checkpoint of {entry.name}")
    if entry.default_file and os.path.basename(path) == entry.default_file:
        return checkpoint_in(os.path.dirname(path), entry)
    return path


def create(name: str, checkpoint: Optional[str] = None, attention: str = "sdpa") -> "ViTAdapter":
    """Build backbone ``name`` with its weights and wrap it in an adapter."""
    from . import converters

    entry = get(name)
    model = entry.build()
    path = resolve_checkpoint(entry, checkpoint)
    if path is not None:
        converters.load_into(model, path, entry)
    return entry.adapter(model, attention=attention)


def __getattr__(name: str) -> Any:
    # the adapter classes import torch: loaded on first use, so the registry stays torch-free
    if name in ("ViTAdapter", "TimmViTAdapter"):
        from . import vit
        return getattr(vit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from . import zoo  # noqa: E402,F401  (registers the entries; torch-free)
