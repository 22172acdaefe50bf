"""mmengine Config files -> a validated, frozen :class:`Experiment`.

An experiment file is a python file with ``_base_`` inheritance (mmengine's one config
system; mmseg needs it anyway).  Every key it may hold is a field of one of the dataclasses
below, documented where it is defined.  Unknown keys are an error that names the key and the
file; so are missing required keys and values of the wrong type.

Method options (``method = dict(type='gatevpt', ...)``) are validated by the options dataclass
that the method registers (``replicate.methods``), so each method documents its own knobs.
mmengine's ``custom_imports = dict(imports=[...])`` is accepted: those modules (e.g. a method in
the paper folder that calls ``replicate.methods.register``) are imported before validation
(:func:`import_custom`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


from .errors import ConfigError  # noqa: F401  (defined at the bottom layer; re-exported)
from .paths import expand_path  # noqa: F401  (re-exported)


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class BackboneSpec:
    #: registry name ``arch.tag`` (``python -m replicate backbones`` lists them)
    name: str
    #: checkpoint file; ``${CKPT_ROOT}`` is expanded at run time. None = the tag's default file
    #: name under CKPT_ROOT; '' = random init (only allowed for tiny/test backbones)
    checkpoint: Optional[str] = None


@dataclass(frozen=True)
class MethodSpec:
    #: registered method name (linear, finetune, vpt_shallow, vpt_deep, gatevpt, lspt, vptm)
    type: str
    #: method options, validated against the method's own options dataclass
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    #: a benchmark of ``replicate/benchmarks.py`` (fgvc | vtab1k | digits | synthetic | plug-in)
    benchmark: str
    #: task / dataset name within the benchmark (e.g. cub, cifar100)
    task: str
    #: dataset root; ``${DATA_ROOT}`` is expanded at run time
    root: str = "${DATA_ROOT}"
    #: on-disk format: auto | vpt-json (FGVC) | replicate (lossless VTAB export) | noah (JPEG folders)
    format: str = "auto"
    #: network input size (the protocols use 224)
    image_size: int = 224
    #: worker processes that decode images into the cache (and of DataLoaders, where used)
    num_workers: int = 4
    #: FGVC / VTAB-1k: hold each split's cached uint8 images on the training device for the
    #: whole run (else they stay memory-mapped in host memory and each batch is copied over);
    #: identical tensors either way (docs/data.md)
    in_memory: bool = False
    #: transform recipe: vpt-fgvc (resize 256, crop 224, flip) | vpt-vtab (plain resize) | none
    transform: str = "auto"
    #: decoded-image cache folder ('' = $REPLICATE_CACHE_ROOT or ~/.cache/vpt-replicate/images;
    #: 'off' = decode in memory per run); never changes a number, so not in the config hash
    cache_root: str = ""


@dataclass(frozen=True)
class OptimSpec:
    #: optimizer: sgd (VPT/GateVPT) | adamw (full fine-tuning)
    optimizer: str = "sgd"
    #: learning rate as the paper prints it (see lr_scaling)
    lr: float = 0.1
    #: how lr becomes the optimizer's lr: none (as given; GateVPT's run.sh) | linear256 (lr*bs/256; VPT's tune_*.py)
    lr_scaling: str = "none"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 100
    warmup_epochs: int = 10
    #: cosine (linear warmup then half cosine, stepped per epoch as VPT's WarmupCosineSchedule)
    schedule: str = "cosine"
    #: apply weight decay to the head bias too (VPT: no)
    wd_on_head_bias: bool = False


@dataclass(frozen=True)
class TrainSpec:
    #: auto | cpu | cuda
    device: str = "auto"
    #: numeric precision: protocol (the protocol's: fp32 with TF32 matmuls for every
    #: reproduction, as the official code) | fp32 (TF32 matmuls allowed on CUDA) | fp32-strict
    #: (TF32 off) | bf16 (autocast; fast, not yet shown to reproduce) | auto (bf16 on CUDA)
    precision: str = "protocol"
    #: attention kernel: sdpa (fused) | eager (explicit softmax, the reference)
    attention: str = "sdpa"
    #: torch.compile the prompted model
    compile: bool = False
    #: evaluate the first eval split every N epochs (0: only after the last epoch, which is
    #: always evaluated)
    eval_every: int = 1
    #: evaluation batch size (None = 2 x train batch)
    eval_batch_size: Optional[int] = None
    #: stop after this many optimizer steps per epoch (smoke runs only)
    max_steps_per_epoch: Optional[int] = None
    #: linear probe only: compute the frozen backbone's pooled features once per image and train
    #: the head on them (used only where that is exact: method 'linear' and an in-memory
    #: training split without augmentation, i.e. VTAB-1k; replicate/engine/features.py)
    cache_features: bool = True
    #: write the resume checkpoint (last.ckpt) every N epochs, and after the last one; a
    #: preempted run (SIGTERM/SIGUSR2, should_stop) always writes it at the epoch boundary
    #: where it stops.  Resuming from any checkpoint equals the uninterrupted run (per-epoch
    #: seeding), so this only bounds the epochs redone after a hard kill
    checkpoint_every_epochs: int = 10
    #: ... or when this many seconds passed since the last write (0: by epochs only)
    checkpoint_every_s: float = 600.0


@dataclass(frozen=True)
class Experiment:
    #: a short name; run ids add a hash of the resolved config
    name: str
    #: gatevpt | lspt | vptm | demo
    paper: str
    backbone: BackboneSpec
    method: MethodSpec
    data: DataSpec
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    #: protocol id (``replicate.protocol``): splits, grid, selection rule, seeds
    protocol: str = "vtab1k-vpt"
    #: seeds of the final runs; None = the protocol's seeds
    seeds: Optional[Sequence[int]] = None
    #: dotted config key -> why its value is assumed (the paper does not state it)
    assumed: Mapping[str, str] = field(default_factory=dict)
    #: results of this experiment are smoke runs (tiny model / tiny data), never a reproduction
    smoke: bool = False
    #: published cell this experiment reproduces: dict(table=..., benchmark=..., task=..., method=..., backbone=...)
    cell: Mapping[str, Any] = field(default_factory=dict)
    #: mmengine's ``custom_imports``: ``dict(imports=['module', ...], allow_failed_imports=False)``,
    #: modules imported before the config is validated, so a method, backbone or dataset can
    #: register itself from its own module in the paper folder (which is put on sys.path);
    #: not in the config hash (the names they register are)
    custom_imports: Mapping[str, Any] = field(default_factory=dict)
    #: the file the experiment was loaded from (set by the loader)
    source: str = ""

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict:
        d = _to_plain(dataclasses.asdict(self))
        if not d.get("custom_imports"):  # absent unless used: resolved configs stay as they were
            d.pop("custom_imports", None)
        return d

    def replace(self, **changes: Any) -> "Experiment":
        """A copy with dotted keys replaced, e.g. ``replace(**{'optim.lr': 0.5})``."""
        d = self.to_dict()
        for key, value in changes.items():
            _set_dotted(d, key, value)
        return from_dict(d, source=self.source)

    def config_hash(self) -> str:
        """Hash of everything that can change a number (not name/source/assumed notes)."""
        d = self.to_dict()
        for k in ("name", "source", "assumed", "cell", "seeds", "custom_imports"):
            d.pop(k, None)
        d["data"].pop("cache_root", None)  # where decoded images are cached, not what they are
        for k in ("checkpoint_every_epochs", "checkpoint_every_s"):  # resume is exact either way
            d["train"].pop(k, None)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:10]


_SECTIONS = {
    "backbone": BackboneSpec,
    "method": MethodSpec,
    "data": DataSpec,
    "optim": OptimSpec,
    "train": TrainSpec,
}


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _set_dotted(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] == "method" and len(parts) == 2 and parts[1] != "type":
        d.setdefault("method", {}).setdefault("options", {})[parts[1]] = value
        return
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def _check_type(value: Any, f: dataclasses.Field, where: str) -> Any:
    """Coerce ints to floats where a float is expected; reject obvious mismatches."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if value is None:
        if "Optional" in t or f.default is None:
            return value
        raise ConfigError(f"{where}: '{f.name}' may not be None")
    if t.startswith("Optional[") and t.endswith("]"):
        t = t[len("Optional["):-1]  # a set Optional field must have the inner type
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: '{f.name}' must be a number, got {value!r}")
        return float(value)
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: '{f.name}' must be an integer, got {value!r}")
    if t == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{f.name}' must be True/False, got {value!r}")
    if t == "str" and not isinstance(value, str):
        raise ConfigError(f"{where}: '{f.name}' must be a string, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a dict for '{cls.__name__}', got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(repr(u) for u in unknown)} in "
            f"'{cls.__name__}'; allowed: {', '.join(sorted(known))}")
    kwargs = {}
    for name, f in known.items():
        if name in raw:
            kwargs[name] = _check_type(raw[name], f, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ConfigError(f"{where}: required key '{name}' missing in '{cls.__name__}'")
    return cls(**kwargs)


def from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> Experiment:
    """Validate a plain dict (e.g. an mmengine Config) into a frozen Experiment."""
    raw = {k: v for k, v in dict(raw).items() if not k.startswith("_") and k != "source"}
    known = {f.name for f in fields(Experiment)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(repr(u) for u in unknown)}; "
            f"allowed: {', '.join(sorted(known - {'source'}))}")
    for req in ("name", "paper", "backbone", "method", "data"):
        if req not in raw:
            raise ConfigError(f"{source}: required key '{req}' missing")
    kw: dict[str, Any] = {}
    for key, cls in _SECTIONS.items():
        if key in raw:
            section = _to_plain(raw[key])
            if key == "method":
                section = dict(section)
                mtype = section.pop("type", None)
                # flat keys as files write them; an explicit 'options' dict (what replace()
                # and load(overrides=...) set) wins, so an override beats the file's value
                explicit = dict(section.pop("options", {}) or {})
                section = {"type": mtype, "options": {**section, **explicit}}
                if mtype is None:
                    raise ConfigError(f"{source}: method.type missing")
            kw[key] = _build(cls, section, f"{source} [{key}]")
    for key in ("name", "paper", "protocol"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"{source}: '{key}' must be a string")
            kw[key] = raw[key]
    if "seeds" in raw and raw["seeds"] is not None:
        seeds = raw["seeds"]
        if not isinstance(seeds, (list, tuple)) or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{source}: 'seeds' must be a list of integers")
        kw["seeds"] = tuple(seeds)
    for key in ("assumed", "cell"):
        if key in raw:
            if not isinstance(raw[key], Mapping):
                raise ConfigError(f"{source}: '{key}' must be a dict")
            kw[key] = dict(_to_plain(raw[key]))
    if "smoke" in raw:
        if not isinstance(raw["smoke"], bool):
            raise ConfigError(f"{source}: 'smoke' must be True/False, got {raw['smoke']!r}")
        kw["smoke"] = raw["smoke"]
    if raw.get("custom_imports"):
        kw["custom_imports"] = import_custom(raw["custom_imports"], source, kw.get("paper", ""))
    exp = Experiment(source=str(source), **kw)
    _validate_semantics(exp)
    return exp


