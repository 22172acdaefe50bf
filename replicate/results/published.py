"""``papers/<p>/published.csv``: numbers as a paper prints them, one value per row.

Header (exactly these columns)::

    paper,table,page,backbone,method,benchmark,group,task,metric,value,source,note

* ``table``/``page``: where the value is printed (``page`` is a number, a range ``12-13``, or
  ``unknown`` when the page could not be established; the note then says why).
* ``benchmark``: a benchmark of ``replicate/benchmarks.py`` that is not a smoke one (``fgvc`` |
  ``vtab1k`` | ``ade20k``); ``metric``: its metric, ``top1`` (classification) or ``miou`` (ADE20K).
* ``task``: an entry of the benchmark's ``table_order`` (a dataset; ADE20K: ``miou_ss`` |
  ``miou_ms``); or an aggregate as printed: ``mean`` (FGVC AVG, VTAB overall AVG with ``group``
  empty), ``group_mean`` (VTAB, ``group`` = natural | specialized | structured).
* ``measured_by`` (optional 13th column): who measured the value, when not the paper itself.
* One row per printed cell: the same (paper, table, backbone, method, benchmark, group, task,
  metric) twice is an error.  The same cell printed in two tables (e.g. GateVPT's Table 4 repeats
  Table 1 cells) is allowed; :func:`cells` keeps one and the comparison checks they agree.

:func:`load_published` rejects a malformed file with ``<path> line <n>: <problem>; fix: ...``.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd

from .. import benchmarks
from ..benchmarks import AGGREGATES  # noqa: F401  (kept importable from here)

COLUMNS = ("paper", "table", "page", "backbone", "method", "benchmark", "group", "task",
           "metric", "value", "source", "note")
#: optional last column: the paper whose authors measured the value (e.g. ``vpt`` for a row
#: GateVPT copied from VPT with a dagger); empty or absent = the row's own paper.  It decides
#: under which protocol the row is reproduced and is shown per row in the comparison.
MEASURED_BY = "measured_by"
HEADER = COLUMNS  # alias
REQUIRED = ("paper", "table", "page", "backbone", "method", "benchmark", "task", "metric",
            "value", "source")
#: identity of a printed value (a duplicate of this key is an error)
ROW_KEY = ("paper", "table", "backbone", "method", "benchmark", "group", "task", "metric")
#: identity of a cell independent of the table it is printed in (the comparison joins on this)
CELL_KEY = ("backbone", "method", "benchmark", "group", "task", "metric")

#: kept for older imports: the built-in benchmarks' table orders (``replicate/benchmarks.py``)
FGVC_ORDER = benchmarks.get_benchmark("fgvc").table_order
ADE20K_TASKS = benchmarks.get_benchmark("ade20k").table_order

_IDENT = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_PAGE = re.compile(r"^(unknown|\d+(-\d+)?)$")


class PublishedError(ValueError):
    """A malformed published table; the message names the file, the line and the fix."""


def vtab_tasks() -> Dict[str, str]:
    """VTAB-1k task -> group, in VTAB's order (7 natural, 4 specialized, 8 structured)."""
    return {t: v.group for t, v in benchmarks.get_benchmark("vtab1k").tasks.items()}


def vtab_groups() -> Dict[str, Tuple[str, ...]]:
    return benchmarks.get_benchmark("vtab1k").groups


def fgvc_tasks() -> Tuple[str, ...]:
    """FGVC datasets in the papers' table order."""
    return benchmarks.get_benchmark("fgvc").table_order


