"""Reproduced cells vs published cells: Δ and a status per cell (docs/contributing.md, 'Reporting
rule').

Status of a (stage, backbone, method, benchmark, group, task, metric) cell:

* ``smoke``: some record of the cell is a smoke run (tiny model/data): never counted as
  reproduced, whatever Δ is.
* ``reproduced``: |Δ| <= max(tolerance, 2 * std over seeds), Δ = reproduced mean - published;
  tolerance from the records' protocol (``replicate.protocol.get(pid).tolerance``: 0.5 per FGVC
  dataset, 1.0 per VTAB-1k task; ADE20K 1.0 mIoU), else the benchmark's own
  (``replicate/benchmarks.py`` ``Benchmark.tolerance``) when no protocol is registered.
* ``not reproduced``: otherwise.
* ``missing``: a published cell without runs (or a group mean whose member tasks are not all run).
* ``reproduced-only``: runs, but the paper prints no number for this cell although it reports
  this method on this benchmark (e.g. per-task VTAB-1k: GateVPT prints only group means).
* ``published value unavailable``: the paper has no published number for this method on this
  benchmark at all (LSPT's and VPTM's own methods: their tables are in no available source),
  with the reason.

:func:`check_published` verifies that the aggregates printed in a published table follow from its
per-task values (FGVC AVG = mean of 5; VTAB AVG = (7*Nat + 4*Spec + 8*Struct)/19) and that a
cell printed in two tables has one value.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Tuple

import numpy as np
import pandas as pd

from .. import benchmarks, papers
from .. import protocol as protocols
from .aggregate import sort_cells
from .published import CELL_KEY, cells

#: tolerance of a benchmark that is not registered (and no protocol in its records)
FALLBACK_TOLERANCE = 1.0

STATUSES = ("reproduced", "not reproduced", "missing", "reproduced-only",
            "published value unavailable", "smoke")

COLUMNS = ["stage", "backbone", "method", "benchmark", "group", "task", "metric", "kind",
           "table", "published", "published_text", "mean", "std", "min", "max", "n", "delta",
           "tolerance", "tolerance_source", "threshold", "status", "reason", "cell_note",
           "measured_by", "protocol", "precision", "smoke"]


def measured_under(key: str) -> str:
    """Who measured a published value (published.csv ``measured_by``) and under which
    protocol, in words: each paper folder's ``MEASURED_BY`` (paper.py), merged."""
    return papers.measured_by_texts().get(key, key)


#: a paper's title, reconstruction status, own methods, ... read from ``papers/<p>/paper.py``
PaperInfo = papers.PaperInfo


def paper_info(paper: str) -> PaperInfo:
    """The metadata of ``paper`` discovered under the papers root (``$REPLICATE_PAPERS``);
    defaults for a key without a folder."""
    return papers.info(paper)


def tolerance_for(protocol_ids: str, benchmark: str) -> Tuple[float, str]:
    """(tolerance, where it comes from) for a cell whose records carry ``protocol_ids``
    (';'-joined).  Mixed protocols take the strictest tolerance."""
    found = []
    unknown = []
    for pid in [p for p in str(protocol_ids or "").split(";") if p]:
        try:
            found.append((protocols.get(pid).tolerance, pid))
        except KeyError:
            unknown.append(pid)
    if found:
        tol, pid = min(found)
        return tol, f"protocol {pid}"
    bench = benchmarks.find_benchmark(benchmark)
    tol = bench.tolerance if bench is not None else FALLBACK_TOLERANCE
    why = f"protocol {'/'.join(unknown)} not registered" if unknown else "no protocol in records"
    return tol, f"benchmark default ({why})"


def _num(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and np.isnan(x)) else np.nan


def _is_own(method: str, info: PaperInfo) -> bool:
    return info.is_own(method)


def compare(reproduced: pd.DataFrame, published: pd.DataFrame, paper: str) -> pd.DataFrame:
    """Join reproduced cells (:func:`aggregate.aggregate` output) with published rows
    (:func:`published.load_published` output) of ``paper``; one row per stage and cell."""
    info = paper_info(paper)
    pub = cells(published[published["paper"] == paper]) if not published.empty else published
    pub_map = {tuple(r[c] for c in CELL_KEY): r for _, r in pub.iterrows()}
    pub_triples = {(k[0], k[1], k[2]) for k in pub_map}
    rep = reproduced[reproduced["paper"] == paper] if not reproduced.empty else reproduced
    stages = sorted(rep["stage"].unique()) if not rep.empty else [""]
    rows = []
    for stage in stages:
        rs = rep[rep["stage"] == stage] if not rep.empty else rep
        rep_map = {tuple(r[c] for c in CELL_KEY): r for _, r in rs.iterrows()}
        for key in list(pub_map) + [k for k in rep_map if k not in pub_map]:
            p, r = pub_map.get(key), rep_map.get(key)
            if p is None and not bool(r["complete"]):
                continue  # an incomplete aggregate nobody printed: only in reproduced.csv
            rows.append(_row(stage, key, p, r, info, (key[0], key[1], key[2]) in pub_triples,
                             pub.empty))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["paper"] = paper
    df = sort_cells(df)
    return df[COLUMNS]


