"""``python -m replicate explain CONFIG``: every resolved value of an experiment config and where
it comes from.

A value's source is one of

* ``assumed``  -- the config's ``assumed`` dict names the key; its reason is printed;
* ``paper``    -- set in a config file on a line whose comment cites the paper (Table, Sec.,
  App., Fig., Eq., arXiv), or fixed by the published ``cell`` the config reproduces;
* ``config``   -- set in a config file without such a citation (the comment, if any, shown);
* ``protocol`` -- decided by the experiment's protocol (``replicate.protocol``): splits, grid,
  lr scaling, seeds, precision, selection, tolerance, who measured the published numbers;
  in a search config the protocol's grid replaces ``optim.lr`` / ``optim.weight_decay``;
* ``default``  -- no file sets it: the dataclass default, with the field's documentation.

The file and line that set a value are found by reading the ``_base_`` chain with :mod:`ast`
and :mod:`tokenize` (the files are not executed again; :mod:`replicate.configtext`); the values
themselves are those of the loaded, validated :class:`~replicate.config.Experiment`.

An ADE20K config (its ``_base_`` chain inherits an ``mmseg::`` config) is explained by
:mod:`replicate.seg.explain` in the segmentation environment (sources also ``mmseg`` and
``harness``), printed the same way, with the ADE20K protocol's rows.
"""
from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .configtext import CITES_PAPER as _CITES_PAPER
from .configtext import Setting, bases as _bases, comment_for as _comment_for
from .configtext import comments as _comments, dict_items as _dict_items, field_docs
from .configtext import rel as _rel

_SECTIONS = ("backbone", "method", "data", "optim", "train")


@dataclass(frozen=True)
class Explained:
    key: str
    value: Any
    #: assumed | paper | config | protocol | default (mmseg configs also: mmseg | harness)
    source: str
    detail: str
    where: str = ""


# --------------------------------------------------------------------------- config files
def settings(path: Path) -> Dict[str, Setting]:
    """Dotted key -> where the ``_base_`` chain of ``path`` last sets it (bases first, the file
    last; a section written with ``_delete_=True`` forgets what its bases set)."""
    out: Dict[str, Setting] = {}
    seen: set = set()

    def visit(p: Path) -> None:
        if p in seen or not p.is_file():
            return
        seen.add(p)
        text = p.read_text()
        try:
            tree = ast.parse(text, filename=str(p))
        except SyntaxError:
            return
        for base in _bases(tree, p):
            visit(base)
        comments = _comments(text)
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                continue
            name = node.targets[0].id
            if name.startswith("_") or name in ("assumed", "cell", "custom_imports"):
                continue
            items = _dict_items(node.value) if name in _SECTIONS else None
            if items is None:
                out[name] = Setting(p, node.lineno, _comment_for(comments, node.value,
                                                                  node.lineno))
                continue
            if any(k == "_delete_" for k, _ in items):
                for key in [k for k in out if k.startswith(name + ".")]:
                    del out[key]
            for key, value in items:
                if key == "_delete_":
                    continue
                out[f"{name}.{key}"] = Setting(p, value.lineno,
                                               _comment_for(comments, value, node.lineno))
    visit(Path(path).resolve())
    return out


# --------------------------------------------------------------------------- explain
def _flat(exp) -> Dict[str, Any]:
    """The experiment's resolved keys (method options with their defaults filled in)."""
    from . import config, methods

    d = exp.to_dict()
    flat = {k: v for k, v in config._flatten(d).items()
            if k not in ("source", "assumed", "cell") and not k.startswith(("assumed.", "cell."))}
    opts = dataclasses.asdict(methods.make_options(exp.method.type, exp.method.options))
    for key, value in opts.items():
        flat.setdefault(f"method.{key}", value)
    return flat


