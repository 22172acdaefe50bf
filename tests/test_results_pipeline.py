"""Results layer on hand-made run records: collect (idempotent, failures kept), aggregate
(seed statistics, group-mean rules), compare (status rule and its edge cases) and the report
(golden files tests/golden/comparison.md and tests/golden/reproduced.csv).

Regenerate the golden files after an intended change with
``REGEN_GOLDEN=1 python -m pytest -q tests/test_results_pipeline.py`` and review the diff.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate.results import aggregate, collect, collect_unfinished, compare, load_published
from replicate.results.collect import CollectError
from replicate.results.published import COLUMNS as PUB_COLUMNS, vtab_groups
from replicate.results.report import write_report

GOLDEN = Path(__file__).parent / "golden"
ENV = {"python": "3.11.2", "torch": "2.1.2", "timm": "1.0.31"}


def write_record(root: Path, paper: str, stage: str, run_id: str, *, backbone: str, method: str,
                 benchmark: str, task: str, seed: int, value=None, metrics=None,
                 smoke: bool = False, protocol: str = "", trainable: int = 77000,
                 group: str = "", folder: str = "") -> Path:
    """A record.json in the layout of docs/contributing.md (fields the results layer reads)."""
    if not protocol:
        protocol = {"fgvc": "fgvc-gatevpt",
                    "vtab1k": "vtab1k-gatevpt"}.get(benchmark, "ade20k-setr")
    if benchmark == "vtab1k" and not group:
        group = {t: g for g, ts in vtab_groups().items() for t in ts}[task]
    rec = {"run_id": run_id, "status": "done", "smoke": smoke, "paper": paper,
           "experiment": f"{method}-{task}", "protocol": protocol, "stage": stage, "seed": seed,
           "backbone": backbone, "backbone_name": f"vit_base_patch16_224.{backbone[:3]}",
           "method": method, "method_type": method, "benchmark": benchmark, "task": task,
           "group": group, "lr": 0.1, "wd": 0.0, "batch_size": 64, "epochs": 100,
           "train_split": "trainval", "eval_splits": ["test"], "selected_epoch": 99,
           "metrics": metrics if metrics is not None else {"test_top1": value, "test_n": 100},
           "history": [], "trainable_params": trainable, "total_params": 86_000_000,
           "backbone_params": 85_800_000, "commit": "0123abcd4567", "env": ENV,
           "device": "NVIDIA H100 80GB HBM3", "precision": "bf16", "wall_time_s": 1.0,
           "images_per_s": 1.0, "config_hash": "x", "config": {}, "tags": {}, "cell": {},
           "finished": "2024-01-01 00:00:00"}
    d = root / paper / (folder or stage) / run_id
    d.mkdir(parents=True, exist_ok=True)
    (d / "record.json").write_text(json.dumps(rec, indent=1, sort_keys=True))
    return d


def write_published(path: Path, rows) -> Path:
    """rows: (paper, table, backbone, method, benchmark, group, task, metric, value)."""
    lines = [",".join(PUB_COLUMNS)]
    for r in rows:
        lines.append(",".join(list(r[:2]) + ["unknown"] + [str(x) for x in r[2:]]
                              + ["test fixture (not a paper value)", ""]))
    path.write_text("\n".join(lines) + "\n")
    return path


FGVC = ("cub", "flowers", "cars", "dogs", "nabirds")


def golden_runs(root: Path) -> None:
    """The hand-made runs of the golden report (values chosen to hit every status)."""
    mo, ma = "mocov3_vitb16", "mae_vitb16"
    # MoCo v3 GateVPT FGVC, 2 seeds (nabirds 1): cub/cars/dogs/nabirds within tolerance,
    # flowers 1.51 below with a small std -> not reproduced; cars has a wide std.
    vals = {"cub": (82.5, 83.1), "flowers": (92.0, 92.4), "cars": (78.0, 80.0),
            "dogs": (83.0, 83.5), "nabirds": (76.0,)}
    for task, vs in vals.items():
        for seed, v in zip((42, 44), vs):
            write_record(root, "gatevpt", "pinned", f"g-{mo}-{task}-{seed}", backbone=mo,
                         method="gatevpt", benchmark="fgvc", task=task, seed=seed, value=v)
    # MAE GateVPT FGVC: one smoke record on cub, nothing else (flowers missing, AVG incomplete)
    write_record(root, "gatevpt", "pinned", "g-mae-cub-smoke", backbone=ma, method="gatevpt",
                 benchmark="fgvc", task="cub", seed=0, value=70.0, smoke=True,
                 protocol="synthetic-smoke")
    # a method the paper does not report
    write_record(root, "gatevpt", "pinned", "lin-mae-cub", backbone=ma, method="linear",
                 benchmark="fgvc", task="cub", seed=42, value=20.0, trainable=153800)
    # MoCo v3 GateVPT VTAB-1k: the 4 specialized tasks x 2 seeds, one natural task
    spec = {"patch_camelyon": (84.0, 85.0), "eurosat": (94.0, 95.0),
            "resisc45": (80.0, 81.0), "retinopathy": (74.0, 76.0)}
    for task, vs in spec.items():
        for seed, v in zip((42, 44), vs):
            write_record(root, "gatevpt", "pinned", f"v-{task}-{seed}", backbone=mo,
                         method="gatevpt", benchmark="vtab1k", task=task, seed=seed, value=v,
                         trainable=800 + len(task))
    write_record(root, "gatevpt", "pinned", "v-cifar100-42", backbone=mo, method="gatevpt",
                 benchmark="vtab1k", task="cifar100", seed=42, value=60.0)
    # ADE20K segmentation record (two metrics) in a seg work dir (replicate.seg.run layout);
    # a second one of stage 'search' is not collected
    write_record(root, "gatevpt", "pinned", "seg-mae-42", backbone=ma, method="gatevpt",
                 benchmark="ade20k", task="ade20k", seed=42, folder="ade20k",
                 metrics={"miou_ss": 38.0, "miou_ms": 39.9})
    write_record(root, "gatevpt", "search", "seg-mae-search", backbone=ma, method="gatevpt",
                 benchmark="ade20k", task="ade20k", seed=42, folder="ade20k",
                 metrics={"miou_ss": 99.0, "miou_ms": 99.0})
    # not finished: a failed run, a started run; and a search record (not collected)
    d = root / "gatevpt" / "pinned" / "g-failed"
    d.mkdir(parents=True)
    (d / "failed.json").write_text(json.dumps({"run_id": "g-failed", "status": "failed",
                                               "error": "RuntimeError: CUDA out of memory",
                                               "traceback": "..."}))
    d = root / "gatevpt" / "pinned" / "g-started"
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    write_record(root, "gatevpt", "search", "s-cub", backbone=mo, method="gatevpt",
                 benchmark="fgvc", task="cub", seed=42, value=99.0)


def golden_published(path: Path) -> Path:
    mo, ma = "mocov3_vitb16", "mae_vitb16"
    rows = [("gatevpt", "Table 1", mo, "gatevpt", "fgvc", "", t, "top1", v)
            for t, v in zip(FGVC + ("mean",), ("82.86", "93.71", "79.02", "83.37", "76.02",
                                                "83.00"))]
    rows += [("gatevpt", "Table 1", ma, "gatevpt", "fgvc", "", "cub", "top1", "70.56"),
             ("gatevpt", "Table 1", ma, "gatevpt", "fgvc", "", "flowers", "top1", "78.55"),
             ("gatevpt", "Table 1", ma, "gatevpt", "fgvc", "", "mean", "top1", "73.39")]
    rows += [("gatevpt", "Table 2", mo, "gatevpt", "vtab1k", g, "group_mean", "top1", v)
             for g, v in (("natural", "74.84"), ("specialized", "83.38"),
                          ("structured", "49.10"))]
    rows += [("gatevpt", "Table 2", mo, "gatevpt", "vtab1k", "", "mean", "top1", "65.80"),
             ("gatevpt", "Table 3", ma, "gatevpt", "ade20k", "", "miou_ss", "miou", "38.44"),
             ("gatevpt", "Table 3", ma, "gatevpt", "ade20k", "", "miou_ms", "miou", "39.81")]
    # an inconsistent printed AVG (fixture): mean of 10,20,30,40,50 is 30, printed 31.00
    rows += [("gatevpt", "Table 9", ma, "vpt_deep", "fgvc", "", t, "top1", v)
             for t, v in zip(FGVC + ("mean",), ("10", "20", "30", "40", "50", "31.00"))]
    return write_published(path, rows)


def _normalise(text: str) -> str:
    return re.sub(r"^(Generated at|Commit|Command):.*$", r"\1: <normalised>", text,
                  flags=re.MULTILINE)


# ------------------------------------------------------------------ collect
def test_collect_rows_failures_and_idempotence(tmp_path):
    golden_runs(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    a = collect(tmp_path, "gatevpt")
    b = collect(tmp_path, "gatevpt")
    pd.testing.assert_frame_equal(a, b)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # read-only
    # 9 FGVC MoCo + 1 smoke + 1 linear + 8 specialized + 1 cifar + 2 seg metrics
    assert len(a) == 22
    assert "search" not in set(a["stage"])
    seg = a[a["benchmark"] == "ade20k"].set_index("task")
    assert seg.loc["miou_ss", "value"] == 38.0 and seg.loc["miou_ms", "metric"] == "miou"
    assert seg.loc["miou_ss", "stage"] == "pinned"
    assert seg.loc["miou_ss", "run_dir"] == "gatevpt/ade20k/seg-mae-42"
    un = collect_unfinished(tmp_path, "gatevpt")
    assert list(un["state"]) == ["failed", "started"]
    assert "CUDA out of memory" in un.iloc[0]["detail"]
    pd.testing.assert_frame_equal(un, a.attrs["unfinished"])
    # a new record shows up on the next collect; nothing else changes
    write_record(tmp_path, "gatevpt", "final", "new", backbone="mae_vitb16", method="gatevpt",
                 benchmark="fgvc", task="dogs", seed=42, value=1.0)
    c = collect(tmp_path, "gatevpt")
    assert len(c) == len(a) + 1
    pd.testing.assert_frame_equal(c[c["run_id"] != "new"].reset_index(drop=True), a)


def test_collect_bad_inputs_are_named(tmp_path):
    with pytest.raises(CollectError, match="RUNS_ROOT .*nope"):
        collect(tmp_path / "nope", "gatevpt")
    d = write_record(tmp_path, "gatevpt", "final", "r1", backbone="mae_vitb16",
                     method="gatevpt", benchmark="fgvc", task="cub", seed=1, value=1.0)
    (d / "record.json").write_text("{truncated")
    # a damaged record is a failed run with its reason (tests/test_reliability_files.py)
    un = collect(tmp_path, "gatevpt").attrs["unfinished"]
    assert list(un["state"]) == ["failed"] and "r1/record.json" in un.iloc[0]["detail"]
    # a record without the test metric is listed as invalid, not dropped silently
    write_record(tmp_path, "gatevpt", "final", "r1", backbone="mae_vitb16", method="gatevpt",
                 benchmark="fgvc", task="cub", seed=1, metrics={"val_top1": 50.0})
    df = collect(tmp_path, "gatevpt")
    assert df.empty
    un = df.attrs["unfinished"]
    assert list(un["state"]) == ["invalid"] and "test_top1" in un.iloc[0]["detail"]


# ------------------------------------------------------------------ aggregate
def _agg_runs(tmp_path, spec):
    """spec: {(backbone, method, benchmark, task): [(seed, value), ...]} -> aggregate()"""
    for (bb, m, bench, task), pairs in spec.items():
        for seed, v in pairs:
            write_record(tmp_path, "gatevpt", "final", f"{m}-{bb}-{task}-{seed}", backbone=bb,
                         method=m, benchmark=bench, task=task, seed=seed, value=v)
    return aggregate(collect(tmp_path, "gatevpt")).set_index(["task", "group"])


def test_seed_statistics(tmp_path):
    rep = _agg_runs(tmp_path, {("mae_vitb16", "gatevpt", "fgvc", "cub"): [(1, 70.0), (2, 72.0),
                                                                          (3, 77.0)],
                               ("mae_vitb16", "gatevpt", "fgvc", "dogs"): [(1, 50.0)]})
    cub = rep.loc[("cub", "")]
    # float64 means/stds of a few integers: the default rel 1e-6 only forgives summation order
    assert cub["mean"] == pytest.approx(73.0)
    assert cub["std"] == pytest.approx(np.std([70, 72, 77], ddof=1))  # sample std
    assert (cub["min"], cub["max"], cub["n"], cub["seeds"]) == (70.0, 77.0, 3, "1;2;3")
    assert cub["device"] == "NVIDIA H100 80GB HBM3" and cub["protocol"] == "fgvc-gatevpt"
    assert cub["commit"] == "0123abcd4567" and "torch 2.1.2" in cub["environment"]
    assert rep.loc[("dogs", ""), "std"] == 0.0  # one seed
    mean = rep.loc[("mean", "")]  # 2 of 5 FGVC datasets: incomplete, no number
    assert not mean["complete"] and np.isnan(mean["mean"]) and mean["members"] == "2/5"
    assert "cars" in mean["note"] and "flowers" in mean["note"]


def test_fgvc_mean_is_mean_of_dataset_means(tmp_path):
    spec = {("mocov3_vitb16", "gatevpt", "fgvc", t): [(1, 10.0 * (i + 1)), (2, 10.0 * (i + 1) + 2)]
            for i, t in enumerate(FGVC)}
    spec[("mocov3_vitb16", "gatevpt", "fgvc", "cub")] += [(3, 16.0)]  # cub: 10, 12, 16
    rep = _agg_runs(tmp_path, spec)
    mean = rep.loc[("mean", "")]
    means = [np.mean([10, 12, 16]), 21, 31, 41, 51]
    # float64 means/stds of a few integers: the default rel 1e-6 only forgives summation order
    assert mean["complete"] and mean["mean"] == pytest.approx(np.mean(means))
    # spread over the seeds all tasks have (1 and 2): per-seed means 30 and 32
    assert mean["seeds"] == "1;2" and mean["n"] == 2
    assert mean["std"] == pytest.approx(np.std([30, 32], ddof=1))


def test_vtab_means_19_task_mean_and_mean_of_group_means(tmp_path):
    groups = vtab_groups()
    # group g gets value 10 * (group index + 1) on every task: the two means then differ
    spec = {}
    for gi, (g, tasks) in enumerate(groups.items()):
        for t in tasks:
            spec[("mae_vitb16", "gatevpt", "vtab1k", t)] = [(42, 10.0 * (gi + 1))]
    rep = _agg_runs(tmp_path, spec)
    sizes = [len(ts) for ts in groups.values()]
    assert sizes == [7, 4, 8]
    # float64 means/stds of a few integers: the default rel 1e-6 only forgives summation order
    assert rep.loc[("group_mean", "natural"), "mean"] == pytest.approx(10.0)
    assert rep.loc[("group_mean", "structured"), "mean"] == pytest.approx(30.0)
    assert rep.loc[("mean", ""), "mean"] == pytest.approx((7 * 10 + 4 * 20 + 8 * 30) / 19)
    assert rep.loc[("mean_of_group_means", ""), "mean"] == pytest.approx(20.0)
    # remove one structured task: structured, the AVG and the mean of group means are incomplete
    shutil.rmtree(tmp_path / "gatevpt" / "final" / "gatevpt-mae_vitb16-dmlab-42")
    rep = aggregate(collect(tmp_path, "gatevpt")).set_index(["task", "group"])
    for key in [("group_mean", "structured"), ("mean", ""), ("mean_of_group_means", "")]:
        assert not rep.loc[key, "complete"] and np.isnan(rep.loc[key, "mean"]), key
    assert rep.loc[("group_mean", "natural"), "complete"]


# ------------------------------------------------------------------ compare: status rule
def _cell(mean, std, n, smoke=False, complete=True, protocol="fgvc-gatevpt", task="cub",
          method="gatevpt", bench="fgvc", group="", kind="task"):
    return {"paper": "gatevpt", "stage": "final", "backbone": "mae_vitb16", "method": method,
            "benchmark": bench, "group": group, "task": task,
            "metric": "miou" if bench == "ade20k" else "top1", "kind": kind, "mean": mean,
            "std": std, "min": mean, "max": mean, "n": n, "seeds": "", "complete": complete,
            "members": "", "smoke": smoke, "protocol": protocol, "commit": "", "environment": "",
            "device": "", "trainable_params": "", "selected_epoch": "", "note": ""}


def _status(tmp_path, cells, pub_rows):
    pub = load_published(write_published(tmp_path / "p.csv", pub_rows))
    comp = compare(pd.DataFrame(cells), pub, "gatevpt")
    return comp


PUB_CUB = [("gatevpt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "cub", "top1", "70.00")]


@pytest.mark.parametrize("mean,std,n,smoke,expected", [
    (70.5, 0.0, 3, False, "reproduced"),          # |Δ| = tolerance 0.5 exactly: reproduced
    (70.51, 0.0, 3, False, "not reproduced"),     # just above tolerance
    (69.49, 0.2, 3, False, "not reproduced"),     # 2·std = 0.4 < tolerance: tolerance rules
    (72.0, 1.0, 3, False, "reproduced"),          # |Δ| = 2 = 2·std: the seed spread rules
    (72.01, 1.0, 3, False, "not reproduced"),
    (70.0, 0.0, 1, True, "smoke"),                # smoke is never reproduced, even at Δ = 0
])
def test_status_rule_edges(tmp_path, mean, std, n, smoke, expected):
    comp = _status(tmp_path, [_cell(mean, std, n, smoke=smoke)], PUB_CUB)
    assert list(comp["status"]) == [expected]
    assert comp.iloc[0]["delta"] == pytest.approx(mean - 70.0)  # float64 subtraction: rounding only


def test_status_missing_onlys_and_unavailable(tmp_path):
    pub = PUB_CUB + [
        ("gatevpt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "dogs", "top1", "78.9"),
        ("gatevpt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "mean", "top1", "73.39"),
        ("gatevpt", "Table 2", "mae_vitb16", "gatevpt", "vtab1k", "natural", "group_mean",
         "top1", "47.61")]
    cells = [_cell(70.1, 0.1, 2),
             _cell(np.nan, np.nan, 0, complete=False, task="mean", kind="mean"),
             _cell(50.0, 1.0, 2, task="cifar100", bench="vtab1k", group="natural",
                   protocol="vtab1k-gatevpt"),
             _cell(20.0, 0.0, 1, method="linear")]
    comp = _status(tmp_path, cells, pub).set_index(["method", "task"])
    assert comp.loc[("gatevpt", "cub"), "status"] == "reproduced"
    assert comp.loc[("gatevpt", "dogs"), "status"] == "missing"       # published, no runs
    assert comp.loc[("gatevpt", "mean"), "status"] == "missing"       # incomplete aggregate
    assert comp.loc[("gatevpt", "group_mean"), "status"] == "missing"
    assert comp.loc[("gatevpt", "cifar100"), "status"] == "reproduced-only"
    assert "only per group" in comp.loc[("gatevpt", "cifar100"), "reason"]
    assert comp.loc[("linear", "cub"), "status"] == "published value unavailable"


def test_tolerance_from_protocol_and_default(tmp_path):
    # VTAB task protocol: tolerance 1.0 -> Δ 0.9 reproduced (would fail FGVC's 0.5)
    pub = [("gatevpt", "Table 2", "mae_vitb16", "gatevpt", "vtab1k", "natural", "group_mean",
            "top1", "47.61"),
           ("gatevpt", "Table 3", "mae_vitb16", "gatevpt", "ade20k", "", "miou_ss", "miou",
            "38.44")]
    cells = [_cell(48.51, 0.0, 2, task="group_mean", bench="vtab1k", group="natural",
                   protocol="vtab1k-gatevpt", kind="group_mean"),
             _cell(39.4, 0.0, 1, task="miou_ss", bench="ade20k", protocol="not-registered")]
    comp = _status(tmp_path, cells, pub).set_index("task")
    assert comp.loc["group_mean", "tolerance"] == 1.0
    assert comp.loc["group_mean", "status"] == "reproduced"
    assert comp.loc["miou_ss", "tolerance"] == 1.0 and comp.loc["miou_ss", "status"] == "reproduced"
    assert "not registered" in comp.loc["miou_ss", "reason"]


def test_reconstructed_papers_say_published_value_unavailable(tmp_path):
    pub = [("lspt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "cub", "top1", "70.56")]
    p = write_published(tmp_path / "l.csv", pub)
    cells = [dict(_cell(71.0, 0.5, 3, method="lspt"), paper="lspt"),
             dict(_cell(70.6, 0.5, 3), paper="lspt")]
    comp = compare(pd.DataFrame(cells), load_published(p), "lspt").set_index("method")
    assert comp.loc["lspt", "status"] == "published value unavailable"
    assert "LSPT" in comp.loc["lspt", "reason"]
    assert comp.loc["gatevpt", "status"] == "reproduced"
    # VPTM: empty table; every cell, baselines included, is unavailable with VPTM's reason
    empty = tmp_path / "v.csv"
    empty.write_text(",".join(PUB_COLUMNS) + "\n")
    cells = [dict(_cell(60.0, 0.5, 3, method=m), paper="vptm", backbone="beitv2_vitb16")
             for m in ("vptm", "vpt_deep")]
    comp = compare(pd.DataFrame(cells), load_published(empty), "vptm")
    assert set(comp["status"]) == {"published value unavailable"}
    assert comp["reason"].str.contains("VPTM").all()


# ------------------------------------------------------------------ report: golden files
def test_golden_report(tmp_path):
    runs = tmp_path / "runs"
    golden_runs(runs)
    pub = golden_published(tmp_path / "published.csv")
    paths = write_report("gatevpt", runs, tmp_path / "results", pub,
                         {"generated_at": "x", "commit": "x", "command": "x"})
    md = _normalise(paths["comparison"].read_text())
    csv_text = paths["reproduced"].read_text()
    if os.environ.get("REGEN_GOLDEN"):
        (GOLDEN / "comparison.md").write_text(md)
        (GOLDEN / "reproduced.csv").write_text(csv_text)
    assert md == (GOLDEN / "comparison.md").read_text()
    assert csv_text == (GOLDEN / "reproduced.csv").read_text()
    assert [p.name for p in paths["figures"]] == ["fgvc.png", "vtab1k.png", "ade20k.png"]
    assert all(p.stat().st_size > 1000 for p in paths["figures"])
    # idempotent: a second report over the same records writes the same files
    again = write_report("gatevpt", runs, tmp_path / "results", pub,
                         {"generated_at": "y", "commit": "y", "command": "y"})
    assert _normalise(again["comparison"].read_text()) == md
    assert again["reproduced"].read_text() == csv_text


def test_lspt_report_beside_gatevpt(tmp_path):
    runs = tmp_path / "runs"
    for seed, v in ((42, 72.0), (44, 73.0)):
        write_record(runs, "lspt", "pinned", f"l-{seed}", backbone="mae_vitb16", method="lspt",
                     benchmark="fgvc", task="cub", seed=seed, value=v, trainable=400000)
        write_record(runs, "gatevpt", "pinned", f"g-{seed}", backbone="mae_vitb16",
                     method="gatevpt", benchmark="fgvc", task="cub", seed=seed, value=v - 2)
    row = [("gatevpt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "cub", "top1", "70.56")]
    (tmp_path / "papers" / "gatevpt").mkdir(parents=True)
    (tmp_path / "papers" / "lspt").mkdir(parents=True)
    write_published(tmp_path / "papers" / "gatevpt" / "published.csv", row)
    lpub = write_published(tmp_path / "papers" / "lspt" / "published.csv",
                           [("lspt",) + row[0][1:]])
    # out_dir already named after the paper: files go straight in; base_* context spelling
    paths = write_report("lspt", runs, tmp_path / "results" / "lspt", lpub,
                         {"base_paper": "gatevpt", "figures": False})
    assert paths["comparison"] == tmp_path / "results" / "lspt" / "comparison.md"
    md = paths["comparison"].read_text()
    head = md.split("## Rule")[0]
    assert "RECONSTRUCTION" in head and "Published value unavailable" in head
    assert "| lspt | cub | published value unavailable |" not in md  # table has more columns
    assert re.search(r"\| mae_vitb16 \| lspt \| cub \|.*published value unavailable", md)
    beside = md.split("## LSPT beside gatevpt")[1].split("##")[0]
    # LSPT 72.50 ± 0.71 (2) beside GateVPT ours 70.50 ± 0.71 (2) and published 70.56
    assert re.search(r"72\.50 ± 0\.71 \(2\) \| 70\.50 ± 0\.71 \(2\) \| 70\.56 \| \+2\.00 \| "
                     r"\+1\.94", beside), beside


def test_vptm_report_with_real_empty_table_and_cli(tmp_path, capsys):
    from replicate.results.report import main
    runs = tmp_path / "runs"
    for m, v in (("vptm", 61.0), ("vpt_deep", 58.0), ("linear", 40.0)):
        for seed in (42, 44):
            write_record(runs, "vptm", "pinned", f"{m}-{seed}", backbone="beitv2_vitb16",
                         method=m, benchmark="fgvc", task="cub", seed=seed, value=v + seed / 100)
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "results"
    assert main(["--paper", "vptm", "--runs-root", str(runs), "--out", str(out), "--no-figures",
                 "--published", str(root / "papers" / "vptm" / "published.csv")]) == 0
    assert "comparison: " in capsys.readouterr().out
    md = (out / "vptm" / "comparison.md").read_text()
    assert "RECONSTRUCTION" in md.split("## Rule")[0]
    assert f"--runs-root {runs}" in md  # the exact command is recorded
    table = md.split("## FGVC")[1].split("##")[0]
    assert table.count("published value unavailable") == 3 and "VPTM paper" in table
    side = md.split("## Methods side by side")[1].split("## Consistency")[0]
    assert re.search(r"\| beitv2_vitb16 \| cub \| 40\.43 ± 0\.01 \(2\) \| 58\.43 ± 0\.01 \(2\) \| "
                     r"61\.43 ± 0\.01 \(2\) \|", side), side


def test_gatevpt_report_on_real_table_without_runs(tmp_path):
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "runs").mkdir()
    paths = write_report("gatevpt", tmp_path / "runs", tmp_path / "results",
                         root / "papers" / "gatevpt" / "published.csv", {"figures": False})
    assert paths["figures"] == []
    md = paths["comparison"].read_text()
    assert "All 22 checks pass" in md
    assert "Cells: missing 110." in md  # 114 rows, 4 of them repeat Table 1 cells in Table 4
    assert pd.read_csv(paths["reproduced"]).empty


def test_reports_with_no_runs_yet(tmp_path):
    """A fresh checkout: every paper's report renders before any run finished."""
    from pathlib import Path as _P

    from replicate.results.report import write_report

    root = _P(__file__).resolve().parents[1]
    runs = tmp_path / "runs"
    runs.mkdir()
    for paper in ("gatevpt", "lspt", "vptm"):
        paths = write_report(paper, runs, tmp_path / paper, root / "papers" / paper / "published.csv",
                             {"figures": False})
        text = _P(paths["comparison"]).read_text()
        assert "missing" in text or "unavailable" in text
