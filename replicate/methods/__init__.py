"""Method registry.  Each method registers a class with an ``Options`` dataclass; the config
layer validates ``method = dict(type=..., **options)`` against it, so an unknown option is an
error naming the option and the method."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..backbones import ViTAdapter
from ..registry import Registry
from .base import POOLS, BaseOptions, PromptedModel, PromptMethod
from .baselines import FullFinetune, LinearProbe
from .gatevpt import GateVPT, GateVPTOptions
from .lspt import LSPT, LSPTOptions
from .vpt import VPTDeep, VPTOptions, VPTShallow
from .vptm import VPTM, VPTMOptions

_REGISTRY: Registry[type] = Registry("method", lambda cls: cls.name)
register = _REGISTRY.register
registered = _REGISTRY.names
get = _REGISTRY.get


def make_options(name: str, options: Mapping[str, Any]):
    cls = get(name)
    allowed = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise KeyError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                       f"'{name}'; allowed: {', '.join(sorted(allowed))}")
    _check_types(name, cls.Options, options)
    opts = cls.Options(**dict(options))
    if hasattr(opts, "validate"):  # enumerated / ranged options (BaseOptions.validate)
        opts.validate()
    return opts


#: annotation -> (accepted python types, what to write)
_TYPES = {"int": ((int,), "an integer"), "float": ((int, float), "a number"),
          "bool": ((bool,), "True/False"), "str": ((str,), "a string")}


def _check_types(name: str, options_cls: type, options: Mapping[str, Any]) -> None:
    """Plain-typed options (int, float, bool, str) hold a value of that type."""
    for f in dataclasses.fields(options_cls):
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if f.name not in options or t not in _TYPES:
            continue
        v, (types, want) = options[f.name], _TYPES[t]
        if not isinstance(v, types) or (t != "bool" and isinstance(v, bool)):
            raise TypeError(f"'method.{f.name}' = {v!r} is invalid for method '{name}': it must "
                            f"be {want}")


def validate_options(name: str, options: Mapping[str, Any]) -> None:
    """Unknown options, wrong types and values out of their allowed set or range are errors
    naming the option (``config`` adds the file): checked when a config loads."""
    make_options(name, options)


def build_model(adapter: ViTAdapter, method: str, options: Mapping[str, Any], num_classes: int,
                default_pool: str = "cls") -> PromptedModel:
    cls = get(method)
    return PromptedModel(adapter, cls(make_options(method, options), adapter, num_classes,
                                      default_pool))


for _cls in (LinearProbe, FullFinetune, VPTShallow, VPTDeep, GateVPT):
    register(_cls)
register(VPTM)
register(LSPT)

__all__ = ["register", "registered", "get", "build_model", "make_options", "validate_options",
           "PromptedModel", "PromptMethod", "BaseOptions", "POOLS", "GateVPT", "GateVPTOptions",
           "LSPT", "LSPTOptions",
           "VPTShallow", "VPTDeep", "VPTOptions", "LinearProbe", "FullFinetune", "VPTM",
           "VPTMOptions"]