def _default_detail(exp, key: str) -> str:
    from . import config, methods

    section, _, name = key.partition(".")
    if not name:
        cls, name = config.Experiment, section
    elif section == "method":
        cls = methods.get(exp.method.type).Options
    else:
        cls = {"backbone": config.BackboneSpec, "data": config.DataSpec,
               "optim": config.OptimSpec, "train": config.TrainSpec}.get(section)
    if cls is None:
        return "default"
    doc = field_docs(cls).get(name, "")
    return f"{cls.__name__}.{name} default" + (f": {doc}" if doc else "")


def _assumed_reason(assumed: Mapping[str, str], key: str) -> Optional[str]:
    if key in assumed:
        return assumed[key]
    for k, why in assumed.items():  # a section named as a whole
        if key.startswith(k + "."):
            return why
    return None


def explain_rows(path: str | Path, overrides: Optional[Mapping[str, Any]] = None
                 ) -> Tuple[Any, List[Explained], List[Explained]]:
    """(experiment, one row per resolved config key, one row per protocol setting)."""
    from . import config, protocol

    path = Path(path)
    exp = config.load(path, overrides)
    sets = settings(path)
    proto = protocol.get(exp.protocol)
    search = "search" in Path(path).resolve().parts
    cell = dict(exp.cell or {})
    cell_fix = {"data.benchmark": cell.get("benchmark"), "data.task": cell.get("task"),
                "method.type": cell.get("method")}
    rows: List[Explained] = []
    for key, value in sorted(_flat(exp).items()):
        s = sets.get(key)
        where = f"{_rel(s.file)}:{s.line}" if s else ""
        reason = _assumed_reason(exp.assumed, key)
        if search and key in ("optim.lr", "optim.weight_decay"):
            grid = proto.lr_grid if key == "optim.lr" else proto.wd_grid
            row = Explained(key, value, "protocol",
                            f"search: replaced by each point of protocol {proto.id}'s "
                            f"{'lr' if key == 'optim.lr' else 'wd'} grid {list(grid)}; the final "
                            f"runs take the selected value"
                            + (f" (the file's value: {s.comment})" if s and s.comment else "")
                            + (f"; assumed: {reason}" if reason is not None else ""), where)
        elif reason is not None:
            row = Explained(key, value, "assumed", reason + _resolved(key, value, proto), where)
        elif (key, value) in (("train.precision", "protocol"), ("seeds", None)):
            row = Explained(key, value, "protocol", _resolved(key, value, proto).lstrip("; "),
                            where)
        elif s is not None and s.comment and _CITES_PAPER.search(s.comment):
            row = Explained(key, value, "paper", s.comment, where)
        elif key in cell_fix and cell_fix[key] is not None and cell_fix[key] == value:
            row = Explained(key, value, "paper", f"the published cell: {_cell_text(cell)}", where)
        elif key == "optim.lr_scaling":
            row = Explained(key, value, "protocol", f"protocol {proto.id}: lr_scaling "
                            f"{proto.lr_scaling}" + (f" ({s.comment})" if s and s.comment else ""),
                            where)
        elif s is not None:
            row = Explained(key, value, "config", s.comment or "set in the config file", where)
        else:
            row = Explained(key, value, "default", _default_detail(exp, key))
        rows.append(row)
    return exp, rows, protocol_rows(proto, exp.seeds)


def protocol_rows(proto, seeds: Optional[Sequence[int]] = None) -> List[Explained]:
    """One row per setting of the protocol (``replicate/protocol.py``); ``seeds``: the config's
    own seeds, which replace the protocol's."""
    prow: List[Explained] = []
    fields = ("description", "benchmark", "search_train", "search_eval", "final_train",
              "report", "lr_grid", "wd_grid", "lr_scaling", "selection", "tie_break", "seeds",
              "precision", "tolerance", "measured_by")
    for name in fields:
        value = getattr(proto, name)
        value = list(value) if isinstance(value, tuple) else value
        if name == "seeds" and seeds:
            prow.append(Explained(f"protocol.{name}", value, "config",
                                  f"the config's seeds {list(seeds)} replace these"))
        elif name in proto.assumed:
            prow.append(Explained(f"protocol.{name}", value, "assumed", proto.assumed[name]))
        elif name == "measured_by" and value:
            from .results.compare import measured_under
            prow.append(Explained(f"protocol.{name}", value, "protocol",
                                  f"protocol {proto.id}: published numbers measured by "
                                  f"{measured_under(value)}"))
        else:
            prow.append(Explained(f"protocol.{name}", value, "protocol", f"protocol {proto.id}"))
    return prow


