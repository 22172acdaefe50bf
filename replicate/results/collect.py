"""Collect finished runs into a tidy table (one row per record and reported metric).

Reads ``RUNS_ROOT/<paper>/<stage>/<run_id>/record.json`` (format: docs/contributing.md
'record.json') and the segmentation runs' ``RUNS_ROOT/<paper>/ade20k/<name>-<hash>/record.json``
(replicate.seg.run: mmengine work dirs; their stage is the record's ``stage``), and never
writes anything, so collecting twice gives the same table.  Run
directories without a usable record are not dropped: :func:`collect_unfinished` lists them
(``failed`` = failed.json holds the traceback, or record.json is damaged (truncated, not
JSON); ``started`` = no record yet; ``invalid`` = the record lacks the reported metric).

Reported value: classification records give ``metrics['test_top1']`` (metric ``top1``; task =
the record's task).  Segmentation records (a benchmark scored by mIoU in
``replicate/benchmarks.py``: ``ade20k``) give one row per entry of its ``table_order``,
``metrics['miou_ss']`` / ``metrics['miou_ms']`` (also accepted with a ``test_`` prefix), with
task ``miou_ss`` / ``miou_ms`` and metric ``miou``, matching papers/*/published.csv.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import pandas as pd

from .. import benchmarks

DEFAULT_STAGES = ("final", "pinned")


def seg_dirs() -> Tuple[str, ...]:
    """Folders of segmentation work dirs (replicate.seg.run.default_work_dir: one per
    segmentation benchmark); their stage comes from the record."""
    return tuple(b.name for b in benchmarks.all_benchmarks() if b.segmentation)


COLUMNS = ("paper", "stage", "backbone", "method", "benchmark", "group", "task", "metric",
           "seed", "value", "smoke", "protocol", "run_id", "run_dir", "experiment",
           "method_type", "backbone_name", "commit", "environment", "device",
           "trainable_params", "selected_epoch", "lr", "wd", "batch_size", "epochs",
           "precision", "finished", "wall_time_s", "images_per_s", "selected_lr",
           "selected_wd", "selection_val_top1", "paper_lr", "skipped_diverged")
SORT = ["paper", "stage", "backbone", "method", "benchmark", "group", "task", "metric", "seed",
        "run_id"]
UNFINISHED_COLUMNS = ("paper", "stage", "run_id", "run_dir", "state", "detail")

_REQUIRED = ("run_id", "paper", "stage", "seed", "backbone", "method", "benchmark", "task",
             "metrics")


class CollectError(RuntimeError):
    """A runs folder or record cannot be read; the message names the path and the fix."""


def _run_dirs(runs_root: Path, paper: str,
              stages: Sequence[str]) -> Iterable[Tuple[str, Path, bool]]:
    """(folder stage, run dir, stage comes from the record) for every run directory."""
    seg = seg_dirs()
    for folder in tuple(stages) + seg:
        d = runs_root / paper / folder
        if d.is_dir():
            for run_dir in sorted(p for p in d.iterdir() if p.is_dir()):
                yield folder, run_dir, folder in seg


def _check_root(runs_root: Path) -> Path:
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        raise CollectError(f"RUNS_ROOT {runs_root} is not a directory; set RUNS_ROOT to the "
                           f"folder that holds <paper>/<stage>/<run_id>/ run directories")
    return runs_root


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CollectError(f"{path}: unreadable ({type(e).__name__}: {e}); run files are "
                           f"written atomically, so it was truncated or edited afterwards: "
                           f"delete it and re-run the stage (the run resumes from its last "
                           f"checkpoint)") from None


def _failed_detail(failed: Path) -> str:
    """The error a failed.json records (its last traceback line when it has no message)."""
    try:
        info = _read_json(failed)
    except CollectError as e:
        return str(e)
    if not isinstance(info, dict):
        return f"{failed} is not a JSON object"
    detail = str(info.get("error") or info.get("exception") or "").strip()
    if not detail:
        tb = str(info.get("traceback", "")).strip().splitlines()
        detail = tb[-1] if tb else "see failed.json"
    return detail


def environment_string(env) -> str:
    """Compact, stable text for the record's ``env`` dict (python/torch/timm/numpy/platform)."""
    if isinstance(env, dict):
        return ", ".join(f"{k} {env[k]}" for k in sorted(env))
    return str(env or "")


def _values(rec: dict) -> Tuple[List[Tuple[str, str, float]], Optional[str]]:
    """[(task, metric, value)] reported by a record, or a reason why none is."""
    m = rec.get("metrics") or {}
    bench = benchmarks.find_benchmark(str(rec.get("benchmark")))
    if bench is not None and bench.segmentation:
        out = []
        for k in bench.table_order:
            v = m.get(k, m.get(f"test_{k}"))
            if v is not None:
                out.append((k, bench.metric, float(v)))
        return out, None if out else (f"segmentation record without "
                                      f"metrics['{'|'.join(bench.table_order)}']")
    if "test_top1" not in m:
        return [], (f"no metrics['test_top1'] (eval_splits={rec.get('eval_splits')}): final and "
                    f"pinned runs must evaluate on test")
    return [(rec["task"], "top1", float(m["test_top1"]))], None


def _cell_method(rec: dict) -> str:
    """The record's method as its cell names it (``cell.method``), else its ``method``."""
    cell = rec.get("cell")
    return str(cell["method"]) if isinstance(cell, dict) and cell.get("method") \
        else rec["method"]


