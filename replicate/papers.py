"""Papers as plug-ins: each folder under the papers root is a paper, described by its own
``paper.py``.

A paper is a folder ``<papers root>/<key>/`` (the root is ``papers/`` of this checkout, or
``$REPLICATE_PAPERS``) holding ``configs/`` and/or ``paper.py``.  ``paper.py`` holds plain
constants only (no imports, no code), so it is read here with :mod:`ast` -- never executed,
never importing torch -- and everything the harness knows about a paper comes from it:

=====================  ===================================================================
``TITLE``              full title shown on the report
``RECONSTRUCTION``     True: the implementation is reconstructed from incomplete sources
``STATUS_NOTE``        stated at the top of the report (what the published numbers are)
``UNAVAILABLE_REASON`` why the paper's own methods have no published value ('' = they have)
``OWN_METHODS``        method labels (prefixes: ``lspt`` covers ``lspt_*``) that are its own
``DEFAULT_MODE``       what ``make plan-<key>`` / ``reproduce`` run without MODE / --mode:
                       pinned | search | smoke
``BUILDS_ON``          key of the paper whose method this one extends ('' = none); its
                       reproduced and published numbers are shown beside this paper's
``BASELINE_METHOD``    that paper's method shown beside (default: ``BUILDS_ON``)
``MEASURED_BY``        published.csv ``measured_by`` key -> who measured and under which
                       protocol, in words (keys of any paper are valid everywhere)
=====================  ===================================================================

Every constant is optional; a folder without ``paper.py`` is a paper with the defaults
(title = key, own method = key, default mode = the first of pinned, search, smoke it has
configs for).  Unknown names, wrong types and code are errors naming the file and the fix.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
#: the file each paper folder describes itself in
METADATA_FILE = "paper.py"
MODES = ("pinned", "search", "smoke")


class PaperError(ValueError):
    """A paper folder's ``paper.py`` is malformed, or a paper key is unknown."""


@dataclass(frozen=True)
class PaperInfo:
    key: str
    title: str
    #: the implementation is reconstructed from incomplete sources (no paper text / code)
    reconstruction: bool = False
    #: stated at the top of the report
    status_note: str = ""
    #: why the paper's own methods have no published value (empty: they have one)
    unavailable_reason: str = ""
    #: method labels (prefixes) that are the paper's own methods
    own_methods: Tuple[str, ...] = ()
    #: pinned | search | smoke: the mode run when none is given
    default_mode: str = "pinned"
    #: the paper whose method this one extends ('' = none), shown beside it in the report
    builds_on: str = ""
    #: that paper's method shown beside this paper's (default: builds_on)
    baseline_method: str = ""
    #: published.csv measured_by key -> who measured it, under which protocol
    measured_by: Mapping[str, str] = field(default_factory=dict)
    #: the paper folder (None for a key without a folder)
    folder: Optional[Path] = None

    def is_own(self, method: str) -> bool:
        """``method`` is one of this paper's own methods (a label or ``<label>_<variant>``)."""
        return any(method == p or method.startswith(p + "_") for p in self.own_methods)


#: constant name -> (PaperInfo field, accepted python types, what to write)
_FIELDS: Dict[str, Tuple[str, tuple, str]] = {
    "TITLE": ("title", (str,), "a string"),
    "RECONSTRUCTION": ("reconstruction", (bool,), "True or False"),
    "STATUS_NOTE": ("status_note", (str,), "a string"),
    "UNAVAILABLE_REASON": ("unavailable_reason", (str,), "a string"),
    "OWN_METHODS": ("own_methods", (tuple, list), "a tuple of method labels"),
    "DEFAULT_MODE": ("default_mode", (str,), f"one of {', '.join(MODES)}"),
    "BUILDS_ON": ("builds_on", (str,), "a paper key (a folder name) or ''"),
    "BASELINE_METHOD": ("baseline_method", (str,), "a method label"),
    "MEASURED_BY": ("measured_by", (dict,), "a dict {measured_by key: description}"),
}


def papers_root() -> Path:
    """papers/ of this checkout; REPLICATE_PAPERS points elsewhere (tests, private papers)."""
    return Path(os.environ.get("REPLICATE_PAPERS") or (REPO / "papers"))


