"""Aggregate collected runs over seeds, and compute group means the way the papers do.

Per cell (paper, stage, backbone, method, benchmark, group, task, metric): mean, sample std
(ddof=1; 0 for one seed), min, max, n over seeds, plus the commits, environments, devices (GPU
type), protocol ids, trainable-parameter counts and selected epochs of its records, and
whether any record is a smoke run.

Aggregates (``kind`` column), as each benchmark's ``average`` in ``replicate/benchmarks.py``
says, each only when every member task has runs (else a row with ``complete=False``, no
numbers, and the missing members in ``note``):

* FGVC ``mean`` = mean of the 5 dataset means (GateVPT/VPT Table 1 AVG).
* VTAB-1k ``group_mean`` = mean of the task means of the group (natural 7, specialized 4,
  structured 8).
* VTAB-1k ``mean`` = mean over the 19 task means.  This is what GateVPT's Table 2 AVG is:
  (7*Nat + 4*Spec + 8*Struct)/19 reproduces every printed AVG; the mean of the three group means
  does not (see compare.check_published).  ``mean_of_group_means`` is reported beside it.
* Other multi-task benchmarks with ``average='mean'`` (the smoke ``synthetic`` one): ``mean``
  over its tasks.

Spread of an aggregate: for each seed that every member task has, the aggregate of that seed's
values; std/min/max/n are over those per-seed aggregates (the mean itself is always the
aggregate of the task means, as the paper computes it).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from .. import benchmarks

CELL = ["paper", "stage", "backbone", "method", "benchmark", "group", "task", "metric"]
COLUMNS = CELL + ["kind", "mean", "std", "min", "max", "n", "seeds", "complete", "members",
                  "smoke", "protocol", "precision", "commit", "environment", "device", "trainable_params",
                  "selected_epoch", "note"]
#: position of a benchmark no longer registered (after every registered one)
_UNKNOWN_ORDER = 9


def _join(values) -> str:
    """Distinct non-empty values, sorted, ';'-joined (ints printed without '.0')."""
    out = set()
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
            continue
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.add(str(v))
    return ";".join(sorted(out))


def _stats(values: Sequence[float]) -> Tuple[float, float, float, float]:
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), std, float(a.min()), float(a.max())


def order_key(benchmark: str, group: str, task: str) -> tuple:
    """Display order: the paper's table order, aggregates after their members."""
    b = benchmarks.find_benchmark(benchmark)
    if b is None:
        return (_UNKNOWN_ORDER, 0, 99 if task == "mean" else 0, task)
    return b.order_key(group, task)


def sort_cells(df: pd.DataFrame, extra_first: Sequence[str] = ()) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    keys = df.apply(lambda r: order_key(r["benchmark"], r["group"], r["task"]), axis=1)
    tmp = df.assign(_k=keys)
    by = list(extra_first) + ["paper", "stage", "_k_b", "benchmark", "backbone", "method",
                              "_k_1", "_k_2", "_k_t", "metric"]
    tmp["_k_b"] = tmp["_k"].map(lambda k: k[0])
    tmp["_k_1"] = tmp["_k"].map(lambda k: k[1])
    tmp["_k_2"] = tmp["_k"].map(lambda k: k[2])
    tmp["_k_t"] = tmp["_k"].map(lambda k: k[3])
    by = [c for c in by if c in tmp.columns]
    tmp = tmp.sort_values(by, kind="mergesort")
    return tmp.drop(columns=["_k", "_k_b", "_k_1", "_k_2", "_k_t"]).reset_index(drop=True)


def _task_cells(runs: pd.DataFrame) -> List[dict]:
    out = []
    for key, g in runs.groupby(CELL, sort=True):
        g = g.sort_values(["seed", "run_id"], kind="mergesort")
        mean, std, lo, hi = _stats(g["value"].tolist())
        seeds = g["seed"].astype(int).tolist()
        note = ("duplicate seeds: several records share a seed"
                if len(set(seeds)) < len(seeds) else "")
        out.append({**dict(zip(CELL, key)), "kind": "task", "mean": mean, "std": std,
                    "min": lo, "max": hi, "n": len(g), "seeds": ";".join(map(str, seeds)),
                    "complete": True, "members": "", "smoke": bool(g["smoke"].any()),
                    "protocol": _join(g["protocol"]), "precision": _join(g["precision"]),
                    "commit": _join(g["commit"]),
                    "environment": _join(g["environment"]), "device": _join(g["device"]),
                    "trainable_params": _join(g["trainable_params"]),
                    "selected_epoch": _join(g["selected_epoch"]), "note": note,
                    "_per_seed": g.groupby("seed")["value"].mean().to_dict(),
                    "_runs": g})
    return out


