"""``python -m replicate explain`` for an ADE20K (mmseg) config: every resolved value of the
mmengine Config with its source.

The values are those :func:`replicate.seg.run.load_seg_config` loads (what ``seg_train`` runs).
The file that sets each one is found by replaying mmengine's ``_base_`` merge
(``Config._file2dict``: bases in order, then the file's own variables; a dict merges into a
dict key by key unless it says ``_delete_=True``, anything else replaces), so a key inherited
from mmseg's SETR-PUP config is traced to that file (``mmseg::...``) and one set again in a leaf
config to the leaf.  Sources: ``assumed`` (the config's ``assumed`` names the key or its
section; reason printed), ``paper`` (the setting's comment cites the paper, or the published
``cell`` fixes it), ``config`` (a file of this repository), ``mmseg`` (mmseg's own config,
inherited), ``harness`` (``seg_train`` sets or replaces it at run time) and ``default`` (not in
the config: the prompt method's option default, or ``PromptedViTSeg``'s argument default).

Needs the segmentation environment: mmseg's config files come with the mmseg package.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .. import backbones, methods
from ..configtext import CITES_PAPER, Setting, external_bases, field_docs, nested_settings, rel
from ..errors import ConfigError
from . import INSTALL_HINT

#: the protocol of every ADE20K record (``replicate.seg.run.make_seg_record``)
PROTOCOL = "ade20k-setr-pup"
SOURCES_LINE = ("# sources: paper (the file cites the paper, or the published cell) | assumed "
                "(with its reason) | config (a file of this repository) | mmseg (mmseg's own "
                "config, inherited) | harness (seg_train sets it at run time) | default")
_METHOD = "model.backbone.method"


@dataclass(frozen=True)
class Row:
    key: str
    value: Any
    source: str
    detail: str
    where: str = ""


# --------------------------------------------------------------------------- the _base_ merge
def _own(path: Path, base: Mapping[str, Any]) -> Dict[str, Any]:
    """The variables ``path`` itself defines, executed as mmengine does (``_base_`` assignment
    removed, the bases' merged dict readable as ``_base_``)."""
    from mmengine.config import ConfigDict

    text = path.read_text()
    if "{{" in text:
        raise ConfigError(f"{path}: explain cannot trace mmengine's {{{{ ... }}}} substitutions; "
                          "write the value instead")
    tree = ast.parse(text, filename=str(path))
    tree.body = [n for n in tree.body if not (isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "_base_" for t in n.targets))]
    ns: Dict[str, Any] = {"_base_": ConfigDict(base)}
    exec(compile(tree, str(path), "exec"), ns)  # a config file, as mmengine runs it
    return {k: v for k, v in ns.items() if k != "_base_" and not k.startswith("__")
            and not isinstance(v, (types.ModuleType, types.FunctionType))}


def _leaves(value: Any, key: str) -> List[str]:
    if isinstance(value, Mapping) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{key}.{k}")]
    return [key]


def _merge(own: Mapping[str, Any], base: Mapping[str, Any], src: Dict[str, Path], path: Path,
           prefix: str = "") -> Dict[str, Any]:
    """``Config._merge_a_into_b(own, base)``, recording in ``src`` which file set each leaf."""
    out = dict(base)
    for k, v in own.items():
        key = prefix + k
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping) \
                and not v.get("_delete_", False):
            out[k] = _merge(v, base[k], src, path, key + ".")
            continue
        for old in [x for x in src if x == key or x.startswith(key + ".")]:
            del src[old]
        if isinstance(v, Mapping) and k in base:  # mmengine drops _delete_ where it applies
            v = {a: b for a, b in v.items() if a != "_delete_"}
        out[k] = v
        src.update({leaf: path for leaf in _leaves(v, key)})
    return out


def trace(path: str | os.PathLike) -> Dict[str, Path]:
    """Dotted key -> the file of the ``_base_`` chain whose value the resolved config holds."""
    from mmengine.config import Config

    def visit(p: Path) -> Tuple[Dict[str, Any], Dict[str, Path]]:
        base: Dict[str, Any] = {}
        src: Dict[str, Path] = {}
        for b in Config._get_base_files(str(p)):
            bpath, _ = Config._get_cfg_path(b, str(p))
            d, s = visit(Path(bpath))
            base.update(d)
            src.update(s)
        return _merge(_own(p, base), base, src, p), src
    return visit(Path(path).resolve())[1]