def _row(rec: dict, stage: str, run_dir: Path, runs_root: Path, task: str, metric: str,
         value: float) -> dict:
    tags = rec.get("tags") or {}
    return {
        "paper": rec["paper"], "stage": stage, "backbone": rec["backbone"],
        # the cell's method names the variant (lspt_lstm_only ...); the method *type* is shared
        # by variants, and keying on it merged them into one cell ("duplicate seeds")
        "method": _cell_method(rec), "benchmark": rec["benchmark"],
        "group": rec.get("group") or "",
        "task": task, "metric": metric, "seed": int(rec["seed"]), "value": value,
        "smoke": bool(rec.get("smoke", False)), "protocol": rec.get("protocol") or "",
        "run_id": rec["run_id"], "run_dir": run_dir.relative_to(runs_root).as_posix(),
        "experiment": rec.get("experiment", ""), "method_type": rec.get("method_type", ""),
        "backbone_name": rec.get("backbone_name", ""), "commit": rec.get("commit", ""),
        "environment": environment_string(rec.get("env")), "device": rec.get("device", ""),
        "trainable_params": rec.get("trainable_params"),
        "selected_epoch": rec.get("selected_epoch"), "lr": rec.get("lr"), "wd": rec.get("wd"),
        "batch_size": rec.get("batch_size"), "epochs": rec.get("epochs"),
        "precision": rec.get("precision", ""), "finished": rec.get("finished", ""),
        "wall_time_s": rec.get("wall_time_s"), "images_per_s": rec.get("images_per_s"),
        # final runs of a search: what the selection chose and skipped (sweep.plan_final tags)
        "selected_lr": tags.get("selected_lr"), "selected_wd": tags.get("selected_wd"),
        "selection_val_top1": tags.get("val_top1"), "paper_lr": tags.get("paper_lr"),
        "skipped_diverged": "; ".join(tags.get("skipped_diverged") or ()),
    }


def _scan(runs_root: Path, paper: str, stages: Sequence[str]):
    rows, unfinished = [], []
    for stage, run_dir, stage_in_record in _run_dirs(runs_root, paper, stages):
        rel = run_dir.relative_to(runs_root).as_posix()
        base = {"paper": paper, "stage": stage, "run_id": run_dir.name, "run_dir": rel}
        rec_path = run_dir / "record.json"
        if not rec_path.is_file():
            failed = run_dir / "failed.json"
            if failed.is_file():
                unfinished.append({**base, "state": "failed", "detail": _failed_detail(failed)})
            else:
                unfinished.append({**base, "state": "started",
                                   "detail": "no record.json yet (running, queued or interrupted)"})
            continue
        try:
            rec = _read_json(rec_path)
        except CollectError as e:  # a damaged record is a failed run, listed with its reason
            unfinished.append({**base, "state": "failed", "detail": str(e)})
            continue
        if not isinstance(rec, dict):
            unfinished.append({**base, "state": "failed",
                               "detail": f"{rec_path} is not a JSON object: delete it and re-run "
                                         f"the stage"})
            continue
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            unfinished.append({**base, "state": "invalid",
                               "detail": f"record.json lacks {', '.join(missing)}"})
            continue
        if stage_in_record:
            if rec["stage"] not in stages:
                continue  # a segmentation run of a stage not collected now
            stage = base["stage"] = rec["stage"]
        if rec["seed"] is None:
            unfinished.append({**base, "state": "invalid",
                               "detail": "record.json has no seed (set the config's seed)"})
            continue
        if rec["paper"] != paper or rec["stage"] != stage:
            unfinished.append({**base, "state": "invalid",
                               "detail": f"record says paper={rec['paper']} stage={rec['stage']}"
                                         f" but lies under {paper}/{stage}"})
            continue
        values, why = _values(rec)
        if why:
            unfinished.append({**base, "state": "invalid", "detail": why})
        for task, metric, value in values:
            rows.append(_row(rec, stage, run_dir, runs_root, task, metric, value))
    return rows, unfinished


def collect(runs_root: Path, paper: str, stages: Sequence[str] = DEFAULT_STAGES) -> pd.DataFrame:
    """One row per (record.json, reported metric) under ``RUNS_ROOT/<paper>/<stage>/*/``,
    sorted by cell then seed.  Read-only and deterministic.  Runs without a usable record
    are in ``df.attrs['unfinished']`` (same as :func:`collect_unfinished`)."""
    runs_root = _check_root(runs_root)
    rows, unfinished = _scan(runs_root, paper, tuple(stages))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if not df.empty:
        df = df.sort_values(SORT, kind="mergesort").reset_index(drop=True)
    df["seed"] = df["seed"].astype(int)
    df["value"] = df["value"].astype(float)
    df["smoke"] = df["smoke"].astype(bool)
    df.attrs["unfinished"] = _unfinished_frame(unfinished)
    return df


def _unfinished_frame(rows: List[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(UNFINISHED_COLUMNS))
    return df.sort_values(["stage", "run_id"], kind="mergesort").reset_index(drop=True)


def collect_unfinished(runs_root: Path, paper: str,
                       stages: Sequence[str] = DEFAULT_STAGES) -> pd.DataFrame:
    """Run directories without a usable record: state ``failed`` (failed.json, ``detail`` =
    the error), ``started`` (no record yet) or ``invalid`` (record without the metric)."""
    runs_root = _check_root(runs_root)
    return _unfinished_frame(_scan(runs_root, paper, tuple(stages))[1])
