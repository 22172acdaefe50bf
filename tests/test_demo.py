"""`make demo` end to end (quick mode): micro backbones -> plan -> run -> collect -> table +
plot, all SMOKE."""
import re

import pytest

from replicate.demo import DEMO_CELLS, run_demo


@pytest.mark.parametrize("jobs", [1, 2])  # 2: BEiT v2 waited for between the runs
def test_demo_quick(tmp_path, capsys, micro_cache, jobs):
    assert run_demo(tmp_path, executor="inproc", quick=True, cache_dir=micro_cache,
                    jobs=jobs) == 0
    out = capsys.readouterr().out
    # the runs are announced once each, numbered 1..N in order, whichever path ran them
    numbers = [tuple(map(int, m)) for m in re.findall(r"^\[(\d+)/(\d+)\] SMOKE", out, re.M)]
    n = 2 * len(DEMO_CELLS)
    assert numbers == [(i, n) for i in range(1, n + 1)], numbers
    assert "SMOKE demo" in out and "nothing here reproduces a paper" in out
    # every pre-trained backbone is reported with its k-NN accuracy
    assert out.count("k-NN top-1 on digits val") >= 3
    # every printed result says it is a smoke run: per-run lines and the results section
    results = [ln for ln in out.splitlines() if "test top-1" in ln and "%" in ln]
    assert len(results) >= 2 * len(DEMO_CELLS) and all("smoke" in ln.lower() for ln in results)
    assert "## SMOKE: methods side by side" in out and "## Methods side by side" not in out
    table = (tmp_path / "results" / "demo" / "comparison.md").read_text()
    assert "smoke" in table.lower()
    assert "reproduced |" not in table  # a smoke row never counts as reproduced
    for m in ("linear", "vpt_shallow", "vpt_deep", "gatevpt", "lspt", "vptm"):
        assert m in table
    for key in ("mae_micro", "mocov3_micro", "beitv2_micro"):
        assert key in table
    figs = list((tmp_path / "results" / "demo" / "figures").glob("*.png"))
    assert figs and all(f.stat().st_size > 1000 for f in figs)
    records = list((tmp_path / "runs").rglob("record.json"))
    assert len(records) == 2 * len(DEMO_CELLS)  # every cell x 2 seeds


def test_search_selects_on_val_only(tmp_path):
    """``--search`` picks each cell's lr by its val top-1 (ties: the smaller lr; a run without a
    record, e.g. a diverged one, counts as worst); the records hold no test metric to leak."""
    import json

    from replicate.demo import SEARCH_GRID, demo_experiments, search_runs, select_on_val

    exps = demo_experiments(tmp_path / "cache", quick=True)[:2]  # MAE linear, VPT-shallow (SGD)
    grid = search_runs(exps, tmp_path / "runs")
    assert all(r.eval_splits == ("val",) and r.train_split == "train"
               for rs in grid.values() for r in rs)
    vals = {exps[0].name: [50.0, 70.0, 70.0, None], exps[1].name: [None, 10.0, 60.0, 20.0]}
    for name, rs in grid.items():
        for r, v in zip(rs, vals[name]):
            if v is None:
                continue
            r.run_dir.mkdir(parents=True)
            (r.run_dir / "record.json").write_text(
                json.dumps({"status": "done", "metrics": {"val_top1": v}}))
    chosen = select_on_val(exps, grid)
    sgd = SEARCH_GRID["sgd"]
    assert chosen[0].optim.lr == sgd[1]  # 70.0 twice: the smaller lr
    assert chosen[1].optim.lr == sgd[2]
