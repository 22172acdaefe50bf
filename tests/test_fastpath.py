"""The fast path changes no result beyond a stated tolerance (issue 10, item 2).

* SDPA vs eager attention: logits and gradients within 1e-5 (fp32), every registered method;
* bf16 autocast vs fp32: logits within 0.25 absolute (logits of magnitude ~10; bf16 keeps 8
  mantissa bits) and the same top-1 on at least 90% of the samples;
* torch.compile (``engine.train.compile_model``): logits and one training step within 1e-5,
  the same prompt-dropout masks (slow on CPU: opt-in, see below);
* no host syncs inside the step: at most one read-back per epoch in the engine and the packed
  engine (instrumented on CPU; on CUDA with torch.cuda's sync debug mode);
* in-memory (device, uint8) and DataLoader (workers) batches of the same split are identical;
  on-device augmentation is driven by the epoch's generator.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from replicate import backbones, data, methods
from replicate.engine import Run, execute
from replicate.engine import train as engine_train
from replicate.engine.packed import execute_packed
from tests.helpers import TINY_PREFIX, assert_close_to_scale, method_options, tiny_experiment

quiet = lambda msg: None  # noqa: E731
SLOW = os.environ.get("REPLICATE_SLOW_TESTS") == "1"


def _cases():
    out = []
    for m in methods.registered():
        bb = "beit_micro_patch8_32.beitv2_test" if m == "vptm" else TINY_PREFIX + "mae_test"
        if bb in backbones.registered():
            out.append((m, bb))
    return out


def build(method: str, backbone: str, attention: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    adapter = backbones.create(backbone, "", attention=attention)
    torch.manual_seed(seed + 1)
    return methods.build_model(adapter, method, method_options(method, num_prompts=4)
                               if "num_prompts" in method_options(method) else {}, 7)


def images(n: int = 16, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ attention kernels
@pytest.mark.parametrize("method,backbone", _cases())
def test_sdpa_equals_eager_attention(method, backbone):
    fused, eager = build(method, backbone, "sdpa"), build(method, backbone, "eager")
    assert fused.adapter.attention == "sdpa" and eager.adapter.attention == "eager"
    eager.load_state_dict(fused.state_dict())
    if hasattr(fused.method, "temp"):  # a learned temperature far from 1 must act the same
        for m in (fused, eager):
            with torch.no_grad():
                m.method.temp.copy_(torch.linspace(0.5, 2.0, m.method.temp.numel()))
    x, y = images(), torch.arange(16) % 7
    grads = []
    for m in (fused, eager):
        m.train(False)  # no dropout: the two forwards must see the same prompts
        logits = m(x)
        F.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in m.trainable_parameters()]))
    # float32, fused vs eager softmax(qk)v: reassociation, measured 4e-7 of the logits' scale
    assert_close_to_scale(grads[0][0], grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        # gradients sum over the batch with cancellation: measured up to 4e-6 of a tensor's
        # scale; a temperature or mask the fused path drops changes them by >1e-2
        assert_close_to_scale(a, b, rel=1e-4)


def test_attention_switch_reaches_the_blocks(monkeypatch):
    """train.attention selects the kernel the blocks call (not only an attribute)."""
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for att, want in (("eager", 0), ("sdpa", 4)):
        calls.clear()
        with torch.no_grad():
            build("vpt_shallow", TINY_PREFIX + "mae_test", att).eval()(images(2))
        assert len(calls) == want, att


# ------------------------------------------------------------------ bf16 autocast
@pytest.mark.parametrize("method,backbone", _cases())
def test_bf16_autocast_stays_close_to_fp32(method, backbone):
    m = build(method, backbone).eval()
    x = images(64)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    assert not torch.equal(ref, low.float()), "autocast had no effect"
    # bf16 rounds every matmul input/output to 8 bits (2^-9 relative): measured 0.7-1.8% of
    # the logits' scale; an op that loses its float32 upcast or scale is off by O(100%)
    assert_close_to_scale(low.float(), ref, rel=0.05)
    agree = (low.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.9, f"bf16 changed the top-1 of {100 * (1 - agree):.0f}% of the samples"


def test_precision_switch():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    spec = tiny_experiment(**{"train.precision": "auto"}).train
    assert engine_train.resolve_precision(spec, cpu) == ("fp32", None)
    assert engine_train.resolve_precision(spec, cuda) == ("bf16", torch.bfloat16)
    bf16 = tiny_experiment(**{"train.precision": "bf16"}).train
    assert engine_train.resolve_precision(bf16, cpu) == ("bf16", torch.bfloat16)


def test_engine_trains_in_bf16_on_request(tmp_path, monkeypatch):
    seen = []
    real = engine_train.train_step

    def spy(fwd, model, opt, norm, x, y, amp_dtype):
        seen.append(amp_dtype)
        return real(fwd, model, opt, norm, x, y, amp_dtype)

    monkeypatch.setattr(engine_train, "train_step", spy)
    exp = tiny_experiment(**{"train.precision": "bf16", "optim.epochs": 1})
    rec = execute(Run(exp, 0, "smoke", "train", ("val",), str(tmp_path)), echo=quiet)
    assert rec["precision"] == "bf16" and seen and set(seen) == {torch.bfloat16}


# ------------------------------------------------------------------ torch.compile
@pytest.mark.skipif(not (SLOW or torch.cuda.is_available()),
                    reason="torch.compile of even a 1-block ViT takes ~1 min cold on this CPU "
                           "(torch 2.1); set REPLICATE_SLOW_TESTS=1 to run it")
def test_compile_changes_nothing():
    from timm.models.vision_transformer import VisionTransformer

    from replicate.backbones.vit import TimmViTAdapter

    def model():
        torch.manual_seed(0)
        vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                                num_classes=0)
        m = methods.build_model(TimmViTAdapter(vit), "gatevpt",
                                {"num_prompts": 3, "prompt_dropout": 0.5}, 5)
        return m.train(True)

    eager, comp = model(), model()
    fwd = engine_train.compile_model(comp)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 5
    for m, f in ((eager, eager), (comp, fwd)):
        torch.manual_seed(123)  # the engine's per-epoch seed: dropout masks come from it
        opt = torch.optim.SGD(m.trainable_parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            engine_train.train_step(f, m, opt, lambda t: t, x, y, None)
    assert torch.backends.cuda.flash_sdp_enabled()  # the guard restored the fused kernel
    for (n, a), (_, b) in zip(eager.trainable_state_dict().items(),
                              comp.trainable_state_dict().items()):
        # float32, inductor fuses reductions (reassociation ~1e-7) and 2 momentum steps carry
        # gradient differences of ~1e-6 of the scale into the weights; another dropout mask
        # changes the update itself, not its last bits
        assert_close_to_scale(a, b, rel=1e-4, msg=n)
    eager.eval(), comp.eval()
    with torch.no_grad():
        assert_close_to_scale(fwd(x), eager(x), rel=1e-4)  # as above


# ------------------------------------------------------------------ host syncs
SYNC_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy")


@pytest.fixture
def readbacks(monkeypatch):
    """Tensor read-backs (the calls that block on the device) made by the training/evaluation
    loops -> a list of names.  Model construction (timm's init reads a few scalars) is setup,
    not the loop, and is left out."""
    import traceback

    seen = []
    for name in SYNC_METHODS:
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, _name=name, **k):
            stack = {f.name for f in traceback.extract_stack()}
            if stack & {"_train", "_train_packed"} and "build_model" not in stack:
                seen.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return seen


def test_engine_reads_back_once_per_epoch(tmp_path, readbacks):
    epochs, steps = 3, 4
    exp = tiny_experiment(**{"optim.epochs": epochs, "train.max_steps_per_epoch": steps,
                             "train.eval_every": 0})
    execute(Run(exp, 0, "smoke", "train", ("val",), str(tmp_path)), echo=quiet)
    # training: the epoch's mean loss; evaluation (once, at the end): top-1 and loss
    assert readbacks == ["item"] * (epochs + 2), readbacks


def test_packed_engine_reads_back_once_per_epoch(tmp_path, readbacks):
    epochs = 3
    base = tiny_experiment(**{"optim.epochs": epochs, "train.max_steps_per_epoch": 4,
                              "train.eval_every": 0})
    runs = [Run(base.replace(**{"optim.lr": lr}), 0, "search", "train", ("val",), str(tmp_path))
            for lr in (0.1, 0.2, 0.3)]
    execute_packed(runs, echo=quiet)
    assert readbacks == ["tolist"] * (epochs + 2), readbacks  # for the whole pack


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
def test_no_synchronizing_cuda_call_inside_the_step():
    exp = tiny_experiment(**{"train.device": "cuda"})
    run = Run(exp, 0, "smoke", "train", ("val",), "/unused")
    dev = torch.device("cuda")
    model, entry = engine_train.build_model(run, dev)
    split = data.load(exp.data, "train", train=True)
    batches = engine_train.Batches(split, 32, dev, True, 0)
    opt = engine_train.build_optimizer(model, run)
    norm = engine_train.normalizer(entry, dev)
    model.train(True)
    loss_sum = torch.zeros((), device=dev)
    it = batches.epoch(0, 0)
    x, y = next(it)
    loss_sum += engine_train.train_step(model, model, opt, norm, x, y, torch.bfloat16)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            x, y = next(it)
            loss_sum += engine_train.train_step(model, model, opt, norm, x, y, torch.bfloat16)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss_sum).item()


# ------------------------------------------------------------------ data paths
def _streamed(split: data.Split) -> data.Split:
    return data.Split(split.dataset, split.num_classes, split.split, split.source_name)


@pytest.mark.parametrize("train", [True, False])
def test_in_memory_and_dataloader_batches_are_identical(train):
    split = data.load(tiny_experiment().data, "train", train=True)
    assert split.in_memory and split.images.dtype == torch.uint8
    cpu = torch.device("cpu")
    mem = engine_train.Batches(split, 96, cpu, train, num_workers=0)
    loader = engine_train.Batches(_streamed(split), 96, cpu, train, num_workers=2)
    assert mem.images.dtype == torch.uint8  # held as uint8; normalised per batch on the device
    for epoch in (0, 1):
        a, b = list(mem.epoch(7, epoch)), list(loader.epoch(7, epoch))
        assert len(a) == len(b) == len(mem)
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == xb.dtype == torch.uint8
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = [y for _, y in mem.epoch(7, 0)][0]
    again = [y for _, y in mem.epoch(7, 1)][0]
    assert train == (not torch.equal(first, again))  # shuffled per epoch only when training


def test_device_augmentation_follows_the_epoch_generator():
    base = data.load(tiny_experiment().data, "train", train=True)
    calls = []

    def flip_some(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(x.dtype)
        mask = torch.rand(x.shape[0], generator=g) < 0.5
        return torch.where(mask.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)

    split = data.Split(base.dataset, base.num_classes, base.split, base.source_name,
                       images=base.images, labels=base.labels, device_augment=flip_some)
    b = engine_train.Batches(split, 64, torch.device("cpu"), True, 0)
    e0 = [x for x, _ in b.epoch(1, 0)]
    assert calls and set(calls) == {torch.uint8}
    assert all(torch.equal(p, q) for p, q in zip(e0, [x for x, _ in b.epoch(1, 0)]))
    assert not all(torch.equal(p, q) for p, q in zip(e0, [x for x, _ in b.epoch(1, 1)]))
    plain = engine_train.Batches(base, 64, torch.device("cpu"), True, 0)
    assert not all(torch.equal(p, q) for p, q in zip(e0, [x for x, _ in plain.epoch(1, 0)]))
    evals = engine_train.Batches(split, 64, torch.device("cpu"), False, 0)
    n = len(calls)
    list(evals.epoch(0, 0))
    assert len(calls) == n  # never augments evaluation batches


# ------------------------------------------------------------------ benchmark -> plan
def test_benchmark_csv_feeds_the_plan_estimate(tmp_path, monkeypatch):
    """benchmarks/step.py writes results/bench/<device>.csv; estimate.py reads its 'fast' rows."""
    import csv
    import importlib.util
    import sys
    from pathlib import Path

    from replicate import estimate

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step.py"
    spec = importlib.util.spec_from_file_location("bench_step", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_step", bench)  # dataclasses look the module up
    spec.loader.exec_module(bench)
    out = tmp_path / "results" / "bench" / "cpu.csv"
    assert bench.main(["--device", "cpu", "--methods", "vpt_shallow", "--batch", "8",
                       "--steps", "1", "--warmup", "1", "--repeats", "1", "--compile", "off",
                       "--packed", "2", "--grid", "0", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["variant"] for r in rows} == {"reference", "fast", "packed2"}
    by = {r["variant"]: r for r in rows}
    assert float(by["reference"]["speedup_vs_reference"]) == 1.0
    assert float(by["fast"]["gflop_per_image"]) > 0  # counted, not typed in
    assert by["packed2"]["configs"] == "2" and by["reference"]["attention"] == "eager"
    assert int(by["fast"]["backward_nodes"]) > 0 and float(by["fast"]["backward_gb"]) > 0
    assert float(by["fast"]["saved_gib"]) > 0  # autograd traffic, counted on the meta device
    monkeypatch.setattr(estimate, "REPO", tmp_path)
    rates = estimate.measured_rates("cpu")  # the fast row's model FLOP/s
    assert rates == {("vpt_shallow", "micro", "fp32"): float(by["fast"]["tflops"]) * 1e12}
    run = Run(tiny_experiment("vpt_shallow"), 0, "search", "train", ("val",), str(tmp_path))
    est = estimate.estimate([run], "cpu")
    assert est.sources == ["results/bench/cpu.csv (fp32)"]
    assert est.compute_s == pytest.approx(est.flops / rates[("vpt_shallow", "micro", "fp32")])
