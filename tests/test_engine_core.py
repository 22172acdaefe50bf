"""One engine core: the plain, packed and segmentation forwards share one block loop
(``methods.run_blocks``), so for every registered method they give the same features.

* the loop itself equals the hook order the ``methods.base`` docstring specifies, written out
  here by hand, block by block (``on_block``) and when stopped early (``num_blocks``, as the
  segmentation backbone does);
* the packed forward with one member (``engine.packed.packed_forward``, what ``packed_step``
  and ``packed_evaluate`` call) equals ``PromptedModel.forward``, bit for bit, in eval mode
  and in training mode under the same RNG stream (prompt dropout, LSPT's state);
* where mmseg is importable (the segmentation environment), ``PromptedViTSeg``'s feature maps
  equal the plain forward's patch tokens (to float32 rounding: its embedding is its own).
"""
from __future__ import annotations

import copy

import pytest
import torch

from replicate import backbones, methods
from replicate.engine.packed import RngStreams, packed_forward
from replicate.engine.train import seed_everything
from tests.helpers import TINY_PREFIX, assert_close_to_scale, method_options, tiny_experiment

VIT = TINY_PREFIX + "mae_test"
#: VPTM needs a MIM backbone (mask token, LM head): the tiny BEiT v2
BEIT = "beit_micro_patch8_32.beitv2_test"
NUM_CLASSES = 5


def _backbone(method: str) -> str:
    return BEIT if method == "vptm" else VIT


