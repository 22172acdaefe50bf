"""The package's import layers: no import cycle in ``replicate/``, and planning, config loading
and result collection import neither torch nor timm.

The cycle check reads every module's source with ``ast`` (module-level and function-level
imports, relative ones resolved), so an import hidden inside a function counts as much as one at
the top.  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``.  Importing a submodule also runs its package's ``__init__``; that implicit edge is not
counted (every ``__init__`` that imports its submodules would otherwise be a cycle).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "replicate"

#: cycles known to remain, each as the sorted list of its modules (empty: none may exist)
ALLOWED_CYCLES: List[List[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str, mods: Dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a module of the package ('' if none)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str, path: Path, mods: Dict[str, Path]) -> Set[str]:
    """Package modules imported anywhere in ``path`` (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(_known(a.name, mods) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for a in node.names:
                sub = f"{origin}.{a.name}"
                out.add(sub if sub in mods else _known(origin, mods))
    out.discard("")
    out.discard(name)
    return out


def import_graph() -> Dict[str, Set[str]]:
    mods = modules()
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_cycle():
    # the checker itself: a two-module and a three-module cycle are found, a chain is not
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_function_level_and_relative_imports_are_edges(tmp_path):
    mods = {"replicate": PACKAGE / "__init__.py", "replicate.x": tmp_path / "x.py",
            "replicate.y": tmp_path / "y.py", "replicate.pkg": tmp_path / "pkg" / "__init__.py",
            "replicate.pkg.z": tmp_path / "pkg" / "z.py"}
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from .y import thing\n    from .pkg import z\n")
    assert imports_of("replicate.x", src, mods) == {"replicate.y", "replicate.pkg.z"}
    init = tmp_path / "pkg" / "__init__.py"
    init.parent.mkdir()
    init.write_text("from ..x import f\nfrom . import z\n")
    assert imports_of("replicate.pkg", init, mods) == {"replicate.x", "replicate.pkg.z"}


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 50, "the walk found too few modules"
    got = cycles(graph)
    unexpected = [c for c in got if c not in ALLOWED_CYCLES]
    msgs = []
    for comp in unexpected:
        edges = "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(comp)))}" for m in comp)
        msgs.append(f"import cycle among {len(comp)} modules: {edges}")
    assert not unexpected, "\n".join(msgs)
    stale = [c for c in ALLOWED_CYCLES if c not in got]
    assert not stale, f"allowed cycles no longer present (remove them from ALLOWED_CYCLES): {stale}"


# --------------------------------------------------------------------------- torch-free planning
_PLANNING = r"""
import json, sys
from pathlib import Path

import replicate.sweep as sweep
from replicate import config, stages
from replicate.results import aggregate, collect, compare, load_published

repo, runs_root = Path(sys.argv[1]), sys.argv[2]
pinned, search = json.loads(sys.argv[3]), json.loads(sys.argv[4])
n = {"pinned": 0, "search": 0}
for rel in pinned:
    n["pinned"] += len(sweep.plan_pinned([config.load(repo / rel)], runs_root))
for rel in search:
    n["search"] += len(sweep.plan_search([config.load(repo / rel)], runs_root))
sel = [pinned[0].split("configs/pinned/", 1)[1]]  # the stage layer: runs and status lines
n["stage"] = len(stages.stage_runs("gatevpt", "pinned", runs_root, sel)[0])
n["status"] = list(stages.status_lines("gatevpt", "pinned", runs_root, sel))
for paper in ("gatevpt", "lspt", "vptm"):
    runs = collect(Path(runs_root), paper)
    cells = aggregate(runs)
    published = load_published(repo / "papers" / paper / "published.csv", paper)
    compare(cells, published, paper)
n["heavy"] = sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)
print(json.dumps(n))
"""


def _pick(paper: str, mode: str, pattern: str) -> str:
    found = sorted((REPO / "papers" / paper / "configs" / mode).glob(pattern))
    found = [p for p in found if "_base_" not in p.parts]
    assert found, f"no committed config papers/{paper}/configs/{mode}/{pattern}"
    return str(found[0].relative_to(REPO))


def test_planning_config_and_results_import_no_torch(tmp_path):
    """Loading committed configs, planning pinned and search runs, a stage's runs and status
    (replicate/stages.py), and collecting, aggregating and comparing (here on an empty runs
    root) never import torch or timm: planning runs on a login node without the training stack
    loaded."""
    pinned = [_pick("gatevpt", "pinned", "fgvc/*/*.py"), _pick("gatevpt", "pinned", "vtab1k/*/*.py"),
              _pick("lspt", "pinned", "fgvc/*/*.py"), _pick("lspt", "pinned", "vtab1k/*/*.py")]
    search = [_pick("gatevpt", "search", "fgvc/*/gatevpt/*.py"),
              _pick("vptm", "search", "vtab1k/*/vptm/*.py"),
              _pick("vptm", "search", "fgvc/*/vpt_deep/*.py")]
    runs_root = tmp_path / "runs"
    runs_root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSTARTUP",)}
    env.setdefault("DATA_ROOT", str(tmp_path / "data"))
    env.setdefault("CKPT_ROOT", str(tmp_path / "ckpt"))
    proc = subprocess.run([sys.executable, "-c", _PLANNING, str(REPO), str(runs_root),
                           json.dumps(pinned), json.dumps(search)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["pinned"] >= len(pinned) and got["search"] > len(search), got
    assert got["stage"] >= 1 and len(got["status"]) == 1, got
    assert got["heavy"] == [], f"planning imported {got['heavy']}"
