"""Damaged run files and what a record holds (issue 17.5 and 17.7).

A truncated last.ckpt names itself and how to restart; a truncated record.json is a failed run
(with its reason) in status, planning and collect, and the next run repairs it; wall_time_s is
the total over attempts; the non-finite-loss message counts epochs from 1 as the log does;
records respect the umask."""
import json
import os

import pytest
import torch

from replicate import config, sweep
from replicate.cli import main
from replicate.engine import execute, run_state
from replicate.engine.run import Run, atomic_write_json, failure_reason
from replicate.results.collect import collect
from tests.helpers import demo_paper, tiny_config_text

TINY = tiny_config_text('files-tiny')


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """The tiny config as the smoke config of a paper 'demo' (so plan/status see it)."""
    return demo_paper(tmp_path, monkeypatch, {"tiny": TINY}, published=False) \
        / "configs" / "smoke" / "tiny.py"


def planned_run(cfg, root, seed=0) -> Run:
    """The run `reproduce --mode smoke` plans for this config and seed."""
    exp = config.load(cfg)
    return next(r for r in sweep.plan_pinned([exp], str(root), "smoke") if r.seed == seed)


def quiet(_msg):
    pass


def test_truncated_checkpoint_names_the_file_and_the_restart(cfg, tmp_path, capsys):
    run = planned_run(cfg, tmp_path / "runs")
    assert execute(run, echo=quiet, should_stop=lambda: True) is None  # stopped after epoch 1
    ckpt = run.run_dir / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    args = ["run", str(cfg), "--seed", "0", "--runs-root", str(tmp_path / "runs")]
    for _ in range(2):  # every re-run says the same, in one line
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
        assert str(ckpt) in err[0] and "delete it" in err[0] and "restart" in err[0]
    assert run_state(run.run_dir) == "failed" and str(ckpt) in failure_reason(run.run_dir)
    ckpt.unlink()  # the fix the message gives
    assert main(args) == 0
    assert run_state(run.run_dir) == "done"


def test_truncated_record_is_failed_everywhere_and_repaired_by_a_rerun(cfg, tmp_path, capsys):
    root = tmp_path / "runs"
    run = planned_run(cfg, root)
    rec = execute(run, echo=quiet)
    path = run.run_dir / "record.json"
    path.write_text(path.read_text()[:50])
    assert run_state(run.run_dir) == "failed"  # not 'done'
    assert "record.json is unreadable" in failure_reason(run.run_dir)
    assert run in sweep.todo([run])  # the stage re-runs it
    assert main(["status", "--paper", "demo", "--mode", "smoke", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0/2 done, 1 failed" in out
    assert f"FAILED {run.run_id}: {path} is unreadable" in out
    un = collect(root, "demo", stages=("smoke",)).attrs["unfinished"]
    row = un[un["run_id"] == run.run_id].iloc[0]
    assert row["state"] == "failed" and "record.json" in row["detail"]
    again = execute(run, echo=quiet)  # resumes from last.ckpt: nothing left to train
    assert json.loads(path.read_text())["metrics"] == again["metrics"] == rec["metrics"]
    assert run_state(run.run_dir) == "done"


def test_wall_time_is_the_total_over_attempts(cfg, tmp_path):
    run = planned_run(cfg, tmp_path / "runs")
    execute(run, echo=quiet, should_stop=lambda: True)
    ckpt = run.run_dir / "last.ckpt"
    ck = torch.load(ckpt)
    assert ck["wall_time_s"] > 0
    ck["wall_time_s"] = 1000.0  # stands for a long first attempt
    torch.save(ck, ckpt)
    rec = execute(run, echo=quiet)
    assert rec["wall_time_s"] >= 1000.0


def test_non_finite_loss_counts_epochs_from_one(cfg, tmp_path, monkeypatch):
    from replicate.engine import train
    monkeypatch.setattr(train, "train_step", lambda *a, **k: torch.tensor(float("nan")))
    run = planned_run(cfg, tmp_path / "runs")
    with pytest.raises(train.NonFiniteLoss, match=r"in epoch 1/2 "):
        execute(run, echo=quiet)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_records_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == mode


def test_run_command_uses_the_planned_run_id(cfg, tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["run", str(cfg), "--seed", "1", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    planned = planned_run(cfg, root, seed=1)
    assert f"run dir: {planned.run_dir}" in out
    assert run_state(planned.run_dir) == "done"
    assert main(["plan", "--paper", "demo", "--mode", "smoke", "--runs-root", str(root)]) == 0
    assert "(1 done," in capsys.readouterr().out  # the planner sees the hand-started run
