"""The planner counts (issue 16, item 5): ``plan`` prices a stage as counted FLOPs at a measured
(or stated default) utilisation, plus a data term and a per-run term.

Checked against the FLOP counter itself on tiny shapes (nothing typed in): per-image counts
equal a direct ``FlopCounterMode`` count of a real CPU training step; a run's FLOPs follow its
epochs, its protocol's splits and its evaluations; the terms add up as documented.
"""
from __future__ import annotations

import csv
import re

import pytest
import torch

from replicate import backbones, methods, sweep
from replicate.cli import main
from replicate.data.tasks import split_size
from replicate.engine import Run
from replicate.engine.cost import count_flops, flops_per_image, meta_model
from replicate.protocol import get as get_protocol
from replicate import estimate as est_mod
from tests.helpers import TINY_PREFIX, tiny_experiment

BACKBONE = TINY_PREFIX + "mae_test"


@pytest.fixture
def no_bench(tmp_path, monkeypatch):
    """No results/bench CSVs: the planner falls back to its stated defaults."""
    monkeypatch.setattr(est_mod, "REPO", tmp_path)
    return tmp_path


@pytest.mark.parametrize("method,options", [("gatevpt", {"num_prompts": 5}),
                                            ("vpt_deep", {"num_prompts": 3}),
                                            ("linear", {})])
def test_per_image_flops_equal_a_direct_count_of_a_real_step(method, options):
    torch.manual_seed(0)
    # eager attention: its explicit matmuls, as the benchmark's FLOP count (reference step)
    adapter = backbones.create(BACKBONE, "", attention="eager")
    real = methods.build_model(adapter, method, options, 7)
    train, evaluation = flops_per_image(BACKBONE, method, options, 7)
    # a real CPU step at another batch size: every counted operator is linear in the batch
    # (float64 FLOP counts of integers: rel 1e-12 leaves room for float64 rounding only)
    assert count_flops(real, 3, True) / 3 == pytest.approx(train, rel=1e-12)
    assert count_flops(real, 3, False) / 3 == pytest.approx(evaluation, rel=1e-12)
    if method != "linear":  # backward to the prompts: through every block once more
        assert 1.9 * evaluation < train < 3.1 * evaluation
    # the class count enters through the head only, linearly: interpolation is exact
    direct = count_flops(meta_model(BACKBONE, method, options, 11), 2, True) / 2
    assert flops_per_image(BACKBONE, method, options, 11)[0] == pytest.approx(direct, rel=1e-12)


def test_more_prompts_cost_more():
    few = flops_per_image(BACKBONE, "gatevpt", {"num_prompts": 2}, 4)[0]
    many = flops_per_image(BACKBONE, "gatevpt", {"num_prompts": 20}, 4)[0]
    assert many > 1.5 * few  # 17 + 20 tokens vs 17 + 2: quadratic attention, linear MLPs
    # float options (init values) change no matmul: one count serves both
    assert flops_per_image(BACKBONE, "gatevpt", {"num_prompts": 2, "gate_init": 3.0}, 4)[0] == few


def test_run_flops_follow_epochs_splits_and_evaluations():
    exp = tiny_experiment("gatevpt", **{"optim.epochs": 3, "train.max_steps_per_epoch": None,
                                        "train.eval_every": 1})
    train_fpi, eval_fpi = flops_per_image(BACKBONE, "gatevpt", dict(exp.method.options), 4)
    n = {s: split_size("synthetic", "shapes", s) for s in ("train", "trainval", "val", "test")}
    run = Run(exp, 0, "search", "train", ("val", "test"), "/tmp/unused")
    w = est_mod.run_work(run)
    # float64 products of integer counts: rel 1e-12 (1e-6 by default below) is rounding only
    assert w.train_flops == pytest.approx(3 * n["train"] * train_fpi, rel=1e-12)
    # epochs 1 and 2 evaluate val; the final evaluation reads val and test
    assert w.eval_flops == pytest.approx((2 * n["val"] + n["val"] + n["test"]) * eval_fpi,
                                         rel=1e-12)
    # the training split is the run's (the protocol's), not a constant
    pinned = sweep.plan_pinned([exp], "/tmp/unused")[0]
    final_train = get_protocol(exp.protocol).final_train
    assert pinned.train_split == final_train
    assert est_mod.run_work(pinned).train_flops == pytest.approx(
        3 * n[final_train] * train_fpi, rel=1e-12)
    capped = est_mod.run_work(Run(exp.replace(**{"train.max_steps_per_epoch": 2}), 0, "search",
                                  "train", ("val",), "/tmp/unused"))
    assert capped.train_flops == pytest.approx(3 * 2 * exp.optim.batch_size * train_fpi)


