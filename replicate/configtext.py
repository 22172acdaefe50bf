"""Where a config file sets a key, read from its text (``ast`` and ``tokenize``, never executed).

``python -m replicate explain`` shows each resolved value beside the file, line and comment that
set it; the experiment explainer (``replicate/explain.py``) and the mmseg one
(``replicate/seg/explain.py``) share these readers.  Torch-free, imports nothing of the package.
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
from typing import Dict, List, Optional, Tuple

#: a comment that cites the paper (a table, section, appendix, figure, equation, arXiv id)
CITES_PAPER = re.compile(r"\b(Table|Tab\.|Sec\.|Section|App\.|Appendix|Fig\.|Eq\.|arXiv)",
                         re.IGNORECASE)


@dataclass(frozen=True)
class Setting:
    """Where a config file sets a key: file, line and the comment on (or above) that line."""
    file: Path
    line: int
    comment: str = ""


def comments(text: str) -> Dict[int, str]:
    """line number -> comment text (without '#') of ``text``."""
    out: Dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def base_strings(tree: ast.Module) -> List[str]:
    """The entries of a module's ``_base_`` assignment as written (``[]`` when none)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_"
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            items = [value] if isinstance(value, str) else list(value)
            return [b for b in items if isinstance(b, str)]
    return []


def bases(tree: ast.Module, path: Path) -> List[Path]:
    """The local ``_base_`` files of ``path`` (an external ``pkg::`` base is not a path)."""
    return [(path.parent / b).resolve() for b in base_strings(tree) if "::" not in b]


def external_bases(path: Path) -> List[str]:
    """The ``pkg::relative/path.py`` bases anywhere in the local ``_base_`` chain of ``path``
    (e.g. ``mmseg::setr/...``: a config that inherits an installed package's config)."""
    out: List[str] = []
    seen: set = set()

    def visit(p: Path) -> None:
        if p in seen or not p.is_file():
            return
        seen.add(p)
        try:
            tree = ast.parse(p.read_text(), filename=str(p))
        except SyntaxError:
            return
        out.extend(b for b in base_strings(tree) if "::" in b)
        for b in bases(tree, p):
            visit(b)
    visit(Path(path).resolve())
    return out


def dict_items(node: ast.AST) -> Optional[List[Tuple[str, ast.AST]]]:
    """(key, value node) of a ``dict(k=v, ...)`` call or a ``{'k': v}`` literal; None otherwise."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return [(kw.arg, kw.value) for kw in node.keywords if kw.arg is not None]
    if isinstance(node, ast.Dict):
        return [(k.value, v) for k, v in zip(node.keys, node.values)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return None


def comment_for(notes: Dict[int, str], value: ast.AST, first_line: int) -> str:
    """The comment at the end of ``value``'s last line, else the full-line comments just above
    it inside the same statement (``first_line`` is the statement's first line)."""
    end = getattr(value, "end_lineno", value.lineno)
    if end in notes:
        return notes[end]
    above, line = [], value.lineno - 1
    while line > first_line and line in notes:
        above.insert(0, notes[line])
        line -= 1
    return " ".join(above)


def nested_settings(path: Path) -> Dict[str, Setting]:
    """Dotted key -> where ``path`` itself (not its bases) writes it, for every top-level
    assignment and every key of the ``dict(...)`` / ``{...}`` literals nested in it.  A key set
    through a variable (``model = dict(data_preprocessor=data_preprocessor)``) is found at the
    line that names the variable; look keys up by their longest dotted prefix."""
    text = Path(path).read_text()
    tree = ast.parse(text, filename=str(path))
    notes = comments(text)
    lines = text.splitlines()
    # only full-line comments speak for the key below them (a trailing one is its own line's)
    full = {n: c for n, c in notes.items() if lines[n - 1].lstrip().startswith("#")}
    out: Dict[str, Setting] = {}

    def walk(prefix: str, value: ast.AST, first: int) -> None:
        end = getattr(value, "end_lineno", value.lineno)
        note = notes[end] if end in notes else comment_for(full, value, first)
        out[prefix] = Setting(Path(path), value.lineno, note)
        for key, sub in dict_items(value) or []:
            walk(f"{prefix}.{key}", sub, first)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id != "_base_":
                    walk(target.id, node.value, node.lineno)
    return out


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


def rel(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
