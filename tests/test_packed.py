"""Packed sweeps (replicate/engine/packed.py): a grid trained together equals its runs alone.

Tolerance (CPU, fp32): trainable weights and losses within 1e-5 relative to their scale
(the frozen blocks run on a K-times larger batch, so BLAS may round differently), top-1
identical.  Tiny backbone, synthetic data, a few steps per epoch (seconds)."""
from __future__ import annotations

import json

import pytest
import torch

from replicate import backbones, methods
from replicate.engine import Run, execute, run_state
from replicate.engine.packed import (PackError, PackedRunsFailed, RngStreams, check_packable,
                                     execute_packed, packed_forward)
from tests.helpers import TINY_PREFIX, assert_close_to_scale, method_options, tiny_experiment

#: float32: a K-times larger batch changes BLAS blocking, ~1e-7 relative per step (measured
#: <=6e-8 of the weights' scale after 9 steps); a mixed-up run or RNG stream differs by O(1)
REL = 1e-5
quiet = lambda msg: None  # noqa: E731


def grid(root, method="gatevpt", seeds=(0, 0, 1), **changes):
    """Three runs of one grid: different lr/wd, two seeds (so two data orders)."""
    base = tiny_experiment(method, **{"optim.epochs": 3, "train.max_steps_per_epoch": 3,
                                      **changes})
    hp = [(0.5, 1e-3), (0.1, 0.0), (0.3, 1e-2)]
    return [Run(base.replace(**{"optim.lr": lr, "optim.weight_decay": wd}), seed=s,
                stage="search", train_split="train", eval_splits=("val", "test"),
                runs_root=str(root), tags={"lr": lr}) for (lr, wd), s in zip(hp, seeds)]


def weights(run) -> dict:
    return torch.load(run.run_dir / "last.ckpt")["model"]


def assert_same_run(rec_a: dict, rec_b: dict, run_a, run_b) -> None:
    for split in ("val", "test"):
        assert rec_a["metrics"][f"{split}_top1"] == rec_b["metrics"][f"{split}_top1"]
        assert rec_a["metrics"][f"{split}_loss"] == pytest.approx(rec_b["metrics"][f"{split}_loss"],
                                                                  rel=REL)  # see REL
    la = [h["train_loss"] for h in rec_a["history"]]
    lb = [h["train_loss"] for h in rec_b["history"]]
    assert la == pytest.approx(lb, rel=REL)  # see REL
    wa, wb = weights(run_a), weights(run_b)
    assert set(wa) == set(wb)
    for k in wa:
        assert_close_to_scale(wa[k], wb[k], rel=REL, msg=f"{k} differs")  # see REL


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    root = tmp_path_factory.mktemp("alone")
    runs = grid(root)
    return runs, [execute(r, echo=quiet) for r in runs]


@pytest.mark.parametrize("method", ["gatevpt", "vpt_deep"])
def test_packed_grid_equals_runs_alone(method, tmp_path, alone):
    if method == "gatevpt":
        runs_a, recs_a = alone
    else:  # prompt dropout before every block: the per-run RNG streams matter most here
        runs_a = grid(tmp_path / "alone", method)
        recs_a = [execute(r, echo=quiet) for r in runs_a]
    runs_b = grid(tmp_path / "packed", method)
    recs_b = execute_packed(runs_b, echo=quiet)
    assert [r.run_id for r in runs_a] == [r.run_id for r in runs_b]  # same runs, other root
    for ra, rb, a, b in zip(runs_a, runs_b, recs_a, recs_b):
        assert_same_run(a, b, ra, rb)
        assert b["tags"]["packed"] == 3 and b["status"] == "done"
        assert set(a) == set(b)  # the engine's record format
        on_disk = json.loads((rb.run_dir / "record.json").read_text())
        assert on_disk["run_id"] == rb.run_id and on_disk["metrics"] == b["metrics"]
    # the configs really trained differently (a pack that ran one config thrice would fail)
    w = [weights(r)["method.head.weight"] for r in runs_b]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[0], w[2])  # O(1) apart