def test_stage_terms_add_up_with_the_stated_defaults(no_bench):
    exp = tiny_experiment("gatevpt", **{"train.checkpoint_every_epochs": 2})
    runs = [Run(exp, s, "pinned", "trainval", ("test",), "/tmp/unused") for s in (0, 1, 2)]
    e = est_mod.estimate(runs, "h100")
    work = est_mod.run_work(runs[0])
    assert work.precision == "fp32" and work.checkpoints == 2  # 4 epochs, every 2
    # the same float64 formulas recomputed: the default rel 1e-6 only forgives term order
    assert e.flops == pytest.approx(3 * work.flops)
    peak = est_mod.PEAK_TFLOPS["h100"]
    assert e.compute_s == pytest.approx(e.flops / (est_mod.DEFAULT_UTILISATION * peak["tf32"]
                                                   * 1e12))
    assert e.floor_s("bf16") == pytest.approx(e.flops / (peak["bf16"] * 1e12))
    assert e.per_run_s == pytest.approx(3 * (est_mod.PER_RUN_S + 2 * est_mod.CHECKPOINT_SAVE_S))
    # the splits are decoded once for the three runs, read by each
    n = split_size("synthetic", "shapes", "trainval") + split_size("synthetic", "shapes", "test")
    decode = n / (est_mod.DECODE_IMG_S_PER_WORKER * max(1, exp.data.num_workers))
    assert e.data_s == pytest.approx(decode + 3 * n / est_mod.CACHE_READ_IMG_S)
    assert e.seconds == pytest.approx(e.compute_s + e.data_s + e.per_run_s)
    assert "default 40%" in e.source
    packed = est_mod.estimate(runs, "h100", pack=3)
    assert packed.per_run_s == pytest.approx(e.per_run_s - 2 * est_mod.PER_RUN_S)
    bf16 = est_mod.estimate([Run(exp.replace(**{"train.precision": "bf16"}), 0, "pinned",
                                 "trainval", ("test",), "/tmp/unused")], "h100")
    assert bf16.utilisation == {"bf16": pytest.approx(est_mod.DEFAULT_UTILISATION)}


def test_a_measured_rate_replaces_the_default(no_bench):
    exp = tiny_experiment("gatevpt")
    run = Run(exp, 0, "pinned", "trainval", ("test",), "/tmp/unused")
    path = no_bench / "results" / "bench" / "h100.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "backbone", "variant", "configs", "precision",
                                          "tflops"])
        w.writeheader()
        w.writerow({"method": "gatevpt", "backbone": BACKBONE, "variant": "fast_tf32",
                    "configs": 1, "precision": "fp32+tf32", "tflops": 123.0})
        w.writerow({"method": "gatevpt", "backbone": BACKBONE, "variant": "fast",
                    "configs": 1, "precision": "bf16", "tflops": 456.0})
    e = est_mod.estimate([run], "h100")
    # float64 ratios of the stated rate: the default rel 1e-6 only forgives rounding
    assert e.compute_s == pytest.approx(e.flops / 123e12)
    assert e.utilisation["tf32"] == pytest.approx(123.0 / est_mod.PEAK_TFLOPS["h100"]["tf32"])
    assert e.sources == ["results/bench/h100.csv (tf32)"]


def _hours(out: str, stage: str) -> float:
    return float(re.search(rf"stage {stage}\s*:.*~([\d.]+) GPU-h", out).group(1))


def test_plan_prints_flops_floor_and_estimate(capsys, tmp_path, no_bench):
    assert main(["plan", "--paper", "gatevpt", "--select", "fgvc/*/cub.py",
                 "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"[\d.]+ [PE]FLOP counted \(training", out)
    assert "compute floor at the h100 dense peak: bf16" in out and "tf32" in out
    assert "dominant term: compute" in out and _hours(out, "pinned") > 0


def test_search_mode_prices_its_final_stage_before_the_search(capsys, tmp_path, no_bench):
    main(["plan", "--paper", "gatevpt", "--mode", "search", "--select",
          "vtab1k/mae_vitb16/gatevpt/dtd.py", "--runs-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "stage final  :     0 runs" in out and "for its 5 runs once selected" in out
    assert _hours(out, "final") > 0