def _row(stage: str, key: tuple, p, r, info: PaperInfo, method_published: bool,
         table_empty: bool) -> dict:
    backbone, method, bench, group, task, metric = key
    row = dict(zip(CELL_KEY, key))
    row.update({"stage": stage, "kind": r["kind"] if r is not None else _kind(task),
                "table": p["tables"] if p is not None else "",
                "published": _num(p["value"]) if p is not None else np.nan,
                "published_text": p["value_text"] if p is not None else "",
                "mean": np.nan, "std": np.nan, "min": np.nan, "max": np.nan, "n": 0,
                "delta": np.nan, "tolerance": np.nan, "tolerance_source": "",
                "threshold": np.nan,
                "measured_by": p.get("measured_by", "") if p is not None else "",
                "protocol": "", "precision": "", "smoke": False, "reason": "",
                "cell_note": r["note"] if r is not None else ""})
    if r is not None:
        row.update({k: _num(r[k]) for k in ("mean", "std", "min", "max")})
        row.update({"n": int(r["n"]), "protocol": r["protocol"], "smoke": bool(r["smoke"]),
                    "precision": r.get("precision", "")})
    have_runs = r is not None and bool(r["complete"]) and not np.isnan(row["mean"])
    if p is not None and have_runs:
        row["delta"] = row["mean"] - row["published"]
    if have_runs:
        tol, src = tolerance_for(r["protocol"], bench)
        std = row["std"] if not np.isnan(row["std"]) else 0.0
        row.update({"tolerance": tol, "tolerance_source": src,
                    "threshold": max(tol, 2.0 * std)})
    if p is not None and not have_runs:
        # an aggregate whose members are not all run has no number, smoke or not
        row["status"] = "missing"
        row["reason"] = (r["note"] if r is not None and r["note"] else "no finished runs")
        if r is not None and row["smoke"]:
            row["reason"] += " (the runs there are smoke runs)"
    elif row["smoke"]:
        row["status"] = "smoke"
        row["reason"] = "smoke run(s) (tiny model or data): never a reproduction"
    elif p is not None:
        ok = abs(row["delta"]) <= row["threshold"] + 1e-9
        row["status"] = "reproduced" if ok else "not reproduced"
        row["reason"] = (f"|Δ| {'<=' if ok else '>'} max(tol {row['tolerance']:g} ({src}), "
                         f"2·std {2 * (row['std'] if not np.isnan(row['std']) else 0):.2f})")
    elif not method_published or table_empty:
        row["status"] = "published value unavailable"
        row["reason"] = (info.unavailable_reason if (_is_own(method, info) or table_empty)
                         and info.unavailable_reason else
                         f"{info.key}'s published tables have no {method} row for {backbone} "
                         f"on {bench}")
    else:
        row["status"] = "reproduced-only"
        b = benchmarks.find_benchmark(bench)
        if b is not None and b.groups and row["kind"] == "task":
            row["reason"] = (f"the paper prints {b.title} only per group; per-task value is "
                             f"ours only")
        elif b is not None and task == "mean_of_group_means":
            row["reason"] = (f"not printed: the paper's {b.title} AVG is the {len(b.tasks)}-task "
                             f"mean ('mean')")
        else:
            row["reason"] = "the paper prints no value for this cell"
    return row


def _kind(task: str) -> str:
    return task if task in ("group_mean", "mean", "mean_of_group_means") else "task"


# ------------------------------------------------------------------ published consistency
def _half_unit(text: str) -> float:
    """Half a unit of the last printed digit: the rounding slack of a printed value."""
    exp = Decimal(text.strip()).as_tuple().exponent
    return 0.5 * 10.0 ** int(exp) if isinstance(exp, int) else 0.005


CHECK_COLUMNS = ["check", "paper", "table", "backbone", "method", "inputs", "computed",
                 "printed", "printed_text", "diff", "allowed", "ok", "informational"]


