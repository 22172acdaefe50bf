"""The backbone registry: :class:`BackboneEntry` and ``register`` / ``registered`` / ``get``.

Torch-free and importing no implementation, so the entries (``zoo.py``, or a backbone defined
outside the package that registers itself) and the package re-exporting these names do not
import each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Tuple

from ..registry import Lazy, Registry


@dataclass(frozen=True)
class BackboneEntry:
    #: registry name, ``arch.tag``
    name: str
    #: builds the bare nn.Module (no weights); a ``Lazy`` reference keeps the registry torch-free
    build: Callable[[], Any]
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
    adapter: Callable[..., Any] = Lazy("replicate.backbones.vit:TimmViTAdapter")
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
    #: ``fn(extra['micro'])`` -> the checkpoint path when the config gives none (micro
    #: pre-trained backbones: the file in their cache); None: CKPT_ROOT/default_file
    default_checkpoint: Optional[Callable[[str], str]] = None

    def __getattribute__(self, name: str) -> Any:
        # ``build``, ``adapter`` and ``default_checkpoint`` may be given as ``Lazy`` references
        # (the registry stays torch-free); reading one gives the object it names, so
        # ``entry.build()`` and ``entry.adapter is BeitAdapter`` work as with the object itself
        value = object.__getattribute__(self, name)
        if isinstance(value, Lazy) and name in ("build", "adapter", "default_checkpoint"):
            return value.resolve()
        return value


_REGISTRY: Registry[BackboneEntry] = Registry("backbone", lambda e: e.name)
register = _REGISTRY.register
registered = _REGISTRY.names
get = _REGISTRY.get
