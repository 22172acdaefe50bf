"""Protocol stages: grid -> selection on val only -> final seeded runs; idempotent planning."""
import pytest

from replicate import data as data_mod
from replicate import sweep
from replicate.engine import execute
from replicate.engine.run import atomic_write_json
from tests.helpers import TINY_GATEVPT, tiny_from_dict


def tiny_exp(name: str = "sweep-t", **sections):
    """The tiny GateVPT experiment (tests/helpers.py) in batches of 200."""
    return tiny_from_dict(name, TINY_GATEVPT, **{"optim": dict(batch_size=200), **sections})


def fake_record(run, val, test=None):
    rec = {"run_id": run.run_id, "lr": run.experiment.optim.lr,
           "wd": run.experiment.optim.weight_decay, "metrics": {"val_top1": val}}
    if test is not None:
        rec["metrics"]["test_top1"] = test
    atomic_write_json(run.run_dir / "record.json", rec)


def test_grid_matches_protocol(tmp_path):
    runs = sweep.grid_runs(tiny_exp(), str(tmp_path))
    assert sorted(r.experiment.optim.lr for r in runs) == [0.1, 1.0]
    assert all(r.train_split == "train" and r.eval_splits == ("val",) for r in runs)
    assert len({r.run_id for r in runs}) == len(runs)
    # planning again gives the same run ids (idempotent stages)
    assert [r.run_id for r in runs] == [r.run_id for r in sweep.grid_runs(tiny_exp(), str(tmp_path))]


def test_select_uses_val_only_and_tie_breaks_to_smaller_lr(tmp_path):
    exp = tiny_exp()
    runs = sweep.grid_runs(exp, str(tmp_path))
    with pytest.raises(sweep.SelectionIncomplete):
        sweep.select(exp, str(tmp_path))
    by_lr = {r.experiment.optim.lr: r for r in runs}
    # the test metric would pick lr=1.0; val picks lr=0.1
    fake_record(by_lr[0.1], val=80.0, test=10.0)
    fake_record(by_lr[1.0], val=70.0, test=99.0)
    assert sweep.select(exp, str(tmp_path)).lr == 0.1
    fake_record(by_lr[1.0], val=80.0, test=99.0)  # tie on val -> smaller lr
    assert sweep.select(exp, str(tmp_path)).lr == 0.1
    fake_record(by_lr[1.0], val=80.5)
    sel = sweep.select(exp, str(tmp_path))
    assert (sel.lr, sel.val_top1, sel.grid_size) == (1.0, 80.5, 2)


def test_search_stage_never_loads_test_split(tmp_path, monkeypatch):
    real = data_mod.load

    def guarded(spec, split, train):
        assert split != "test", "the search stage or selection touched the test split"
        return real(spec, split, train)

    monkeypatch.setattr(data_mod, "load", guarded)
    import replicate.engine.train as tr
    monkeypatch.setattr(tr.data, "load", guarded)
    exp = tiny_exp()
    for run in sweep.plan_search([exp], str(tmp_path)):
        execute(run, echo=lambda s: None)
    sel = sweep.select(exp, str(tmp_path))
    final, pending = sweep.plan_final([exp], str(tmp_path))
    assert not pending and len(final) == 2  # synthetic-smoke seeds (0, 1)
    assert {r.experiment.optim.lr for r in final} == {sel.lr}
    assert all(r.eval_splits == ("test",) and r.train_split == "trainval" for r in final)


def test_pinned_plan_and_resume_skip(tmp_path):
    exp = tiny_exp()
    runs = sweep.plan_pinned([exp], str(tmp_path))
    assert [r.seed for r in runs] == [0, 1]
    assert sweep.summarize(runs)["new"] == 2
    rec = execute(runs[0], echo=lambda s: None)
    assert rec["smoke"] is True and "test_top1" in rec["metrics"]
    assert sweep.summarize(runs) == {"done": 1, "failed": 0, "started": 0, "new": 1}
    assert [r.run_id for r in sweep.todo(runs)] == [runs[1].run_id]


def test_paper_lr_comes_from_the_pinned_twin_of_the_same_method():
    from pathlib import Path

    from replicate import config

    root = Path(__file__).resolve().parents[1] / "papers" / "gatevpt" / "configs"
    own = config.load(root / "search/fgvc/mae_vitb16/gatevpt/cub.py")
    twin = config.load(root / "pinned/fgvc/mae_vitb16/cub.py")
    assert sweep._paper_lr(own) == twin.optim.lr == 0.1  # Table 5, CUB / MAE
    # the baseline's pinned twin trains GateVPT, not VPT-deep: no paper lr for it
    assert sweep._paper_lr(config.load(root / "search/fgvc/mae_vitb16/vpt_deep/cub.py")) is None