def _check_row(row: Dict[str, str]) -> Optional[str]:
    """Problem with one row, or None."""
    for col in REQUIRED:
        if not row[col].strip():
            return f"empty required field '{col}'"
    for col in ("paper", "backbone", "method"):
        if not _IDENT.match(row[col]):
            return f"{col} '{row[col]}' is not a lower-case key like 'mae_vitb16'"
    if not _PAGE.match(row["page"]):
        return f"page '{row['page']}' must be a page number, a range like 12-13, or 'unknown'"
    try:
        v = float(row["value"])
    except ValueError:
        return f"value '{row['value']}' is not a number"
    if not math.isfinite(v):
        return f"value '{row['value']}' is not finite"
    bench, metric, group, task = row["benchmark"], row["metric"], row["group"], row["task"]
    b = benchmarks.find_benchmark(bench)
    if b is None or b.smoke:
        known = ", ".join(x.name for x in benchmarks.all_benchmarks(published=True))
        return f"unknown benchmark '{bench}' (known: {known})"
    if metric != b.metric:
        return f"unknown metric '{metric}' for {bench} (expected '{b.metric}')"
    if b.average == "groups":
        groups = sorted(b.groups)
        if task == "group_mean":
            if group not in groups:
                return f"group_mean needs group in {groups}, got '{group}'"
        elif task in ("mean", "mean_of_group_means"):
            if group:
                return f"{b.title} '{task}' rows have an empty group, got '{group}'"
        elif task in b.tasks:
            if group != b.group_of(task):
                return (f"{b.title} task '{task}' belongs to group '{b.group_of(task)}', "
                        f"got '{group}'")
        else:
            return f"unknown {b.title} task '{task}'"
        return None
    known = b.table_order + tuple(t for _, t, _ in b.aggregate_specs())
    if task not in known:
        return f"unknown {b.title} task '{task}' (known: {', '.join(known)})"
    if group and b.average == "mean":
        return f"{b.title} rows have an empty group, got '{group}'"
    return None


def load_published(path: Path, paper: Optional[str] = None) -> pd.DataFrame:
    """Read and validate a published table.  Returns one row per printed value with the
    columns of the file, ``value`` as float, ``value_text`` (as printed) and ``line``.
    A header-only file gives an empty frame with those columns.  ``paper``: when given, every
    row must belong to it."""
    path = Path(path)
    fix = f"fix {path} (format: replicate/results/published.py docstring)"
    if not path.is_file():
        raise PublishedError(f"{path}: published table not found; create it with the header "
                             f"{','.join(COLUMNS)} (rows may be empty)")
    rows: List[dict] = []
    seen: Dict[tuple, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise PublishedError(f"{path} line 1: empty file; expected the header "
                                 f"{','.join(COLUMNS)}") from None
        header = tuple(h.strip() for h in header)
        if header not in (COLUMNS, COLUMNS + (MEASURED_BY,)):
            missing = [c for c in COLUMNS if c not in header]
            extra = [c for c in header if c not in COLUMNS + (MEASURED_BY,)]
            raise PublishedError(
                f"{path} line 1: wrong columns (missing: {missing or '-'}, unexpected: "
                f"{extra or '-'}); the header must be exactly {','.join(COLUMNS)} "
                f"(optionally followed by {MEASURED_BY})")
        start = reader.line_num
        for fields in reader:
            line = start + 1
            start = reader.line_num
            if not fields or all(not x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise PublishedError(f"{path} line {line}: {len(fields)} fields, expected "
                                     f"{len(header)} (quote fields that contain commas); {fix}")
            row = {c: x.strip() for c, x in zip(header, fields)}
            row[MEASURED_BY] = row.get(MEASURED_BY) or row["paper"]
            problem = _check_row(row)
            if problem is None and not _IDENT.match(row[MEASURED_BY]):
                problem = f"{MEASURED_BY} '{row[MEASURED_BY]}' is not a lower-case paper key"
            if problem is None and paper is not None and row["paper"] != paper:
                problem = f"paper '{row['paper']}' in the table of paper '{paper}'"
            if problem:
                raise PublishedError(f"{path} line {line}: {problem}; {fix}")
            key = tuple(row[c] for c in ROW_KEY)
            if key in seen:
                raise PublishedError(f"{path} line {line}: duplicate cell "
                                     f"{dict(zip(ROW_KEY, key))} (first on line {seen[key]}); "
                                     f"keep one row per printed value")
            seen[key] = line
            row["value_text"] = row["value"]
            row["value"] = float(row["value"])
            row["line"] = line
            rows.append(row)
    cols = list(COLUMNS) + [MEASURED_BY, "value_text", "line"]
    df = pd.DataFrame(rows, columns=cols)
    df["value"] = df["value"].astype(float)
    df["line"] = df["line"].astype(int)
    return df


def cells(published: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (``CELL_KEY``): the first table that prints it, plus ``tables`` (all
    tables printing it, in file order) and ``values_agree`` (all those values equal)."""
    if published.empty:
        return published.assign(tables=pd.Series(dtype=str), values_agree=pd.Series(dtype=bool))
    out = []
    for _, g in published.groupby(list(CELL_KEY), sort=False):
        first = g.iloc[0].to_dict()
        first["tables"] = "; ".join(g["table"])
        first["values_agree"] = bool((g["value"] == first["value"]).all())
        out.append(first)
    return pd.DataFrame(out).reset_index(drop=True)
