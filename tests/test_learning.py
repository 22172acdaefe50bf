"""The methods learn: short runs on the micro pre-trained backbones (replicate/micro).

Each run trains on the 800 digits train images and evaluates on the 200 val images (the test
split is never read here).  Chance is 10%; every method must reach a multiple of it, its
training loss must fall, GateVPT's gates and temperatures must leave their initial values, and
the same seed must give the same numbers twice.  The backbones are built once per session
(``micro_cache`` in conftest.py), in their official checkpoint layouts, and loaded through the
registry and the real converters.
"""
from __future__ import annotations

import os

import pytest
import torch

from replicate import backbones, micro
from replicate.config import from_dict
from replicate.engine import execute
from replicate.engine.run import Run
from replicate.micro.standardize import fold

CHANCE = 10.0

#: method -> (backbone family, options, optimizer, epochs).  Short versions of the demo cells.
SHORT = {
    "linear": ("mocov3", {"head_init": "zeros"}, dict(lr=0.1), 20),
    "vpt_shallow": ("mocov3", {"head_init": "zeros", "num_prompts": 4}, dict(lr=0.1), 4),
    "vpt_deep": ("mae", {"head_init": "zeros", "num_prompts": 4}, dict(lr=0.1), 4),
    "gatevpt": ("mocov3", {"head_init": "zeros", "num_prompts": 4, "gate_init": 1.0},
                dict(lr=0.1), 4),
    "lspt": ("mae", {"head_init": "zeros", "num_prompts": 4, "gate_init": 1.0,
                     "lstm_hidden": 32}, dict(lr=0.1), 4),
    "vptm": ("beitv2", {"num_prompts": 4}, dict(lr=0.01, optimizer="adamw"), 4),
}
#: a run "beats chance by a wide margin": at least this multiple of chance on val (measured
#: on torch 2.15: 70-86% after these short runs, VPTM lowest)
MARGIN: dict = {}
DEFAULT_MARGIN = 5.0


def short_run(cache: str, method: str, root, seed: int = 0) -> Run:
    fam, opts, optim, epochs = SHORT[method]
    exp = from_dict(dict(
        name=f"learn-{fam}-{method}", paper="demo", smoke=True, protocol="digits-smoke",
        backbone=dict(name=micro.BACKBONES[fam].entry,
                      checkpoint=str(micro.checkpoint_path(fam, cache))),
        method=dict(type=method, **opts),
        data=dict(benchmark="digits", task="digits", image_size=32, num_workers=0),
        optim=dict(batch_size=50, epochs=epochs, warmup_epochs=0, **optim),
        train=dict(device="cpu", eval_every=0)), source="tests/test_learning.py")
    return Run(exp, seed, "search", "train", ("val",), str(root), {})


