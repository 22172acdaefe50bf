"""Backbone registry: ``arch.tag`` names bound to an architecture and a checkpoint source.

``create(name, checkpoint)`` builds the timm model, loads the checkpoint through the converter
of the tag's source (strict key assertions, see ``converters.py``) and returns a
:class:`ViTAdapter`.  Tiny ``*_test`` variants have the same key layout as the real sources at
a size that runs on a CPU in milliseconds; tests build fake checkpoints for them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple

import torch.nn as nn

from ..registry import Registry
from .vit import TimmViTAdapter, ViTAdapter

__all__ = ["BackboneEntry", "register", "registered", "get", "create", "ViTAdapter",
           "TimmViTAdapter", "resolve_checkpoint", "checkpoint_in"]


@dataclass(frozen=True)
class BackboneEntry:
    #: registry name, ``arch.tag``
    name: str
    #: builds the bare nn.Module (no weights)
    build: Callable[[], nn.Module]
    #: checkpoint source; selects the converter (mae, mocov3, sup_npz, timm, beitv2)
    source: str
    #: file name under CKPT_ROOT when the config gives no checkpoint
    default_file: str
    #: where users get the file
    url: str
    #: head input used when a method says pool='auto' (see methods.base.POOLS)
    default_pool: str
    #: the backbone's name in papers/*/published.csv (mae_vitb16, mocov3_vitb16, ...)
    paper_key: str
    #: adapter class wrapping the module
    adapter: Callable[..., ViTAdapter] = TimmViTAdapter
    #: tiny test/demo variant: may run with random weights (checkpoint '')
    tiny: bool = False
    #: free-text provenance shown by ``python -m replicate backbones``
    note: str = ""
    #: other names of the same file, accepted in place of ``default_file`` (e.g. the name
    #: its URL downloads as, when the registry's name is the one the papers' code uses)
    other_files: Tuple[str, ...] = ()
    #: input normalisation (mean, std) the protocol applies
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    extra: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: Registry[BackboneEntry] = Registry("backbone", lambda e: e.name)
register = _REGISTRY.register
registered = _REGISTRY.names
get = _REGISTRY.get


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
    from ..config import ConfigError, expand_path

    if checkpoint == "":
        if not entry.tiny:
            raise ConfigError(f"backbone '{entry.name}' needs a checkpoint; random init is only "
                              "allowed for tiny test backbones")
        return None
    if checkpoint is None:
        if entry.tiny:
            return None
        if entry.extra.get("micro"):  # micro pre-trained backbones live in their cache
            from ..micro import cached_checkpoint
            return cached_checkpoint(entry.extra["micro"])
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


def create(name: str, checkpoint: Optional[str] = None, attention: str = "sdpa") -> ViTAdapter:
    """Build backbone ``name`` with its weights and wrap it in an adapter."""
    from . import converters

    entry = get(name)
    model = entry.build()
    path = resolve_checkpoint(entry, checkpoint)
    if path is not None:
        converters.load_into(model, path, entry)
    return entry.adapter(model, attention=attention)


from . import zoo  # noqa: E402,F401  (registers the entries)
