"""Method registry.  Each method registers a class with an ``Options`` dataclass; the config
layer validates ``method = dict(type=..., **options)`` against it, so an unknown option is an
error naming the option and the method.

Torch-free: the built-in methods' options live in ``options.py`` and their classes are imported
on first :func:`get` (each module registers itself), so loading and validating a config imports
no torch."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..registry import Lazy, Registry
from .options import OPTIONS, POOLS, BaseOptions  # noqa: F401  (torch-free)

_REGISTRY: Registry[type] = Registry("method", lambda cls: cls.name)
registered_classes = _REGISTRY.names

#: built-in methods: name -> implementation, imported on first ``get`` (each module registers
#: its classes); their options are in ``options.OPTIONS``, so validation imports no torch
BUILTIN = {"linear": "baselines:LinearProbe", "finetune": "baselines:FullFinetune",
           "vpt_shallow": "vpt:VPTShallow", "vpt_deep": "vpt:VPTDeep",
           "gatevpt": "gatevpt:GateVPT", "lspt": "lspt:LSPT", "vptm": "vptm:VPTM"}
def register(cls: type) -> type:
    """Register a method class (``name``, ``Options``); a method defined outside the package
    calls this from its own module, imported through a config's ``custom_imports``."""
    builtin = OPTIONS.get(cls.name)
    if builtin is not None and cls.Options is not builtin:
        raise KeyError(f"method name {cls.name!r} is a built-in method's; choose another name")
    return _REGISTRY.register(cls)


def registered() -> list:
    """Every method name: built-in (registered on first use) and registered."""
    return sorted(set(_REGISTRY.names()) | set(BUILTIN))


def get(name: str) -> type:
    """The method class of ``name`` (imports a built-in method's module on first use)."""
    if name not in _REGISTRY and name in BUILTIN:
        Lazy(f"{__name__}.{BUILTIN[name]}").resolve()  # the module registers the class
    if name not in _REGISTRY:
        raise KeyError(f"unknown method '{name}'; registered: {', '.join(registered())}")
    return _REGISTRY.get(name)


def options_class(name: str) -> type:
    """The ``Options`` dataclass of method ``name``, without importing its implementation."""
    if name in _REGISTRY:
        return _REGISTRY.get(name).Options
    if name in OPTIONS:
        return OPTIONS[name]
    raise KeyError(f"unknown method '{name}'; registered: {', '.join(registered())}")


def make_options(name: str, options: Mapping[str, Any]):
    opts_cls = options_class(name)
    allowed = {f.name for f in dataclasses.fields(opts_cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise KeyError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                       f"'{name}'; allowed: {', '.join(sorted(allowed))}")
    _check_types(name, opts_cls, options)
    opts = opts_cls(**dict(options))
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


def build_model(adapter: "ViTAdapter", method: str, options: Mapping[str, Any], num_classes: int,
                default_pool: str = "cls") -> "PromptedModel":
    from .base import PromptedModel

    cls = get(method)
    return PromptedModel(adapter, cls(make_options(method, options), adapter, num_classes,
                                      default_pool))


#: names kept importable from here; their modules import torch, so they load on first use
_LAZY = {"PromptedModel": "base", "PromptMethod": "base", "run_blocks": "base",
         "ViTAdapter": "replicate.backbones.vit", "LinearProbe": "baselines", "FullFinetune": "baselines",
         "VPTShallow": "vpt", "VPTDeep": "vpt", "VPTOptions": "options",
         "GateVPT": "gatevpt", "GateVPTOptions": "options", "LSPT": "lspt",
         "LSPTOptions": "options", "VPTM": "vptm", "VPTMOptions": "options"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod = _LAZY[name]
        return getattr(importlib.import_module(mod if "." in mod else f"{__name__}.{mod}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["register", "registered", "get", "options_class", "build_model", "make_options",
           "validate_options", "PromptedModel", "PromptMethod", "run_blocks", "BaseOptions",
           "POOLS", "GateVPT", "GateVPTOptions", "LSPT", "LSPTOptions", "VPTShallow", "VPTDeep",
           "VPTOptions", "LinearProbe", "FullFinetune", "VPTM", "VPTMOptions"]