# --------------------------------------------------------------------------- rows
def _flat(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _mmseg_configs() -> Path:
    spec = importlib.util.find_spec("mmseg")
    return Path(spec.origin).resolve().parent / ".mim" / "configs"  # type: ignore[union-attr]


def _where(file: Path, setting: Optional[Setting]) -> str:
    try:
        name = "mmseg::" + str(file.resolve().relative_to(_mmseg_configs()))
    except ValueError:
        name = rel(file)
    return f"{name}:{setting.line}" if setting else name


def _setting(file: Path, key: str, cache: Dict[Path, Dict[str, Setting]]) -> Optional[Setting]:
    """Where ``file`` writes ``key`` (its longest dotted prefix that the file names)."""
    if file not in cache:
        cache[file] = nested_settings(file)
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        s = cache[file].get(".".join(parts[:n]))
        if s is not None:
            return s
    return None


def _assumed(assumed: Mapping[str, str], key: str) -> Tuple[Optional[str], Optional[str]]:
    """(the assumed key naming ``key`` or a section above it, its reason)."""
    for k in sorted(assumed, key=len, reverse=True):
        if key == k or key.startswith(k + "."):
            return k, assumed[k]
    return None, None


def _arg_docs(cls: type) -> Dict[str, str]:
    """Argument name -> its line(s) under ``Args:`` in the class docstring."""
    out: Dict[str, str] = {}
    name = None
    for line in (inspect.getdoc(cls) or "").split("Args:", 1)[-1].splitlines():
        m = re.match(r"    (\w+): (.*)", line)
        if m:
            name, out[m.group(1)] = m.group(1), m.group(2).strip()
        elif name and line.startswith("        "):
            out[name] += " " + line.strip()
    return out


def _harness_notes(cfg, key: str, value: Any) -> Tuple[Optional[str], str]:
    """(detail when seg_train replaces the value at run time, else None; a note to append)."""
    if key == "train_dataloader.batch_size":
        ebs, gpus = cfg.get("effective_batch_size"), cfg.get("num_gpus")
        per = f"{ebs} / {gpus} = {ebs // gpus} on the config's num_gpus {gpus}; " \
            if isinstance(ebs, int) and isinstance(gpus, int) and gpus > 0 else ""
        return (f"seg_train replaces it by the per-GPU batch effective_batch_size / processes "
                f"({per}the file's value {value!r})"), ""
    if key == "resume":
        return ("seg_train sets True: a run resumes from its work_dir's last checkpoint "
                "(seg-train --no-resume: False)"), ""
    if key == "load_from":
        return "seg_train sets None (weights come from model.backbone.checkpoint)", ""
    if key.endswith("dataset.data_root") and "${" in str(value):
        return None, "; ${DATA_ROOT} is expanded by seg_train, which checks the ADE20K layout"
    if key == "model.backbone.checkpoint" and value is None:
        entry = backbones.get(cfg.model.backbone.backbone)
        return None, f"; resolved at run time to ${{CKPT_ROOT}}/{entry.default_file}"
    if key in ("tta_pipeline", "tta_model"):
        return None, ("; multi-scale test (seg_test_ms): tta_pipeline replaces the test "
                      "pipeline and tta_model wraps the model")
    return None, ""


def _row(cfg, key: str, value: Any, file: Optional[Path], cache, cell_fix,
         set_keys: List[str]) -> Row:
    s = _setting(file, key, cache) if file is not None else None
    where = _where(file, s) if file is not None else ""
    comment = s.comment if s else ""
    akey, reason = _assumed(dict(cfg.get("assumed") or {}), key)
    harness, note = _harness_notes(cfg, key, value)
    if any(key == k or key.startswith(k + ".") for k in set_keys):
        return Row(key, value, "config", "--set on the command line")
    if harness is not None:
        return Row(key, value, "harness", harness, where)
    if key.endswith("_scope_") and file is None:
        return Row(key, value, "mmseg", "mmengine marks a dict inherited from an mmseg:: config "
                   "with its registry scope")
    if akey == key:
        return Row(key, value, "assumed", reason + note, where)
    if comment and CITES_PAPER.search(comment):
        return Row(key, value, "paper", comment + note
                   + (f"; {akey} assumed: {reason}" if akey else ""), where)
    if akey is not None:
        return Row(key, value, "assumed", reason + note, where)
    if key in cell_fix and cell_fix[key] == value:
        return Row(key, value, "paper", f"the published cell: {cell_fix['_text']}", where)
    if file is None:
        return Row(key, value, "config", "set in the _base_ chain (the file was not traced)")
    if where.startswith("mmseg::"):
        return Row(key, value, "mmseg", (comment or "mmseg's own config, inherited") + note,
                   where)
    return Row(key, value, "config", (comment or "set in the config file") + note, where)


def explain_seg_config(path: str | os.PathLike, overrides: Optional[Mapping[str, Any]] = None
                       ) -> Tuple[Any, List[Row]]:
    """(the loaded mmseg Config, one row per resolved key, sorted), plus rows for what the
    harness adds: the method's option defaults, PromptedViTSeg's argument defaults, work_dir
    and launcher."""
    if importlib.util.find_spec("mmseg") is None:
        raise ConfigError(
            f"{path}: an mmseg config (it inherits {', '.join(external_bases(Path(path)))}); "
            f"explain it in the segmentation environment, which has mmseg's config files: "
            f"{INSTALL_HINT}; then .venv-seg/bin/python -m replicate explain {path}")
    from .run import config_hash, load_seg_config

    cfg = load_seg_config(path, overrides)
    src = trace(path)
    cache: Dict[Path, Dict[str, Setting]] = {}
    cell = dict(cfg.get("cell") or {})
    bb = cfg.model.backbone
    entry = backbones.get(bb.backbone)
    cell_fix: Dict[str, Any] = {"_text": ", ".join(f"{k}={v}" for k, v in cell.items())}
    if cell.get("method"):
        cell_fix[f"{_METHOD}.type"] = cell["method"]
    if cell.get("backbone") == entry.paper_key:
        cell_fix["model.backbone.backbone"] = bb.backbone
    flat = {k: v for k, v in _flat(cfg.to_dict()).items()
            if not k.startswith(("assumed.", "cell."))}
    set_keys = list(overrides or {})
    rows = [_row(cfg, k, v, src.get(k), cache, cell_fix, set_keys) for k, v in flat.items()]

    assumed = dict(cfg.get("assumed") or {})
    opts = methods.make_options(bb.method.type, {k: v for k, v in bb.method.items()
                                                 if k != "type"})
    docs = field_docs(type(opts))
    for name, value in dataclasses.asdict(opts).items():
        key = f"{_METHOD}.{name}"
        if key not in flat:
            default = f"{type(opts).__name__}.{name} default" + \
                (f": {docs[name]}" if docs.get(name) else "")
            akey, reason = _assumed(assumed, key)
            rows.append(Row(key, value, "assumed", f"{reason}; {default}") if akey else
                        Row(key, value, "default", default))
    from .backbone import PromptedViTSeg

    args = _arg_docs(PromptedViTSeg)
    for name, p in inspect.signature(PromptedViTSeg.__init__).parameters.items():
        key = f"model.backbone.{name}"
        if name != "self" and p.default is not inspect.Parameter.empty and key not in flat:
            rows.append(Row(key, p.default, "default", f"PromptedViTSeg({name}=...) default"
                            + (f": {args[name]}" if args.get(name) else "")))
    rows.append(Row("work_dir", f"$RUNS_ROOT/{cfg.get('paper', 'gatevpt')}/ade20k/"
                    f"{cfg.get('name', Path(path).stem)}-{config_hash(cfg)}", "harness",
                    "seg_train's run directory (default ./runs for RUNS_ROOT; seg-train "
                    "--work-dir replaces it)"))
    rows.append(Row("launcher", "none", "harness", "mmengine's launcher, from seg-train "
                    "--launcher (none | pytorch | slurm); a SLURM job with several tasks: slurm"))
    return cfg, sorted(rows, key=lambda r: r.key)
