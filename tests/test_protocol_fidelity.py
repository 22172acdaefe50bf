"""The protocol around the model, as the paper that measured each published number ran it.

* FGVC final runs train on ``train`` only (official train.py merges train+val only for VTAB);
* GateVPT's Table 2 VPT rows (dagger: copied from VPT) resolve to VPT's protocol: its prompt lr
  grid x wd grid, lr x batch/256, batch 128, the MAE head input VPT uses, dropout 0.0 / 0.1;
* precision: reproductions default to fp32 (TF32 on CUDA), recorded and reported;
* a diverged grid run is skipped by the selection, which names it, instead of blocking.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from replicate import config, protocol, sweep
from replicate.engine import execute
from replicate.engine import train as engine_train
from replicate.engine.run import read_record, run_state
from replicate.results.published import load_published

from tests.test_sweep import tiny_exp

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ splits
@pytest.mark.parametrize("pid", [p for p in protocol.registered()
                                 if protocol.get(p).benchmark in ("fgvc", "vtab1k")])
def test_final_runs_train_on_the_split_the_official_train_py_uses(pid):
    proto = protocol.get(pid)
    expected = "train" if proto.benchmark == "fgvc" else "trainval"
    assert proto.final_train == expected, pid
    assert proto.search_train == "train" and proto.search_eval == "val"
    assert "final_train" in proto.assumed  # the reason names the official file


def test_pinned_fgvc_runs_of_every_paper_read_train(tmp_path):
    for paper in ("gatevpt", "lspt"):
        files = sweep.config_files(paper, "pinned", select=["fgvc/*/c*"])
        runs = sweep.plan_pinned(sweep.load_experiments(files[:4]), str(tmp_path))
        assert runs and {r.train_split for r in runs} == {"train"}, paper


# ------------------------------------------------------------------ Table 2 dagger rows
def _search_configs(bench: str, method: str):
    base = ROOT / "papers" / "gatevpt" / "configs" / "search" / bench
    return sorted(base.glob(f"*/{method}/*.py"))


@pytest.mark.parametrize("method,dropout", [("vpt_shallow", 0.0), ("vpt_deep", 0.1)])
def test_table2_dagger_rows_resolve_to_vpts_protocol(method, dropout, tmp_path):
    files = _search_configs("vtab1k", method)
    assert len(files) == 38  # 19 tasks x 2 backbones
    for f in files[::7]:
        e = config.load(f)
        assert e.protocol == "vtab1k-vpt" and e.cell["table"] == "Table 2"
        assert e.optim.lr_scaling == "linear256" and e.optim.batch_size == 128
        pool = {"mae_vitb16": "mean_fcnorm", "mocov3_vitb16": "cls"}[e.cell["backbone"]]
        assert e.method.options["pool"] == pool, f
        assert e.method.options["prompt_dropout"] == dropout
        for key in ("method.pool", "method.prompt_dropout", "optim.batch_size", "optim.lr"):
            assert "KMnP/vpt" in e.assumed[key] or "VPT" in e.assumed[key], (f, key)
        runs = sweep.grid_runs(e, str(tmp_path))
        grid = {(r.experiment.optim.lr, r.experiment.optim.weight_decay) for r in runs}
        assert grid == {(lr, wd) for lr in protocol.VPT_PROMPT_LR_GRID_VTAB
                        for wd in protocol.VPT_WD_GRID}
        # the optimizer gets the grid value x batch / 256 (tune_vtab.py)
        assert protocol.optimizer_lr(5.0, e.optim.batch_size, e.optim.lr_scaling) == 2.5


@pytest.mark.parametrize("method", ["vpt_shallow", "vpt_deep"])
def test_table1_vpt_rows_stay_gatevpt_protocol_with_open_choices_assumed(method):
    for f in _search_configs("fgvc", method)[::3]:
        e = config.load(f)
        assert e.protocol == "fgvc-gatevpt" and e.optim.lr_scaling == "none"
        assert "paper silent on its baselines" in e.assumed["method.pool"]
        assert "paper silent on its baselines" in e.assumed["method.prompt_dropout"]


def test_each_published_row_is_reproduced_under_the_protocol_of_who_measured_it():
    pub = load_published(ROOT / "papers" / "gatevpt" / "published.csv", paper="gatevpt")
    by_cell = {(r.backbone, r.method, r.benchmark, r.task if r.task in ("mean", "group_mean")
                else r.task): r.measured_by for r in pub.itertuples()}
    assert set(pub.loc[pub["note"].str.contains("dagger"), "measured_by"]) == {"vpt"}
    checked = 0
    for bench in ("fgvc", "vtab1k"):
        for method in ("gatevpt", "vpt_shallow", "vpt_deep"):
            for f in _search_configs(bench, method)[::5]:
                e = config.load(f)
                c = e.cell
                # FGVC cells are printed per task, VTAB-1k per group (match on group_mean)
                key = (c["backbone"], c["method"], c["benchmark"],
                       c["task"] if bench == "fgvc" else "group_mean")
                if key in by_cell:
                    assert protocol.get(e.protocol).measured_by == by_cell[key], f
                    checked += 1
    assert checked >= 10


def test_comparison_names_who_measured_and_our_protocol_and_precision(tmp_path):
    import pandas as pd

    from replicate.results.compare import compare

    pub = load_published(ROOT / "papers" / "gatevpt" / "published.csv", paper="gatevpt")
    rep = pd.DataFrame([{
        "paper": "gatevpt", "stage": "final", "backbone": "mae_vitb16", "method": "vpt_deep",
        "benchmark": "vtab1k", "group": "natural", "task": "group_mean", "metric": "top1",
        "kind": "group_mean", "mean": 36.0, "std": 0.1, "min": 35.9, "max": 36.1, "n": 5,
        "complete": True, "smoke": False, "protocol": "vtab1k-vpt", "precision": "fp32+tf32",
        "note": ""}])
    comp = compare(rep, pub, "gatevpt")
    row = comp[(comp["method"] == "vpt_deep") & (comp["backbone"] == "mae_vitb16")
               & (comp["group"] == "natural") & (comp["stage"] == "final")].iloc[0]
    assert (row["measured_by"], row["protocol"], row["precision"]) == \
        ("vpt", "vtab1k-vpt", "fp32+tf32")
    fgvc = comp[(comp["benchmark"] == "fgvc") & (comp["method"] == "vpt_deep")].iloc[0]
    assert fgvc["measured_by"] == "gatevpt"


# ------------------------------------------------------------------ precision
def test_reproductions_default_to_fp32_and_bf16_is_opt_in():
    assert config.TrainSpec().precision == "protocol"
    assert all(protocol.get(p).precision == "fp32" for p in protocol.registered())
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    spec = config.TrainSpec()
    assert engine_train.resolve_precision(spec, cpu, "vtab1k-gatevpt") == ("fp32", None)
    assert engine_train.resolve_precision(spec, cuda, "vtab1k-gatevpt") == ("fp32+tf32", None)
    strict = config.TrainSpec(precision="fp32-strict")
    assert engine_train.resolve_precision(strict, cuda, "vtab1k-gatevpt") == ("fp32", None)
    bf16 = config.TrainSpec(precision="bf16")
    assert engine_train.resolve_precision(bf16, cuda, None) == ("bf16", torch.bfloat16)
    for f in sweep.config_files("gatevpt", "pinned")[::20]:
        assert config.load(f).train.precision == "protocol"


def test_record_states_the_precision(tmp_path):
    run = sweep.plan_pinned([tiny_exp()], str(tmp_path), "smoke")[0]
    rec = execute(run, echo=lambda s: None)
    assert rec["precision"] == "fp32"


# ------------------------------------------------------------------ diverged grid runs
def test_a_diverged_grid_run_is_skipped_and_named(tmp_path, monkeypatch):
    exp = tiny_exp(optim=dict(lr=0.1, batch_size=200, epochs=2, warmup_epochs=0))
    real_step = engine_train.train_step

    def step(fwd, model, opt, *a, **kw):  # lr 1.0 of the grid (0.1, 1.0) blows up
        loss = real_step(fwd, model, opt, *a, **kw)
        return loss * math.nan if opt.param_groups[0]["lr"] >= 1.0 else loss

    monkeypatch.setattr(engine_train, "train_step", step)
    runs = sweep.plan_search([exp], str(tmp_path))
    assert sorted(r.experiment.optim.lr for r in runs) == [0.1, 1.0]
    for r in runs:
        execute(r, echo=lambda s: None)  # the diverged one does not raise
    big = next(r for r in runs if r.experiment.optim.lr == 1.0)
    rec = read_record(big.run_dir)
    assert rec["status"] == "diverged" and rec["diverged"]["epoch"] == 1
    assert run_state(big.run_dir) == "done" and sweep.todo(runs) == []  # never retried
    sel = sweep.select(exp, str(tmp_path))
    assert sel.lr == 0.1 and sel.grid_size == 1
    assert len(sel.skipped) == 1 and sel.skipped[0].startswith("lr=1 wd=0: non-finite")
    final, pending = sweep.plan_final([exp], str(tmp_path))
    assert not pending and final[0].tags["skipped_diverged"] == list(sel.skipped)


def test_all_diverged_or_unfinished_grids_block_selection(tmp_path, monkeypatch):
    exp = tiny_exp()
    runs = sweep.grid_runs(exp, str(tmp_path))
    execute(runs[0], echo=lambda s: None)
    with pytest.raises(sweep.SelectionIncomplete, match="not finished"):
        sweep.select(exp, str(tmp_path))
    monkeypatch.setattr(engine_train, "train_step",
                        lambda *a, **kw: torch.tensor(math.inf))
    other = tiny_exp(name="sweep-all-diverge")
    for r in sweep.grid_runs(other, str(tmp_path)):
        execute(r, echo=lambda s: None)
    with pytest.raises(sweep.AllDiverged, match="all 2 grid runs diverged"):
        sweep.select(other, str(tmp_path))


def test_a_diverged_final_run_still_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_train, "train_step",
                        lambda *a, **kw: torch.tensor(math.nan))
    run = sweep.plan_pinned([tiny_exp()], str(tmp_path), "pinned")[0]
    with pytest.raises(engine_train.NonFiniteLoss):
        execute(run, echo=lambda s: None)
    assert run_state(run.run_dir) == "failed"