def _model(method: str) -> methods.PromptedModel:
    """The method on its tiny backbone, every trainable tensor randomised (a zero-initialised
    gate or prompt would hide a hook that is skipped)."""
    torch.manual_seed(0)
    name = _backbone(method)
    adapter = backbones.create(name, "")
    model = methods.build_model(adapter, method, method_options(method), NUM_CLASSES,
                                backbones.get(name).default_pool)
    with torch.no_grad():
        for p in model.method.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _images(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _spec_loop(model: methods.PromptedModel, images: torch.Tensor) -> list:
    """The hook order of ``replicate/methods/base.py``'s docstring, written out: the token
    sequence after every block."""
    m, a = model.method, model.adapter
    m.prepare_step()
    x = m.insert(a.embed(images))
    m.begin(x)
    after = []
    for i in range(a.num_blocks):
        x_in = m.before_block(i, x)
        x_out = a.block(i, x_in, temp=m.temperature(i), n_extra=m.num_extra)
        x = m.after_block(i, x_in, x_out)
        after.append(x)
    return after


@pytest.mark.parametrize("method", methods.registered())
@torch.no_grad()
def test_the_shared_block_loop_follows_the_hook_order(method):
    model = _model(method)
    x = _images()
    spec = _spec_loop(model, x)
    m, a = model.method, model.adapter
    m.prepare_step()
    tokens = m.insert(a.embed(x))
    m.begin(tokens)
    seen = {}
    n = max(1, a.num_blocks - 1)  # stop before the last block, as a segmentation backbone may
    out = methods.run_blocks(a, [m], [tokens], num_blocks=n,
                             on_block=lambda i, xs: seen.__setitem__(i, xs[0]))
    assert sorted(seen) == list(range(n))
    for i in range(n):
        assert torch.equal(seen[i], spec[i]), f"block {i}"
    assert torch.equal(out[0], spec[n - 1])
    assert torch.equal(model.forward_tokens(x), spec[-1])


@pytest.mark.parametrize("method", methods.registered())
def test_plain_and_packed_forward_are_equal(method):
    model = _model(method)
    if not model.method.packable:  # fine-tuning trains its own backbone: never packed
        with pytest.raises(ValueError, match="not packable"):
            packed_forward([model], [_images()])
        return
    x = _images()
    with torch.no_grad():  # evaluation (packed_evaluate)
        assert torch.equal(packed_forward([model], [x])[0], model(x))
    # training (packed_step): the run's own RNG stream drives its dropout masks
    model.train(True)
    seed_everything(3, 1)
    plain = model(x)
    rng = RngStreams(torch.device("cpu"))
    rng.seed(0, 3, 1)
    torch.manual_seed(12345)  # the global stream differs: only the run's own stream may count
    packed = packed_forward([model], [x], rng)[0]
    assert torch.equal(packed, plain)


@pytest.mark.seg
@pytest.mark.parametrize("method", methods.registered())
@torch.no_grad()
def test_segmentation_backbone_features_equal_the_plain_forward(method):
    pytest.importorskip("mmseg", reason="the segmentation environment (.venv-seg) runs this")
    if method == "vptm":
        pytest.skip("PromptedViTSeg takes timm ViTs; VPTM needs the BEiT MIM backbone")
    from replicate.seg.backbone import PromptedViTSeg

    model = _model(method)
    seg = PromptedViTSeg(VIT, {"type": method, **method_options(method)}, checkpoint="",
                         img_size=32, out_indices=(model.adapter.num_blocks - 1,))
    # the same weights: the tiny ViT's frozen blocks and this method's randomised parameters
    seg.prompted.load_state_dict(copy.deepcopy(model.state_dict()))
    seg.eval()
    x = _images()
    (fmap,) = seg(x)
    patches = model.forward_tokens(x)[:, -fmap.shape[2] * fmap.shape[3]:]
    # float32, the same blocks and hooks; the segmentation embedding adds the position
    # embedding in its own order: 1e-5 of the scale covers that rounding, a skipped or
    # reordered hook moves the tokens by far more
    assert_close_to_scale(fmap.flatten(2).transpose(1, 2), patches, rel=1e-5)


# ------------------------------------------------------------------ capabilities are flags
def test_capability_flags_drive_feature_caching_packing_and_estimates(tmp_path, monkeypatch):
    """A method's class flags, not its name, decide cached features, packing and which
    benchmark rows stand in for its throughput in a plan estimate."""
    from replicate import estimate
    from replicate.engine.features import not_applicable
    from replicate.engine.run import Run

    split = type("S", (), {"in_memory": True, "device_augment": None})()
    model = _model("vpt_shallow")
    assert not_applicable(model, split) is not None  # prompts train before the head
    monkeypatch.setattr(type(model.method), "frozen_up_to_head", True)
    assert not_applicable(model, split) is None

    # a plan for gatevpt, with rows for two other 'prompt' methods and one 'head' method:
    # the estimate takes the prompt family's median, never the probe's (much faster) rate
    rates = {("vpt_shallow", "micro", "fp32"): 2e9, ("vpt_deep", "micro", "fp32"): 4e9,
             ("linear", "micro", "fp32"): 1e12}
    assert methods.get("gatevpt").throughput_family == methods.get("vpt_deep").throughput_family
    assert methods.get("linear").throughput_family != methods.get("gatevpt").throughput_family
    monkeypatch.setattr(estimate, "measured_rates", lambda device: rates)
    run = Run(tiny_experiment("gatevpt"), 0, "search", "train", ("val",), str(tmp_path))
    est = estimate.estimate([run], "cpu")
    assert est.compute_s == pytest.approx(est.flops / 3e9, rel=1e-9)  # float division only
    assert any("'prompt' throughput family" in s for s in est.sources)


def test_submission_packs_by_the_engines_definition_of_packable(tmp_path):
    """``launch.make_packs`` groups by ``engine.packing.pack_key``: every pack it forms passes
    ``check_packable``, and runs that may not share a pack (here: another method option, which
    the old backbone-and-task key grouped together) are apart."""
    from replicate.engine.packed import PackError, check_packable
    from replicate.engine.run import Run
    from replicate.launch.submit import make_packs

    def run(lr, seed=0, **changes):
        exp = tiny_experiment("vpt_shallow", **{"optim.lr": lr, **changes})
        return Run(exp.replace(name=f"lr{lr}"), seed, "search", "train", ("val",), str(tmp_path))

    odd = run(0.3, **{"method.num_prompts": 3})  # the others: method_options' 2 prompts
    runs = [run(0.1), odd, run(0.2, seed=1), run(0.4)]
    with pytest.raises(PackError, match="method"):
        check_packable([runs[0], odd])
    packs = make_packs(runs, pack_size=8)
    assert [[r.experiment.optim.lr for r in p] for p in packs] == [[0.1, 0.2, 0.4], [0.3]]
    for p in packs:
        check_packable(p)
