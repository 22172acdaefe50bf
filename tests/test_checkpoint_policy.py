"""Sparser checkpoints keep resume exact (issue 16, item 4).

``train.checkpoint_every_epochs`` / ``checkpoint_every_s`` thin out the per-epoch ``last.ckpt``
writes.  A run killed hard (no signal, no checkpoint at the kill) resumes from its last
periodic checkpoint and ends equal to the uninterrupted run; a preempted run (should_stop)
still writes its checkpoint at the boundary where it stops.  Tiny backbone, CPU, seconds.
"""
from __future__ import annotations

import pytest
import torch

from replicate.engine import Run, execute, run_state
from replicate.engine import train as engine_train
from replicate.engine.packed import execute_packed
from replicate.engine.train import CheckpointPolicy
from tests.helpers import tensors_equal, tiny_experiment

quiet = lambda msg: None  # noqa: E731
EPOCHS = 5


def make_run(root, every: int = 2, seed: int = 0, lr: float = 0.1) -> Run:
    exp = tiny_experiment(**{"optim.epochs": EPOCHS, "optim.lr": lr,
                             "train.checkpoint_every_epochs": every,
                             "train.checkpoint_every_s": 0.0})
    return Run(exp, seed=seed, stage="smoke", train_split="train", eval_splits=("val",),
               runs_root=str(root))


def _strip(history):
    return [{k: v for k, v in h.items() if k != "images_per_s"} for h in history]


class HardKill(KeyboardInterrupt):
    """Stands for SIGKILL: nothing of the engine runs after it (no checkpoint, no failed.json)."""


def _counting_saves(monkeypatch, module):
    saved = []
    real = module.save_checkpoint

    def spy(path, model, opt, epoch, *a, **k):
        saved.append(epoch)
        return real(path, model, opt, epoch, *a, **k)

    monkeypatch.setattr(module, "save_checkpoint", spy)
    return saved


def _kill_in_epoch(monkeypatch, epoch_to_kill: int):
    """Raise HardKill at the first training step of ``epoch_to_kill`` (0-based)."""
    real = engine_train.seed_everything
    monkeypatch.setattr(engine_train, "seed_everything", lambda seed, epoch: (
        (_ for _ in ()).throw(HardKill()) if epoch == epoch_to_kill else real(seed, epoch)))


def test_policy_epochs_time_last_and_stop():
    t = [0.0]
    spec = type("T", (), {"checkpoint_every_epochs": 3, "checkpoint_every_s": 10.0})()
    p = CheckpointPolicy(spec, clock=lambda: t[0])
    assert [e for e in range(7) if p.due(e, False, False)] == [2, 5]
    assert p.due(0, last=True, stopping=False) and p.due(0, last=False, stopping=True)
    t[0] = 10.0  # ten seconds since the last write: due whatever the epoch
    assert p.due(0, False, False)
    p.written()
    assert not p.due(0, False, False)


def test_sparse_checkpoints_and_hard_kill_resume_equals_uninterrupted(tmp_path, monkeypatch):
    ref = execute(make_run(tmp_path / "a", every=1), echo=quiet)
    run = make_run(tmp_path / "b", every=2)
    assert run.run_id == make_run(tmp_path / "b", every=1).run_id  # not part of the hash
    saved = _counting_saves(monkeypatch, engine_train)
    with monkeypatch.context() as m:
        _kill_in_epoch(m, 3)
        with pytest.raises(HardKill):
            execute(run, echo=quiet)
    assert saved == [1]  # after epochs 2 only (every 2); killed in epoch 4
    assert torch.load(run.run_dir / "last.ckpt")["epoch"] == 1
    assert run_state(run.run_dir) == "started"
    rec = execute(run, echo=quiet)
    assert "resumed from" in (run.run_dir / "log.txt").read_text()
    assert saved == [1, 3, 4]  # epoch 4 again, then the last epoch
    assert rec["metrics"] == ref["metrics"]
    assert _strip(rec["history"]) == _strip(ref["history"])
    assert tensors_equal(torch.load(run.run_dir / "last.ckpt")["model"],
                         torch.load(make_run(tmp_path / "a").run_dir / "last.ckpt")["model"])


def test_preemption_still_checkpoints_at_the_boundary(tmp_path, monkeypatch):
    run = make_run(tmp_path, every=4)
    saved = _counting_saves(monkeypatch, engine_train)
    polls = []
    assert execute(run, echo=quiet, should_stop=lambda: polls.append(1) or len(polls) >= 2) \
        is None
    assert saved == [1]  # epoch 2 is not a multiple of 4, but the run stops there
    assert torch.load(run.run_dir / "last.ckpt")["epoch"] == 1


def test_packed_runs_follow_the_policy_and_resume_exactly(tmp_path, monkeypatch):
    from replicate.engine import packed as packed_mod

    runs = [make_run(tmp_path / "p", every=2, seed=s, lr=lr)
            for s, lr in ((0, 0.1), (1, 0.2))]
    alone = [execute(make_run(tmp_path / "alone", every=1, seed=r.seed,
                              lr=r.experiment.optim.lr), echo=quiet) for r in runs]
    saved = _counting_saves(monkeypatch, packed_mod)
    with monkeypatch.context() as m:  # packed runs seed through RngStreams.seed
        real = packed_mod.RngStreams.seed

        def seed(self, k, s, epoch):
            if epoch == 3:
                raise HardKill()
            return real(self, k, s, epoch)

        m.setattr(packed_mod.RngStreams, "seed", seed)
        with pytest.raises(HardKill):
            execute_packed(runs, echo=quiet)
    assert saved == [1, 1]  # both runs, after epoch 2 only
    recs = execute_packed(runs, echo=quiet)
    for rec, ref in zip(recs, alone):
        assert rec["metrics"]["val_top1"] == pytest.approx(ref["metrics"]["val_top1"], abs=1e-9)
        # packed vs alone: equal within the packed engine's stated 1e-5 (tests/test_packed.py)
        for h, g in zip(rec["history"], ref["history"]):
            assert h["train_loss"] == pytest.approx(g["train_loss"], rel=1e-5)