def test_packed_resume_equals_uninterrupted(tmp_path, alone):
    runs_a, recs_a = alone
    runs_b = grid(tmp_path)
    polls = []

    def stop_after_first():
        polls.append(1)
        return True

    assert execute_packed(runs_b, echo=quiet, should_stop=stop_after_first) == [None] * 3
    assert len(polls) == 1
    assert all(run_state(r.run_dir) == "started" for r in runs_b)
    assert all(torch.load(r.run_dir / "last.ckpt")["epoch"] == 0 for r in runs_b)
    recs_b = execute_packed(runs_b, echo=quiet)
    for ra, rb, a, b in zip(runs_a, runs_b, recs_a, recs_b):
        assert "resumed from" in (rb.run_dir / "log.txt").read_text()
        assert_same_run(a, b, ra, rb)
    # idempotent: a finished pack returns its records without training
    assert execute_packed(runs_b, echo=quiet) == recs_b


def test_a_diverging_run_fails_alone(tmp_path, alone):
    runs_a, recs_a = alone
    runs = grid(tmp_path)
    # outside the search stage a non-finite loss is a failure (in search it is a result:
    # test_a_diverging_search_run_ends_with_a_diverged_record)
    bad = Run(runs[1].experiment.replace(**{"optim.lr": 1e30}),
              seed=0, stage="final", train_split="train", eval_splits=("val", "test"),
              runs_root=str(tmp_path), tags={})
    runs = [runs[0], bad, runs[2]]
    with pytest.raises(PackedRunsFailed) as info:
        execute_packed(runs, echo=quiet)
    recs = info.value.records
    assert recs[1] is None and list(info.value.failures) == [bad.run_id]
    failed = json.loads((bad.run_dir / "failed.json").read_text())
    assert failed["error"].startswith("NonFiniteLoss")
    for i in (0, 2):  # the others are exactly what they are alone
        assert_same_run(recs_a[i], recs[i], runs_a[i], runs[i])


def test_a_diverging_search_run_ends_with_a_diverged_record(tmp_path, alone):
    runs_a, recs_a = alone
    runs = grid(tmp_path)
    bad = Run(runs[1].experiment.replace(**{"optim.lr": 1e30}),
              seed=0, stage="search", train_split="train", eval_splits=("val", "test"),
              runs_root=str(tmp_path), tags={})
    runs = [runs[0], bad, runs[2]]
    recs = execute_packed(runs, echo=quiet)  # no failure: selection skips the grid point
    assert recs[1]["status"] == "diverged" and recs[1]["metrics"] == {}
    assert recs[1]["diverged"]["epoch"] >= 1 and not (bad.run_dir / "failed.json").exists()
    assert json.loads((bad.run_dir / "record.json").read_text())["status"] == "diverged"
    for i in (0, 2):
        assert_same_run(recs_a[i], recs[i], runs_a[i], runs[i])


def test_check_packable_names_the_differing_key(tmp_path):
    runs = grid(tmp_path)
    check_packable(runs)  # lr/wd/seed may differ
    other_task = Run(runs[0].experiment.replace(**{"data.task": "stripes"}), 0, "search", "train",
                     ("val", "test"), str(tmp_path))
    with pytest.raises(PackError, match="data.task"):
        check_packable([runs[0], other_task])
    other_bs = Run(runs[0].experiment.replace(**{"optim.batch_size": 16}), 0, "search", "train",
                   ("val", "test"), str(tmp_path))
    with pytest.raises(PackError, match="optim.batch_size"):
        execute_packed([runs[0], other_bs], echo=quiet)
    ft = tiny_experiment("finetune")
    with pytest.raises(PackError, match="trains the backbone"):
        check_packable([Run(ft, 0, "search", "train", ("val",), str(tmp_path)),
                        Run(ft.replace(**{"optim.lr": 0.2}), 0, "search", "train", ("val",),
                            str(tmp_path))])
    other_split = Run(runs[0].experiment, 0, "final", "trainval", ("test",), str(tmp_path))
    with pytest.raises(PackError, match="one stage"):
        check_packable([runs[0], other_split])