def _resolved(key: str, value: Any, proto) -> str:
    """What a value that defers to the protocol resolves to ('' for any other value)."""
    if key == "seeds" and value is None:
        return f"; resolved: protocol {proto.id}'s seeds {list(proto.seeds)}"
    if key == "train.precision" and value == "protocol":
        return f"; resolved: protocol {proto.id}'s precision {proto.precision}"
    return ""


def _cell_text(cell: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def explain(path: str | Path, overrides: Optional[Mapping[str, Any]] = None,
            overrides_items: Optional[Sequence[str]] = None) -> str:
    """The text ``python -m replicate explain`` prints for ``path`` (an experiment config, or
    an mmseg ADE20K config: one whose ``_base_`` chain inherits an ``mmseg::`` config)."""
    from . import config
    from .configtext import external_bases

    if overrides_items:
        overrides = {**(overrides or {}), **config.parse_overrides(overrides_items)}
    if any(b.startswith("mmseg::") for b in external_bases(Path(path))):
        return _explain_seg(path, overrides)
    exp, rows, prow = explain_rows(path, overrides)
    lines = [f"# {path}", f"# experiment {exp.name} (paper {exp.paper}, protocol {exp.protocol}"
             f"{', SMOKE' if exp.smoke else ''})"]
    if exp.cell:
        lines.append(f"# reproduces the published cell: {_cell_text(exp.cell)}")
    lines.append("# sources: paper (the file cites the paper, or the published cell) | assumed "
                 "(with its reason) | config | protocol | default")
    return "\n".join(lines + _row_lines(rows, prow, exp.protocol))


def _row_lines(rows: Sequence[Any], prow: Sequence[Any], protocol_id: str) -> List[str]:
    """``key = value`` then ``    [source] detail  (file:line)`` for each row; the protocol's
    rows under their own heading."""
    lines = [""]
    for r in list(rows) + [None] + list(prow):
        if r is None:
            lines += ["", f"# protocol {protocol_id} (replicate/protocol.py)"]
            continue
        lines.append(f"{r.key} = {r.value!r}")
        lines.append(f"    [{r.source}] {r.detail}" + (f"  ({r.where})" if r.where else ""))
    return lines


def seg_rows(path: str | Path, overrides: Optional[Mapping[str, Any]] = None):
    """(mmseg Config, one row per resolved key, one row per protocol setting) of an ADE20K
    config (``replicate/seg/explain.py``; needs the segmentation environment)."""
    from . import protocol
    from .seg.explain import PROTOCOL, explain_seg_config

    cfg, rows = explain_seg_config(path, overrides)
    return cfg, [Explained(**dataclasses.asdict(r)) for r in rows], \
        protocol_rows(protocol.get(PROTOCOL))


def _explain_seg(path: str | Path, overrides: Optional[Mapping[str, Any]]) -> str:
    from .seg.explain import PROTOCOL, SOURCES_LINE

    cfg, rows, prow = seg_rows(path, overrides)
    lines = [f"# {path}", f"# mmseg ADE20K config {cfg.get('name')} (paper "
             f"{cfg.get('paper')}, protocol {PROTOCOL}{', SMOKE' if cfg.get('smoke') else ''})"]
    if cfg.get("cell"):
        lines.append(f"# reproduces the published cell: {_cell_text(dict(cfg.cell))}")
    lines.append(SOURCES_LINE)
    return "\n".join(lines + _row_lines(rows, prow, PROTOCOL))