def import_custom(spec: Any, source: str, paper: str = "") -> dict:
    """Import the modules of a config's ``custom_imports`` (mmengine's form:
    ``dict(imports=['mod', ...], allow_failed_imports=False)``) so that what they register
    (``replicate.methods.register`` ...) is known before validation.  The paper folder -- the
    parent of the config's ``configs/`` folder, else ``<papers root>/<paper>`` -- is put on
    sys.path first, so a paper's own module is imported by its name.  Returns the normalised
    spec (kept in the experiment, so a job re-imports the modules before re-validating)."""
    import importlib
    import sys
    import warnings

    from .papers import paper_folder_of, papers_root

    where = f"{source} [custom_imports]"
    if isinstance(spec, (list, tuple, str)):
        spec = {"imports": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: must be dict(imports=['module', ...], "
                          f"allow_failed_imports=False), got {spec!r}")
    unknown = sorted(set(spec) - {"imports", "allow_failed_imports"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"imports, allow_failed_imports")
    imports = spec.get("imports", [])
    imports = [imports] if isinstance(imports, str) else list(imports)
    allow_failed = spec.get("allow_failed_imports", False)
    if not all(isinstance(m, str) and m for m in imports) or not isinstance(allow_failed, bool):
        raise ConfigError(f"{where}: 'imports' must be a list of module names and "
                          f"'allow_failed_imports' True/False, got {dict(spec)!r}")
    folder = paper_folder_of(Path(source)) if Path(str(source)).is_file() else None
    if folder is None and paper:
        folder = papers_root() / paper
    if folder is not None and folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    for name in imports:
        try:
            importlib.import_module(name)
        except ImportError as e:
            msg = (f"{where}: cannot import '{name}' ({e}); it is looked up in the paper folder "
                   f"{folder} and on the python path: fix the module name or the module")
            if not allow_failed:
                raise ConfigError(msg) from None
            warnings.warn(msg + " (skipped: allow_failed_imports=True)")
    return {"imports": imports, "allow_failed_imports": allow_failed}


def _validate_semantics(exp: Experiment) -> None:
    """Checks that need the registries: names exist, options fit the method."""
    from . import backbones, methods, protocol  # torch-free registries (tests/test_layers.py)

    src = exp.source
    _check_benchmark(exp)
    if exp.backbone.name not in backbones.registered():
        raise ConfigError(
            f"{src}: unknown backbone '{exp.backbone.name}'; registered: "
            f"{', '.join(backbones.registered())}")
    try:
        methods.validate_options(exp.method.type, exp.method.options)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{src} [method]: {e}") from None
    if exp.protocol not in protocol.registered():
        raise ConfigError(f"{src}: unknown protocol '{exp.protocol}'; registered: "
                          f"{', '.join(protocol.registered())}")
    if exp.optim.lr_scaling not in ("none", "linear256"):
        raise ConfigError(f"{src} [optim]: lr_scaling must be 'none' or 'linear256'")
    proto = protocol.get(exp.protocol) if exp.protocol in protocol.registered() else None
    if proto is not None and proto.lr_scaling != exp.optim.lr_scaling:
        raise ConfigError(f"{src} [optim]: lr_scaling '{exp.optim.lr_scaling}' contradicts protocol "
                          f"'{exp.protocol}' (lr_scaling '{proto.lr_scaling}'); set them equal")
    if exp.optim.optimizer not in ("sgd", "adamw"):
        raise ConfigError(f"{src} [optim]: optimizer must be 'sgd' or 'adamw'")
    _check_ranges(exp)
    if exp.train.precision not in protocol.PRECISIONS:
        raise ConfigError(f"{src} [train]: precision must be one of "
                          f"{', '.join(protocol.PRECISIONS)}, "
                          f"got {exp.train.precision!r}")
    if exp.train.eval_every < 0:
        raise ConfigError(f"{src} [train]: eval_every must be >= 0 (0: only after the last epoch)")
    if exp.train.attention not in ("sdpa", "eager"):
        raise ConfigError(f"{src} [train]: attention must be sdpa or eager")
    flat = _flatten(exp.to_dict())
    for key in exp.assumed:
        if key not in flat and not any(k.startswith(key + ".") for k in flat):
            raise ConfigError(f"{src} [assumed]: '{key}' is not a config key")


def _check_benchmark(exp: Experiment) -> None:
    """``data.benchmark`` and ``data.task`` are in the benchmark table (``replicate/benchmarks.py``;
    checked after ``custom_imports``, so a benchmark a plug-in module registers counts)."""
    from . import benchmarks

    src, d = exp.source, exp.data
    bench = benchmarks.find_benchmark(d.benchmark)
    if bench is None:
        raise ConfigError(f"{src} [data]: 'data.benchmark' = {d.benchmark!r} is not a registered "
                          f"benchmark; known: {', '.join(benchmarks.names())} (a new benchmark "
                          f"registers itself with replicate.benchmarks.register_benchmark in a "
                          f"module named by the config's custom_imports: docs/contributing.md)")
    if bench.segmentation:
        raise ConfigError(f"{src} [data]: 'data.benchmark' = {d.benchmark!r} is scored by "
                          f"{bench.metric}, not trained by the classification engine: its runs "
                          f"are mmseg configs (`python -m replicate seg-train`, replicate/seg/)")
    if d.task not in bench.tasks:
        raise ConfigError(f"{src} [data]: 'data.task' = {d.task!r} is not a task of benchmark "
                          f"'{bench.name}'; known: {', '.join(sorted(bench.tasks))}")


def _check_ranges(exp: Experiment) -> None:
    """Numbers the engine needs in range, refused at load (not as a crash or a bogus ``done``
    record after training): each message names the file, the key, the value and the fix."""
    src, o, d, t = exp.source, exp.optim, exp.data, exp.train

    def bad(section: str, key: str, value: Any, want: str) -> ConfigError:
        return ConfigError(f"{src} [{section}]: '{section}.{key}' = {value!r} is invalid: it must "
                           f"be {want}; fix the value in the file (or its --set override)")

    if not math.isfinite(o.lr) or o.lr <= 0:
        raise bad("optim", "lr", o.lr, "a finite number > 0 (e.g. 0.1)")
    for key in ("momentum", "weight_decay"):
        v = getattr(o, key)
        if not math.isfinite(v) or v < 0:
            raise bad("optim", key, v, "a finite number >= 0")
    if o.batch_size <= 0:
        raise bad("optim", "batch_size", o.batch_size, "an integer >= 1")
    if o.epochs <= 0:
        raise bad("optim", "epochs", o.epochs, "an integer >= 1 (a run of 0 epochs trains nothing)")
    if o.warmup_epochs < 0:
        raise bad("optim", "warmup_epochs", o.warmup_epochs, "an integer >= 0")
    if o.warmup_epochs > o.epochs:
        raise bad("optim", "warmup_epochs", o.warmup_epochs,
                  f"at most optim.epochs ({o.epochs})")
    if d.image_size <= 0:
        raise bad("data", "image_size", d.image_size, "an integer >= 1 (the protocols use 224)")
    if d.num_workers < 0:
        raise bad("data", "num_workers", d.num_workers, "an integer >= 0 (0: load in the main "
                  "process)")
    if t.eval_batch_size is not None and t.eval_batch_size <= 0:
        raise bad("train", "eval_batch_size", t.eval_batch_size, "an integer >= 1, or None")
    if t.checkpoint_every_epochs < 1:
        raise bad("train", "checkpoint_every_epochs", t.checkpoint_every_epochs,
                  "an integer >= 1 (1: after every epoch)")
    if not math.isfinite(t.checkpoint_every_s) or t.checkpoint_every_s < 0:
        raise bad("train", "checkpoint_every_s", t.checkpoint_every_s,
                  "a number of seconds >= 0 (0: by epochs only)")
    if t.max_steps_per_epoch is not None and t.max_steps_per_epoch <= 0:
        raise bad("train", "max_steps_per_epoch", t.max_steps_per_epoch,
                  "an integer >= 1, or None")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k not in ("assumed", "cell"):
            if k == "options":
                out.update(_flatten(v, prefix))  # method.options.x is written method.x
            else:
                out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load(path: str | os.PathLike, overrides: Optional[Mapping[str, Any]] = None) -> Experiment:
    """Load an experiment file (mmengine Config, ``_base_`` inheritance) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        from mmengine.config import Config
    except ImportError as e:  # pragma: no cover - mmengine is a core dependency
        raise ConfigError("mmengine is not installed: run `make install`") from e
    try:
        # custom_imports are imported by from_dict, with the paper folder on sys.path
        cfg = Config.fromfile(str(path), import_custom_modules=False)
    except Exception as e:  # syntax errors, missing _base_ files ...
        raise ConfigError(f"{path}: cannot be read by mmengine: {e}") from e
    raw = cfg.to_dict()
    if overrides:
        for k, v in overrides.items():
            _set_dotted(raw, k, v)
    drop_inherited_assumed(raw, path)
    return from_dict(raw, source=str(path))


def _own_assumed_keys(path: Path) -> Optional[set]:
    """The keys the file itself writes in ``assumed = {...}`` / ``dict(...)`` (not its bases');
    None when they cannot be read without running the file (then nothing is dropped)."""
    import ast

    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    keys: set = set()
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        if "assumed" not in names:
            continue
        if names != ["assumed"]:
            return None  # e.g. ``method, cell, assumed = ...``
        parts = [node.value]
        while parts:
            v = parts.pop()
            if isinstance(v, ast.Dict):
                for k, item in zip(v.keys, v.values):
                    if k is None:
                        parts.append(item)  # ``**{...}``
                    elif isinstance(k, ast.Constant) and isinstance(k.value, str):
                        keys.add(k.value)
                    else:
                        return None
            elif isinstance(v, ast.Call) and getattr(v.func, "id", None) == "dict" and not v.args:
                for kw in v.keywords:
                    if kw.arg is None:
                        parts.append(kw.value)
                    elif kw.arg != "_delete_":
                        keys.add(kw.arg)
            else:
                return None
    return keys


def drop_inherited_assumed(raw: dict, path: Path) -> None:
    """Drop the ``assumed`` reasons a ``_base_`` file gives for method options the resolved
    method does not have: a baseline cell (``method = dict(_delete_=True, type='vpt_deep',
    ...)``) on a base written for another method then holds only the reasons that differ,
    instead of re-listing the base's block with ``_delete_``.  Reasons the file itself writes
    are kept, so a wrong key in the file is still refused (by ``from_dict``), naming it."""
    assumed, method = raw.get("assumed"), raw.get("method")
    if not isinstance(assumed, Mapping) or not isinstance(method, Mapping):
        return
    from . import methods  # options_class is torch-free for the built-in methods

    try:
        fields_ = {f.name for f in dataclasses.fields(methods.options_class(method.get("type")))}
    except (KeyError, TypeError):
        return  # unknown method (or one from custom_imports): from_dict reports it
    stale = [k for k in assumed if k.startswith("method.") and k[len("method."):] not in fields_]
    own = _own_assumed_keys(path) if stale else set()
    if own is None:
        return
    raw["assumed"] = {k: v for k, v in assumed.items() if k not in set(stale) - own}


def parse_overrides(items: Optional[Sequence[str]], flag: str = "--set") -> dict:
    """``['optim.lr=0.5', "data.task='dtd'"]`` -> ``{'optim.lr': 0.5, 'data.task': 'dtd'}``;
    values are python literals when they parse as one, else strings."""
    import ast

    out = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"{flag} expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out