def check_published(published: pd.DataFrame) -> pd.DataFrame:
    """Consistency of a published table with itself; one row per check.

    * FGVC (per table, backbone, method with all 5 datasets and the AVG): mean of the 5 vs the
      printed AVG.
    * VTAB-1k with per-task values: each group mean vs the mean of its tasks.
    * VTAB-1k (all 3 group means and the AVG printed): (7*Nat + 4*Spec + 8*Struct)/19 vs the
      printed AVG, and - informational, to show which mean the paper used - the mean of the
      three group means vs the printed AVG.
    * A cell printed in several tables: all its values equal.

    ``ok`` compares within ``allowed`` = half a unit of the printed AVG's last digit (it is
    rounded).  Informational rows never count as failures."""
    out = []
    if published.empty:
        return pd.DataFrame(out, columns=CHECK_COLUMNS)
    for (paper, table, backbone, method), g in published.groupby(
            ["paper", "table", "backbone", "method"], sort=False):
        for bench in benchmarks.all_benchmarks(published=True):
            sub = g[g["benchmark"] == bench.name]
            if not sub.empty:
                out += _check_bench(bench, sub, paper, table, backbone, method)
    for key, g in published.groupby(["paper"] + list(CELL_KEY), sort=False):
        if len(g) > 1:
            first = g.iloc[0]
            vals = g["value"].tolist()
            where = " ".join(x for x in (key[3], key[4], key[5]) if x)
            out.append({"check": f"{where} printed in {len(g)} tables has one value",
                        "paper": key[0], "table": "; ".join(g["table"]),
                        "backbone": key[1], "method": key[2],
                        "inputs": " ".join(g["value_text"]), "computed": float(max(vals)),
                        "printed": float(first["value"]), "printed_text": first["value_text"],
                        "diff": float(max(vals) - min(vals)), "allowed": 0.0,
                        "ok": max(vals) == min(vals), "informational": False})
    return pd.DataFrame(out, columns=CHECK_COLUMNS)


def _check_bench(bench: benchmarks.Benchmark, g: pd.DataFrame, paper: str, table: str,
                 backbone: str, method: str) -> list:
    """The aggregate checks of one benchmark's rows of one (table, backbone, method)."""
    out = []
    title = bench.title
    if bench.average == "mean":
        fg = g.set_index("task")
        order = bench.table_order
        if "mean" in fg.index and len(order) > 1 and all(t in fg.index for t in order):
            rows = [fg.loc[t] for t in order]
            out.append(_check(f"{title} AVG = mean of {len(order)} datasets", paper, table,
                              backbone, method, rows,
                              float(np.mean([r["value"] for r in rows])), fg.loc["mean"]))
    if bench.average != "groups":
        return out
    groups = bench.groups
    gm = g[g["task"] == "group_mean"].set_index("group")
    for grp, members in groups.items():
        tv = g[(g["group"] == grp) & g["task"].isin(members)].set_index("task")
        if grp in gm.index and len(tv) == len(members):
            rows = [tv.loc[t] for t in members]
            out.append(_check(f"{title} {grp} = mean of its {len(members)} tasks", paper,
                              table, backbone, method, rows,
                              float(np.mean([r["value"] for r in rows])), gm.loc[grp]))
    avg = g[g["task"] == "mean"]
    if len(avg) == 1 and all(grp in gm.index for grp in groups):
        rows = [gm.loc[grp] for grp in groups]
        vals = [r["value"] for r in rows]
        sizes = [len(groups[grp]) for grp in groups]
        w = float(np.dot(vals, sizes) / sum(sizes))
        label = " + ".join(f"{s}·{grp.capitalize()}" for s, grp in zip(sizes, groups))
        out.append(_check(f"{title} AVG = ({label})/{sum(sizes)} ({sum(sizes)}-task mean)",
                          paper, table, backbone, method, rows, w, avg.iloc[0]))
        out.append(_check(f"{title} AVG vs mean of the {len(groups)} group means (which mean "
                          f"the paper used)", paper, table, backbone, method, rows,
                          float(np.mean(vals)), avg.iloc[0], informational=True))
    return out


def _check(name, paper, table, backbone, method, member_rows, computed, printed_row,
           informational: bool = False) -> dict:
    printed = float(printed_row["value"])
    allowed = _half_unit(printed_row["value_text"])
    diff = computed - printed
    return {"check": name, "paper": paper, "table": table, "backbone": backbone,
            "method": method, "inputs": " ".join(r["value_text"] for r in member_rows),
            "computed": computed, "printed": printed, "printed_text": printed_row["value_text"],
            "diff": diff, "allowed": allowed,
            "ok": bool(abs(diff) <= allowed + 1e-9), "informational": informational}


def vtab_mean_rule(checks: pd.DataFrame) -> str:
    """One sentence per benchmark averaged over groups (VTAB-1k): which mean the printed AVGs
    follow."""
    if checks.empty:
        return ""
    out = []
    for b in benchmarks.all_benchmarks(published=True):
        if b.average != "groups":
            continue
        groups, n = b.groups, len(b.tasks)
        w = checks[checks["check"].str.startswith(f"{b.title} AVG = (")]
        u = checks[checks["check"].str.startswith(f"{b.title} AVG vs mean of the {len(groups)}")]
        if w.empty:
            continue
        label = " + ".join(f"{len(ts)}·{g.capitalize()}" for g, ts in groups.items())
        count = {2: "two", 3: "three", 4: "four"}.get(len(groups), str(len(groups)))
        out.append(f"The printed {b.title} AVG is the mean over the {n} tasks: "
                   f"({label})/{n} matches {int(w['ok'].sum())} of "
                   f"{len(w)} printed AVGs, the mean of the {count} group means matches "
                   f"{int(u['ok'].sum())} of {len(u)}. Our 'mean' row is the {n}-task mean; "
                   f"'mean_of_group_means' is given beside it.")
    return " ".join(out)