@pytest.fixture(scope="module")
def records(micro_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    return {m: execute(short_run(micro_cache, m, root), echo=lambda s: None) for m in SHORT}


@pytest.mark.parametrize("method", sorted(SHORT))
def test_method_learns(records, method):
    rec = records[method]
    top1 = rec["metrics"]["val_top1"]
    need = MARGIN.get(method, DEFAULT_MARGIN) * CHANCE
    assert top1 >= need, f"{method}: val top-1 {top1:.1f}% < {need:.0f}% (chance {CHANCE:.0f}%)"
    losses = [h["train_loss"] for h in rec["history"]]
    # the loss must fall clearly, not by rounding: last epoch <= 90% of the first
    assert losses[-1] < 0.9 * losses[0], f"{method}: training loss {losses}"


def test_gatevpt_gates_and_temperatures_move(records, micro_cache, tmp_path):
    run = short_run(micro_cache, "gatevpt", tmp_path)
    execute(run, echo=lambda s: None)
    state = torch.load(run.run_dir / "last.ckpt", map_location="cpu")["model"]
    gate, temp = state["method.gate_logit"], state["method.temp"]
    opts = SHORT["gatevpt"][1]
    # init: gate logits -gate_init, temperatures 1; both are O(1), so an absolute 1e-2 is a
    # move no float noise makes
    assert (gate + opts["gate_init"]).abs().max() > 1e-2, gate
    assert (temp - 1.0).abs().max() > 1e-2, temp


def test_same_seed_same_metrics(records, micro_cache, tmp_path):
    """Same config and seed in a fresh run directory: identical metrics and loss history."""
    rec = execute(short_run(micro_cache, "gatevpt", tmp_path), echo=lambda s: None)
    first = records["gatevpt"]
    assert rec["metrics"] == first["metrics"]
    assert [h["train_loss"] for h in rec["history"]] == \
        [h["train_loss"] for h in first["history"]]


def test_checkpoints_have_official_layouts(micro_cache):
    mae = torch.load(micro.checkpoint_path("mae", micro_cache), map_location="cpu")
    assert set(mae) >= {"model"} and "decoder_embed.weight" in mae["model"]
    assert "blocks.0.attn.qkv.weight" in mae["model"] and "mask_token" in mae["model"]
    moco = torch.load(micro.checkpoint_path("mocov3", micro_cache), map_location="cpu")
    prefixes = {k.split(".")[1] for k in moco["state_dict"]}
    assert prefixes == {"base_encoder", "momentum_encoder", "predictor"}
    assert all(k.startswith("module.") for k in moco["state_dict"])
    beit = torch.load(micro.checkpoint_path("beitv2", micro_cache), map_location="cpu")["model"]
    for key in ("lm_head.weight", "mask_token", "rel_pos_bias.relative_position_bias_table",
                "rel_pos_bias.relative_position_index", "cls_pt_layers.0.attn.qkv.weight"):
        assert key in beit, key


def test_registry_loads_cached_files_by_default(micro_cache, monkeypatch):
    """checkpoint=None on a micro entry resolves to the cache file; the weights are trained
    (not the random init of a fresh build)."""
    monkeypatch.setenv(micro.CACHE_ENV, micro_cache)
    for fam, b in micro.BACKBONES.items():
        adapter = backbones.create(b.entry)
        fresh = backbones.get(b.entry).build()
        w = next(v for k, v in adapter.state_dict().items()
                 if k.endswith("blocks.0.attn.qkv.weight"))
        assert not torch.equal(w, fresh.state_dict()["blocks.0.attn.qkv.weight"]), fam
    monkeypatch.setenv(micro.CACHE_ENV, os.path.join(micro_cache, "missing"))
    with pytest.raises(Exception, match="micro-pretrain"):
        backbones.create(micro.BACKBONES["mae"].entry)


def test_backbones_beat_chance_on_knn(micro_cache):
    for fam, meta in micro.ensure(micro_cache, log=lambda s: None).items():
        assert meta["knn_val_top1"] >= 3 * CHANCE, (fam, meta["knn_val_top1"])


def test_standardization_fold_keeps_outputs():
    """Folding (m, s) into a LayerNorm and the Linear after it leaves the Linear's output
    unchanged and standardises the norm's output."""
    g = torch.Generator().manual_seed(0)
    D, O = 16, 8
    x = torch.randn(64, D, generator=g) * 3 + 1
    sd = {"norm.weight": torch.rand(D, generator=g) + 0.5, "norm.bias": torch.randn(D, generator=g),
          "lin.weight": torch.randn(O, D, generator=g), "lin.bias": torch.randn(O, generator=g)}

    def run(p):
        h = torch.nn.functional.layer_norm(x, (D,), p["norm.weight"], p["norm.bias"])
        return h, h @ p["lin.weight"].T + p["lin.bias"]

    h0, y0 = run(sd)
    m, s = h0.mean(0), h0.std(0)
    new = dict(sd)
    fold(new, "norm.", "lin.weight", m, s, nxt_bias="lin.bias")
    h1, y1 = run(new)
    # float32 on O(1)-O(10) values: 1e-4 relative covers the reassociated sums
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h1.mean(0), torch.zeros(D), rtol=0, atol=1e-5)
    torch.testing.assert_close(h1.std(0), torch.ones(D), rtol=1e-4, atol=1e-4)
