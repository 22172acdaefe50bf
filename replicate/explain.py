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
and :mod:`tokenize` (the files are not executed again); the values themselves are those of the
loaded, validated :class:`~replicate.config.Experiment`.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

#: a comment that cites the paper (a table, section, appendix, figure, equation, arXiv id)
_CITES_PAPER = re.compile(r"\b(Table|Tab\.|Sec\.|Section|App\.|Appendix|Fig\.|Eq\.|arXiv)",
                          re.IGNORECASE)
_SECTIONS = ("backbone", "method", "data", "optim", "train")


@dataclass(frozen=True)
class Setting:
    """Where a config file sets a key: file, line and the comment on (or above) that line."""
    file: Path
    line: int
    comment: str = ""


@dataclass(frozen=True)
class Explained:
    key: str
    value: Any
    #: assumed | paper | config | protocol | default
    source: str
    detail: str
    where: str = ""


# --------------------------------------------------------------------------- config files
def _comments(text: str) -> Dict[int, str]:
    """line number -> comment text (without '#') of ``text``."""
    out: Dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def _bases(tree: ast.Module, path: Path) -> List[Path]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_"
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            items = [value] if isinstance(value, str) else list(value)
            return [(path.parent / b).resolve() for b in items if isinstance(b, str)]
    return []


def _dict_items(node: ast.AST) -> Optional[List[Tuple[str, ast.AST]]]:
    """(key, value node) of a ``dict(k=v, ...)`` call or a ``{'k': v}`` literal; None otherwise."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return [(kw.arg, kw.value) for kw in node.keywords if kw.arg is not None]
    if isinstance(node, ast.Dict):
        return [(k.value, v) for k, v in zip(node.keys, node.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return None


def _comment_for(comments: Dict[int, str], value: ast.AST, first_line: int) -> str:
    """The comment at the end of ``value``'s last line, else the full-line comments just above
    it inside the same statement (``first_line`` is the statement's first line)."""
    end = getattr(value, "end_lineno", value.lineno)
    if end in comments:
        return comments[end]
    above, line = [], value.lineno - 1
    while line > first_line and line in comments:
        above.insert(0, comments[line])
        line -= 1
    return " ".join(above)


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


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- dataclass docs
@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> Dict[str, str]:
    """Field name -> its ``#:`` documentation comment in the class body (base classes first)."""
    out: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: List[str] = []
        for raw in src.splitlines():
            line = raw.strip()
            if line.startswith("#:"):
                pending.append(line[2:].strip())
                continue
            m = re.match(r"([A-Za-z_]\w*)\s*:", line)
            if m and pending:
                out[m.group(1)] = " ".join(pending)
            if not line.startswith("#"):
                pending = []
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
    prow: List[Explained] = []
    fields = ("description", "benchmark", "search_train", "search_eval", "final_train",
              "report", "lr_grid", "wd_grid", "lr_scaling", "selection", "tie_break", "seeds",
              "precision", "tolerance", "measured_by")
    for name in fields:
        value = getattr(proto, name)
        value = list(value) if isinstance(value, tuple) else value
        if name == "seeds" and exp.seeds:
            prow.append(Explained(f"protocol.{name}", value, "config",
                                  f"the config's seeds {list(exp.seeds)} replace these"))
        elif name in proto.assumed:
            prow.append(Explained(f"protocol.{name}", value, "assumed", proto.assumed[name]))
        elif name == "measured_by" and value:
            from .results.compare import measured_under
            prow.append(Explained(f"protocol.{name}", value, "protocol",
                                  f"protocol {proto.id}: published numbers measured by "
                                  f"{measured_under(value)}"))
        else:
            prow.append(Explained(f"protocol.{name}", value, "protocol", f"protocol {proto.id}"))
    return exp, rows, prow


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
    """The text ``python -m replicate explain`` prints for ``path``."""
    from . import config

    if overrides_items:
        overrides = {**(overrides or {}), **config.parse_overrides(overrides_items)}
    exp, rows, prow = explain_rows(path, overrides)
    lines = [f"# {path}", f"# experiment {exp.name} (paper {exp.paper}, protocol {exp.protocol}"
             f"{', SMOKE' if exp.smoke else ''})"]
    if exp.cell:
        lines.append(f"# reproduces the published cell: {_cell_text(exp.cell)}")
    lines.append("# sources: paper (the file cites the paper, or the published cell) | assumed "
                 "(with its reason) | config | protocol | default")
    lines.append("")
    for r in rows + [None] + prow:  # type: ignore[operator]
        if r is None:
            lines += ["", f"# protocol {exp.protocol} (replicate/protocol.py)"]
            continue
        lines.append(f"{r.key} = {r.value!r}")
        lines.append(f"    [{r.source}] {r.detail}" + (f"  ({r.where})" if r.where else ""))
    return "\n".join(lines)
