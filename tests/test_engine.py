"""One run -> a run directory: files, record, idempotence, exact resume, optimisation details,
failures.  Tiny backbone, synthetic data, a few steps per epoch (CPU, seconds)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from replicate import methods
from replicate.backbones.converters import CheckpointError
from replicate.engine import NonFiniteLoss, Run, execute, run_state
from replicate.engine import train as engine_train
from replicate.protocol import optimizer_lr
from tests.helpers import TINY_PREFIX, tensors_equal, tiny_experiment, write_fake_checkpoint

#: docs/contributing.md, "record.json (one per finished run)"
RECORD_FIELDS = """run_id status smoke paper experiment protocol stage seed backbone backbone_name
method method_type benchmark task group lr wd batch_size epochs train_split eval_splits
selected_epoch metrics history trainable_params total_params backbone_params commit env device
precision wall_time_s images_per_s config_hash config tags cell finished""".split()
HISTORY_FIELDS = {"epoch", "train_loss", "lr", "images_per_s", "val_top1"}

quiet = lambda msg: None  # noqa: E731



def make_run(root, exp=None, seed=0, **changes) -> Run:
    exp = exp or tiny_experiment(**changes)
    return Run(exp, seed=seed, stage="smoke", train_split="train", eval_splits=("val", "test"),
               runs_root=str(root), tags={"method_label": "GateVPT-test"})


def vpt_warmup_cosine(epoch: int, warmup: int, total: int) -> float:
    """KMnP/vpt (and GatedPromptTuning) src/solver/lr_scheduler.py WarmupCosineSchedule, stepped
    once per epoch and starting at step 0, re-stated here: the lr multiplier of ``epoch``."""
    if epoch < warmup:
        return epoch / max(1.0, warmup)
    progress = (epoch - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------ a run directory
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run A: uninterrupted, 4 epochs (shared by several tests; do not modify its files)."""
    root = tmp_path_factory.mktemp("runsA")
    run = make_run(root)
    record = execute(run, echo=quiet)
    return run, record


def test_run_directory_and_record(finished):
    run, record = finished
    d = run.run_dir
    assert d == run.run_dir.parent / run.run_id and d.parts[-3:-1] == ("demo", "smoke")
    for f in ("config.json", "log.txt", "last.ckpt", "record.json"):
        assert (d / f).is_file(), f
    assert not (d / "failed.json").exists() and run_state(d) == "done"
    assert set(RECORD_FIELDS) <= set(record), set(RECORD_FIELDS) - set(record)
    assert json.loads((d / "record.json").read_text()) == json.loads(json.dumps(record, default=str))
    assert record["status"] == "done" and record["smoke"] is True
    assert record["method"] == "GateVPT-test" and record["method_type"] == "gatevpt"
    assert record["backbone"] == "micro_mae_test" and record["seed"] == 0
    assert record["config_hash"] == run.experiment.config_hash()
    assert record["epochs"] == 4 and len(record["history"]) == 4
    for h in record["history"]:
        assert HISTORY_FIELDS <= set(h) and math.isfinite(h["train_loss"])
    m = record["metrics"]
    assert m["val_n"] == 200 and m["test_n"] == 400
    for s in ("val", "test"):
        assert 0 <= m[f"{s}_top1"] <= 100 and math.isfinite(m[f"{s}_loss"])
    assert record["history"][-1]["val_top1"] == m["val_top1"]  # last epoch = final model
    assert 0 < record["trainable_params"] < record["backbone_params"] < record["total_params"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["run_id"] == run.run_id and cfg["experiment"]["optim"]["lr"] == 0.5
    assert Run.from_dict(cfg).run_id == run.run_id
    log = (d / "log.txt").read_text()
    assert log.count("epoch ") >= 4 and "loss" in log and "img/s" in log and "val_top1" in log
    assert "smoke" in log


def test_lr_per_epoch_in_the_record(finished):
    _, record = finished
    got = [h["lr"] for h in record["history"]]
    want = [0.5 * vpt_warmup_cosine(e, 1, 4) for e in range(4)]
    # float64, the same cosine through another call path: ~1e-16; lrs are <= 0.5, so absolute
    assert got == pytest.approx(want, abs=1e-12) and got[0] == 0.0


def test_reexecuting_a_finished_run_returns_its_record_without_training(finished, monkeypatch):
    run, record = finished
    log_before = (run.run_dir / "log.txt").read_text()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(engine_train, "_train", no_training)
    assert execute(run, echo=quiet) == json.loads((run.run_dir / "record.json").read_text())
    assert (run.run_dir / "log.txt").read_text() == log_before


def test_resume_after_preemption_equals_the_uninterrupted_run(finished, tmp_path):
    run_a, record_a = finished
    run_b = make_run(tmp_path)
    assert run_b.run_id == run_a.run_id
    polls = []

    def stop_after_two():
        polls.append(1)
        return len(polls) >= 2

    assert execute(run_b, echo=quiet, should_stop=stop_after_two) is None
    assert run_state(run_b.run_dir) == "started"
    assert torch.load(run_b.run_dir / "last.ckpt")["epoch"] == 1  # stopped after epoch 2 of 4
    record_b = execute(run_b, echo=quiet)
    assert "resumed from" in (run_b.run_dir / "log.txt").read_text()
    assert record_b["metrics"] == record_a["metrics"]
    strip = lambda hs: [{k: v for k, v in h.items() if k != "images_per_s"} for h in hs]  # noqa
    assert strip(record_b["history"]) == strip(record_a["history"])
    ck_a = torch.load(run_a.run_dir / "last.ckpt")["model"]
    ck_b = torch.load(run_b.run_dir / "last.ckpt")["model"]
    assert set(ck_a) == {"method.prompt_embeddings", "method.gate_logit", "method.temp",
                         "method.head.weight", "method.head.bias"}
    assert tensors_equal(ck_a, ck_b)


def test_training_changes_only_trainable_weights(tmp_path, monkeypatch):
    name = TINY_PREFIX + "mae_test"
    path, sd = write_fake_checkpoint(tmp_path / "ckpt", name, seed=9)
    built = []
    real_build = engine_train.build_model

    def spy(run, device):
        model, entry = real_build(run, device)
        built.append((model, {k: v.clone() for k, v in model.trainable_state_dict().items()}))
        return model, entry

    monkeypatch.setattr(engine_train, "build_model", spy)
    run = make_run(tmp_path / "runs", checkpoint=str(path), **{"optim.epochs": 2})
    execute(run, echo=quiet)
    model, initial = built[0]
    assert tensors_equal(model.adapter.vit.state_dict(), sd)  # frozen = the checkpoint's tensors
    trained = model.trainable_state_dict()
    assert all(not torch.equal(trained[k], initial[k]) for k in initial), "a trainable tensor never moved"


# ------------------------------------------------------------------ optimiser and schedule
@pytest.mark.parametrize("epochs,warmup", [(4, 1), (10, 3), (6, 0), (5, 5), (100, 10)])
def test_schedule_is_vpts_warmup_cosine_per_epoch(epochs, warmup):
    run = make_run("/unused", **{"optim.epochs": epochs, "optim.warmup_epochs": warmup,
                                 "optim.lr": 0.8})
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.8)
    sched = engine_train.build_scheduler(opt, run)
    got = []
    for e in range(epochs):
        sched.step(e)
        got.append(opt.param_groups[0]["lr"])
    want = [0.8 * vpt_warmup_cosine(e, warmup, epochs) for e in range(epochs)]
    # float64, the same cosine through another call path: ~1e-16; lrs are <= 0.8, so absolute
    assert got == pytest.approx(want, abs=1e-12)
    if warmup:
        assert got[0] == 0.0  # VPT trains epoch 0 with lr 0


