"""Prompt assembly without copies of the residual stream (issue 16, item 3).

GateVPT, VPT-deep and LSPT rebuild ``[CLS, prompts, patches]`` from one split and one join of
a block's output (``methods.base.split_stream``).  The reference is the assembly as it was
before (three slices + ``torch.cat``), kept verbatim in ``benchmarks/legacy_assembly.py``
(the step benchmark times and counts it too); with prompt dropout on, outputs and
every gradient must be bit-identical, in float64 and in float32 (each gradient element is the
same sum of the same terms, in the same order; only the zero padding of the slice gradients is
gone).  The counted autograd traffic must drop.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from replicate import backbones, methods
from replicate.engine.cost import step_traffic
from replicate.engine.packed import packed_forward
from benchmarks.legacy_assembly import old_assembly  # the old assembly, frozen
from tests.helpers import TINY_PREFIX

BACKBONE = TINY_PREFIX + "mae_test"


CASES = {
    "vpt_deep": ("vpt_deep", {}),
    "gatevpt": ("gatevpt", {"gate_init": 1.0}),
    "gatevpt_all_blocks_gated": ("gatevpt", {"gate_init": 0.5, "num_gates": 4}),
    "lspt": ("lspt", {"gate_init": 1.0}),
    "lspt_all_blocks_after_gate_tokens_cls": (
        "lspt", {"coded_blocks": "all", "spatial_where": "after_gate",
                 "spatial_tokens": "patches_cls", "spatial_scale": "channel"}),
    "lspt_init_prompts_tokens_all": ("lspt", {"lstm_init": "prompts", "spatial_tokens": "all",
                                              "lstm_output": "residual"}),
    "lspt_variant_B": ("lspt", {"coupling": "lstm_replaces_gate", "gate": False}),
    "lspt_modules_off": ("lspt", {"spatial": False, "lstm": False}),
}


def build(method: str, opts: dict, dtype=torch.float64) -> methods.PromptedModel:
    torch.manual_seed(0)
    adapter = backbones.create(BACKBONE, "", attention="eager")
    assert adapter.num_blocks == 4  # num_gates=4 above gates every block, the last included
    torch.manual_seed(1)
    # prompt dropout on: the masks must be drawn in the same order by both assemblies
    model = methods.build_model(adapter, method, {"num_prompts": 4, "prompt_dropout": 0.25,
                                                  **opts}, 7)
    with torch.no_grad():  # learned temperature away from 1 so it matters
        for p in model.method.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype)


def _loss_and_grads(model, x, y):
    torch.manual_seed(7)
    model.train(True)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, model.trainable_parameters())
    return logits.detach(), grads


@pytest.mark.parametrize("case", sorted(CASES))
def test_new_assembly_equals_the_old_exactly(case):
    method, opts = CASES[case]
    new = build(method, opts)
    old = old_assembly(new)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.arange(6) % 7
    lo, go = _loss_and_grads(old, x, y)
    ln, gn = _loss_and_grads(new, x, y)
    assert torch.equal(lo, ln)
    names = [n for n, p in new.named_parameters() if p.requires_grad]
    assert len(gn) == len(names) > 2
    for name, a, b in zip(names, go, gn):
        assert torch.equal(a, b), f"{case}: gradient of {name} differs"


@pytest.mark.parametrize("case", ["gatevpt", "lspt", "vpt_deep"])
def test_new_assembly_equals_the_old_in_float32(case):
    """float32 as the engine trains: the same operators on the same values, so exact too."""
    method, opts = CASES[case]
    new = build(method, opts, torch.float32)
    old = old_assembly(new)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    y = torch.arange(4)
    (lo, go), (ln, gn) = _loss_and_grads(old, x, y), _loss_and_grads(new, x, y)
    assert torch.equal(lo, ln)
    assert all(torch.equal(a, b) for a, b in zip(go, gn))


def test_packed_forward_keeps_each_runs_assembly():
    """The packed forward (one frozen block call for two runs) still gives each run its own
    prompts back (closeness as tests/test_packed.py: the concatenated batch may change the
    order of float additions inside the matmuls, so 1e-12 relative in float64)."""
    a = build("gatevpt", {"gate_init": 1.0})
    b = copy.deepcopy(a)
    b.adapter = a.adapter
    with torch.no_grad():
        b.method.prompt_embeddings.mul_(-1.5)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a.train(False), b.train(False)
    with torch.no_grad():
        la, lb = packed_forward([a, b], [x, x])
        for got, want in ((la, a(x)), (lb, b(x))):
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * want.abs().max().item())
        assert not torch.allclose(la, lb)


@pytest.mark.parametrize("method,opts", [CASES["gatevpt"], CASES["vpt_deep"], CASES["lspt"]])
def test_backward_traffic_drops(method, opts):
    """No slice of the stream is left in the backward graph of the rebuilt blocks, and the
    counted backward memory traffic falls."""
    new = build(method, opts, torch.float32)
    old = old_assembly(new)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    y = torch.arange(8) % 7

    def loss_of(model):
        def fn():
            torch.manual_seed(7)
            model.train(True)
            return F.cross_entropy(model(x), y)
        return fn

    t_old, t_new = step_traffic(loss_of(old)), step_traffic(loss_of(new))
    assert t_new.node_kinds.get("SliceBackward0", 0) < t_old.node_kinds.get("SliceBackward0", 0)
    assert t_new.node_kinds.get("SplitWithSizesBackward0", 0) >= 1
    assert t_new.backward_bytes < t_old.backward_bytes
    assert t_new.forward_bytes <= t_old.forward_bytes