def _method_cases():
    cases = []
    for m in methods.registered():
        bb = "beit_micro_patch8_32.beitv2_test" if m == "vptm" else TINY_PREFIX + "mae_test"
        if bb not in backbones.registered():
            continue
        cases.append((m, bb))
    return cases


@pytest.mark.parametrize("method,backbone", _method_cases())
def test_packed_forward_equals_each_model(method, backbone):
    """Every registered method: K models on one adapter, concatenated through the blocks, give
    each model's own logits and gradients (training mode, dropout streams per model)."""
    adapter = backbones.create(backbone, "")
    if methods.get(method).trains_backbone:  # fine-tuning owns its backbone: never packed
        m = methods.build_model(adapter, method, method_options(method), 5)
        with pytest.raises(PackError, match="backbone"):
            packed_forward([m, m], [torch.zeros(1, 3, 32, 32)] * 2)
        return
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        m = methods.build_model(adapter, method, method_options(method), 5)
        if hasattr(m.method, "temp"):  # distinct temperatures: a shared one would be caught
            with torch.no_grad():
                m.method.temp.mul_(1 + 0.3 * seed)
        m.train(True)
        models.append(m)
    g = torch.Generator().manual_seed(3)
    imgs = [torch.randn(4, 3, 32, 32, generator=g) for _ in models]
    rng = RngStreams(torch.device("cpu"))
    for k in range(3):
        rng.seed(k, 10 + k, 0)
    packed = packed_forward(models, imgs, rng)
    sum(lg.square().sum() for lg in packed).backward()
    grads_p = [[p.grad.clone() for p in m.trainable_parameters()] for m in models]
    for m in models:
        m.zero_grad(set_to_none=True)
    for k, (m, x) in enumerate(zip(models, imgs)):
        rng.seed(k, 10 + k, 0)  # the same stream alone
        with rng.use(k):
            alone = m(x)
        assert_close_to_scale(packed[k], alone, rel=REL)  # see REL
        alone.square().sum().backward()
        for gp, p in zip(grads_p[k], m.trainable_parameters()):
            # float32 backward through the blocks sums over a K-times larger batch: measured
            # 4e-7 of the gradient's scale; another model's stream or slice would be O(1)
            assert_close_to_scale(gp, p.grad, rel=1e-4)


# ------------------------------------------------------------------ device memory, seed packs
def test_a_pack_that_would_not_fit_is_refused_with_the_estimate(tmp_path):
    from replicate.engine.packed import PACK_MEMORY_FRACTION, pack_memory

    runs = grid(tmp_path)
    est = pack_memory(runs)
    assert est["per_run"] > 0 and est["shared"] > 0  # counted on the meta device
    assert est["total"] == 3 * est["per_run"] + est["shared"]
    # exactly two runs fit: the message says so, with the estimate
    room = int((2.5 * est["per_run"] + est["shared"]) / PACK_MEMORY_FRACTION)
    with pytest.raises(PackError, match=r"pack of 3 runs needs about .* GiB.*--pack 2"):
        check_packable(runs, device_memory=room)
    check_packable(runs[:2], device_memory=room)
    check_packable(runs, device_memory=10 * room)
    check_packable(runs)  # a CPU has no device-memory limit here


def test_the_seeds_of_a_cell_pack_together(tmp_path):
    """A pinned cell's seeds differ only in the seed: one pack, one process (--pack 5)."""
    from replicate import sweep
    from replicate.launch.submit import make_packs

    exps = [tiny_experiment("gatevpt", **{"optim.lr": lr}).replace(name=f"cell{lr}")
            for lr in (0.1, 0.2)]
    runs = sweep.plan_pinned(exps, str(tmp_path))
    seeds = len(runs) // 2
    assert seeds >= 2
    packs = make_packs(runs, pack_size=seeds)
    assert [len(p) for p in packs] == [seeds, seeds]
    for p in packs:
        assert len({r.experiment.optim.lr for r in p}) == 1  # one cell per pack
        check_packable(p)