def _group_specs(benchmark: str) -> List[Tuple[str, str, Tuple[str, ...]]]:
    """[(group, task, members)] of the aggregates of a benchmark."""
    b = benchmarks.find_benchmark(benchmark)
    return b.aggregate_specs() if b is not None else []


def _aggregate_row(base: dict, kind: str, members: Sequence[str], parts: Dict[str, dict]) -> dict:
    """Aggregate of member cells ``parts`` (task -> task-cell row) over ``members``."""
    present = [m for m in members if m in parts]
    row = {**base, "kind": kind, "members": f"{len(present)}/{len(members)}",
           "complete": len(present) == len(members) and len(members) > 0,
           "mean": np.nan, "std": np.nan, "min": np.nan, "max": np.nan, "n": 0, "seeds": "",
           "note": ""}
    rows = [parts[m] for m in present]
    row["smoke"] = any(r["smoke"] for r in rows)
    for col in ("protocol", "precision", "commit", "environment", "device",
                "trainable_params", "selected_epoch"):
        row[col] = _join(p for r in rows for p in r[col].split(";"))
    if not row["complete"]:
        missing = [m for m in members if m not in parts]
        row["note"] = "incomplete: no runs for " + ", ".join(missing)
        return row
    row["mean"] = float(np.mean([parts[m]["mean"] for m in members]))
    common = set.intersection(*(set(parts[m]["_per_seed"]) for m in members))
    per_seed = {s: float(np.mean([parts[m]["_per_seed"][s] for m in members]))
                for s in sorted(common)}
    if per_seed:
        _, std, lo, hi = _stats(list(per_seed.values()))
        row.update({"std": std, "min": lo, "max": hi, "n": len(per_seed),
                    "seeds": ";".join(map(str, per_seed))})
        if any(set(parts[m]["_per_seed"]) != common for m in members):
            row["note"] = (f"seed sets differ across tasks: std/min/max/n over the "
                           f"{len(per_seed)} seed(s) all tasks have; mean over all seeds")
    else:
        row["note"] = "no seed common to all member tasks: spread not computed"
    row["_per_seed"] = per_seed
    return row


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-cell statistics over seeds and the group means (see the module docstring).
    ``runs``: the output of :func:`replicate.results.collect.collect`."""
    cells = _task_cells(runs) if not runs.empty else []
    out = list(cells)
    by_model: Dict[tuple, Dict[str, dict]] = {}
    for c in cells:
        k = (c["paper"], c["stage"], c["backbone"], c["method"], c["benchmark"], c["metric"])
        by_model.setdefault(k, {})[c["task"]] = c
    for (paper, stage, backbone, method, bench, metric), parts in sorted(by_model.items()):
        base = {"paper": paper, "stage": stage, "backbone": backbone, "method": method,
                "benchmark": bench, "metric": metric}
        group_rows = {}
        for group, task, members in _group_specs(bench):
            row = _aggregate_row({**base, "group": group, "task": task},
                                 "group_mean" if task == "group_mean" else "mean", members, parts)
            if row["members"].startswith("0/"):
                continue  # nothing of this aggregate was run
            out.append(row)
            if task == "group_mean":
                group_rows[group] = row
        if group_rows:  # a benchmark whose average is formed from groups
            out.append(_mean_of_group_means(base, group_rows))
    df = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in out],
                      columns=COLUMNS)
    df["n"] = df["n"].astype(int)
    df["complete"] = df["complete"].astype(bool)
    df["smoke"] = df["smoke"].astype(bool)
    return sort_cells(df)


def _mean_of_group_means(base: dict, group_rows: Dict[str, dict]) -> dict:
    bench = benchmarks.get_benchmark(base["benchmark"])
    names = list(bench.groups)
    parts = {g: r for g, r in group_rows.items() if r["complete"]}
    row = _aggregate_row({**base, "group": "", "task": "mean_of_group_means"},
                         "mean_of_group_means", names, parts)
    if row["complete"]:
        row["note"] = (f"mean of the {len(names)} group means (not what GateVPT's AVG is: that "
                       f"is the {len(bench.tasks)}-task mean, task 'mean')")
    else:
        row["note"] = "incomplete: group means missing for " + ", ".join(
            g for g in names if g not in parts)
    return row