def _model_for(run):
    from replicate import backbones

    adapter = backbones.create(run.experiment.backbone.name, checkpoint="")
    return methods.build_model(adapter, run.experiment.method.type,
                               run.experiment.method.options, 4, "cls")


@pytest.mark.parametrize("scaling,protocol,lr,bs,want", [
    ("none", "synthetic-smoke", 0.5, 64, 0.5),          # GateVPT run.sh: as given
    ("linear256", "vtab1k-vpt", 0.5, 64, 0.125),        # VPT tune_*.py: lr * bs / 256
    ("linear256", "fgvc-vpt", 2.5, 128, 1.25)])
def test_lr_scaling(scaling, protocol, lr, bs, want):
    changes = {"optim.lr_scaling": scaling, "protocol": protocol, "optim.lr": lr,
               "optim.batch_size": bs}
    if protocol != "synthetic-smoke":
        bench = protocol.split("-")[0]
        changes.update({"data.benchmark": bench, "data.task": "cifar100" if bench == "vtab1k" else "cub"})
    run = make_run("/unused", **changes)
    opt = engine_train.build_optimizer(_model_for(run), run)
    # float64 lr * bs / 256 (exact for these values): the default rel 1e-6 only covers rounding
    assert all(g["lr"] == pytest.approx(want) for g in opt.param_groups)
    assert optimizer_lr(lr, bs, scaling) == pytest.approx(want)


@pytest.mark.parametrize("wd_on_head_bias", [False, True])
def test_weight_decay_spares_only_the_head_bias(wd_on_head_bias):
    run = make_run("/unused", **{"optim.weight_decay": 0.01, "optim.wd_on_head_bias": wd_on_head_bias})
    model = _model_for(run)
    opt = engine_train.build_optimizer(model, run)
    names = {id(p): n for n, p in model.named_parameters()}
    by_wd = {}
    for g in opt.param_groups:
        by_wd.setdefault(g["weight_decay"], set()).update(names[id(p)] for p in g["params"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set().union(*by_wd.values()) == trainable  # every trainable tensor, nothing else
    if wd_on_head_bias:
        assert by_wd == {0.01: trainable}
    else:
        assert by_wd == {0.01: trainable - {"method.head.bias"}, 0.0: {"method.head.bias"}}
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


# ------------------------------------------------------------------ failures
def test_non_finite_loss_stops_the_run(tmp_path):
    run = make_run(tmp_path, **{"optim.lr": 1e30, "optim.warmup_epochs": 0})
    with pytest.raises(NonFiniteLoss):
        execute(run, echo=quiet)
    d = run.run_dir
    assert not (d / "record.json").exists() and run_state(d) == "failed"
    failed = json.loads((d / "failed.json").read_text())
    assert failed["error"].startswith("NonFiniteLoss") and "lr" in failed["error"]
    assert "FAILED" in (d / "log.txt").read_text()


def test_missing_checkpoint_fails_with_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "mae_pretrain_vit_base.pth"
    run = make_run(tmp_path / "runs", checkpoint=str(missing))
    with pytest.raises(CheckpointError):
        execute(run, echo=quiet)
    failed = json.loads((run.run_dir / "failed.json").read_text())
    assert "CheckpointError" in failed["error"] and str(missing) in failed["error"]
    assert not (run.run_dir / "record.json").exists()