def _constants(path: Path) -> Dict[str, Any]:
    """NAME -> literal value of ``path``'s top-level assignments (a docstring is allowed)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise PaperError(f"{path}:{e.lineno}: not valid python ({e.msg}); fix the file") from None
    out: Dict[str, Any] = {}
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # module docstring
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else getattr(node, "target", None) if isinstance(node, ast.AnnAssign) else None
        if not isinstance(target, ast.Name) or node.value is None:
            raise PaperError(f"{path}:{node.lineno}: {METADATA_FILE} holds plain constants only "
                             f"(NAME = literal); move code elsewhere")
        try:
            out[target.id] = ast.literal_eval(node.value)
        except ValueError:
            raise PaperError(f"{path}:{node.lineno}: '{target.id}' must be a literal (string, "
                             f"number, bool, tuple, dict), not an expression") from None
    return out


def _default_mode(folder: Path) -> str:
    have = [m for m in MODES if (folder / "configs" / m).is_dir()]
    return have[0] if have else "pinned"


def read_info(folder: Path) -> PaperInfo:
    """The :class:`PaperInfo` of one paper folder (defaults where ``paper.py`` is silent)."""
    folder = Path(folder)
    key = folder.name
    values: Dict[str, Any] = {"title": key, "own_methods": (key,),
                              "default_mode": _default_mode(folder)}
    meta = folder / METADATA_FILE
    if meta.is_file():
        for name, value in _constants(meta).items():
            if name not in _FIELDS:
                raise PaperError(f"{meta}: unknown constant '{name}'; allowed: "
                                 f"{', '.join(_FIELDS)} (replicate/papers.py documents each)")
            attr, types, want = _FIELDS[name]
            if not isinstance(value, types) or (name == "DEFAULT_MODE" and value not in MODES) \
                    or (name == "OWN_METHODS" and not all(isinstance(m, str) for m in value)):
                raise PaperError(f"{meta}: {name} = {value!r} is invalid: it must be {want}")
            values[attr] = tuple(value) if name == "OWN_METHODS" else value
    if values.get("builds_on") and not values.get("baseline_method"):
        values["baseline_method"] = values["builds_on"]
    return PaperInfo(key=key, folder=folder, **values)


def known(root: Optional[Path] = None) -> List[str]:
    """Paper keys: folders under the papers root holding ``configs/`` or ``paper.py``."""
    root = Path(root or papers_root())
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and ((p / "configs").is_dir() or (p / METADATA_FILE).is_file()))


def discover(root: Optional[Path] = None) -> Dict[str, PaperInfo]:
    """Key -> :class:`PaperInfo` of every paper under the papers root."""
    root = Path(root or papers_root())
    return {k: read_info(root / k) for k in known(root)}


def info(key: str, root: Optional[Path] = None) -> PaperInfo:
    """The paper ``key``'s metadata; a key without a folder (e.g. 'demo') gets the defaults."""
    folder = Path(root or papers_root()) / key
    if folder.is_dir():
        return read_info(folder)
    return PaperInfo(key=key, title=key, own_methods=(key,))


def require(key: str, root: Optional[Path] = None) -> PaperInfo:
    """Like :func:`info`, but an unknown key is an error listing the known papers."""
    have = known(root)
    if key not in have:
        raise PaperError(f"unknown paper '{key}': known papers are {', '.join(have) or '(none)'} "
                         f"(folders under {Path(root or papers_root())} with configs/ or "
                         f"{METADATA_FILE}); pass one with --paper")
    return info(key, root)


def measured_by_texts(root: Optional[Path] = None) -> Dict[str, str]:
    """Every paper's ``MEASURED_BY`` entries merged (a key means the same in every table)."""
    out: Dict[str, str] = {}
    for p in discover(root).values():
        out.update(p.measured_by)
    return out


def paper_folder_of(config: Path) -> Optional[Path]:
    """The paper folder a config file lies in: the parent of its nearest ``configs`` ancestor
    (None when the file is not under a ``configs`` folder)."""
    for parent in Path(config).resolve().parents:
        if parent.name == "configs":
            return parent.parent
    return None
