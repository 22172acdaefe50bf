"""GateVPT against an independent plain-torch re-statement of the official forward.

The reference below is written from reading ryongithub/GatedPromptTuning (not copied):
``src/models/vit_prompt/vit_mae.py`` / ``vit_moco.py`` (``incorporate_prompt``,
``forward_features``, ``reinit_temp``) and ``src/models/vit_backbones/vit_mae.py``
(``Attention.forward(x, temp)``):

* prompts go after CLS, without position embedding;
* temperatures are clamped in place to [TEMP_MIN, TEMP_MAX] before the blocks run;
* block i's attention is ``softmax((q k^T * scale) / temp_i) v``;
* for i < GATE_NUM (= blocks - 1) the prompt slice after block i is
  ``g * out + (1 - g) * in`` with ``g = sigmoid(gate_logit_i)``, CLS and patches untouched;
* head input, VIT_POOL_TYPE 'original': MAE = mean over tokens 1: then the pretrained norm;
  MoCo v3 = norm, then the CLS token.

Only the timm module's weights are shared with the code under test; every operation is
re-done here with torch.nn.functional.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from replicate import backbones, methods
from replicate.methods.base import prompt_init_bound
from tests.helpers import assert_close_to_scale, full_names, tiny_name_for_source

#: GateVPT Table 5 "GATE INIT." values (App. A.2); every value the table uses
TABLE5_GATE_INITS = (1.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0)
TEMP_MIN, TEMP_MAX = 0.01, 10.0  # official src/configs/config.py



# ------------------------------------------------------------------ the reference
def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def ref_embed(vit, images):
    pe = vit.patch_embed.proj
    x = F.conv2d(images, pe.weight, pe.bias, stride=pe.stride).flatten(2).transpose(1, 2)
    cls = vit.cls_token.expand(x.shape[0], -1, -1)
    return torch.cat([cls, x], dim=1) + vit.pos_embed


def ref_block(blk, x, temp):
    B, N, D = x.shape
    H = blk.attn.num_heads
    hd = D // H
    qkv = F.linear(_ln(x, blk.norm1), blk.attn.qkv.weight, blk.attn.qkv.bias)
    q, k, v = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1)) * hd ** -0.5
    attn = (attn / temp).softmax(dim=-1)
    o = (attn @ v).transpose(1, 2).reshape(B, N, D)
    x = x + F.linear(o, blk.attn.proj.weight, blk.attn.proj.bias)
    h = F.gelu(F.linear(_ln(x, blk.norm2), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
    return x + F.linear(h, blk.mlp.fc2.weight, blk.mlp.fc2.bias)


def ref_features(vit, x, pool):
    if pool == "mean_norm":
        return _ln(x[:, 1:].mean(dim=1), vit.norm)
    assert pool == "cls"
    return _ln(x, vit.norm)[:, 0]


def ref_gatevpt(vit, head, images, prompts, gate_logit=None, temp=None, pool="cls", clamp=True):
    n = prompts.shape[1]
    x = ref_embed(vit, images)
    x = torch.cat([x[:, :1], prompts.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
    if temp is not None and clamp:
        temp = temp.clamp(TEMP_MIN, TEMP_MAX)
    for i, blk in enumerate(vit.blocks):
        gated = gate_logit is not None and i < gate_logit.shape[0]
        if gated:
            g = gate_logit[i].sigmoid()
            p_in = x[:, 1:1 + n]
        x = ref_block(blk, x, 1.0 if temp is None else temp[i])
        if gated:
            x = torch.cat([x[:, :1], g * x[:, 1:1 + n] + (1 - g) * p_in, x[:, 1 + n:]], dim=1)
    return F.linear(ref_features(vit, x, pool), head.weight, head.bias)


def ref_vpt_deep(vit, head, images, prompts, deep, pool="cls"):
    n = prompts.shape[1]
    x = ref_embed(vit, images)
    x = torch.cat([x[:, :1], prompts.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
    for i, blk in enumerate(vit.blocks):
        if i > 0:  # replace the previous block's prompt outputs
            x = torch.cat([x[:, :1], deep[i - 1].expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)
        x = ref_block(blk, x, 1.0)
    return F.linear(ref_features(vit, x, pool), head.weight, head.bias)


# ------------------------------------------------------------------ helpers
POOL_SOURCES = {"mean_norm": "mae", "cls": "mocov3"}  # GateVPT's two backbones' layouts


def _model(pool, method="gatevpt", attention="eager", dtype=torch.float64, seed=0, **opts):
    name = tiny_name_for_source(POOL_SOURCES[pool])
    assert backbones.get(name).default_pool == pool
    torch.manual_seed(seed)
    adapter = backbones.create(name, checkpoint="", attention=attention)
    if method != "linear":
        opts.setdefault("num_prompts", 3)
    model = methods.build_model(adapter, method, opts, 7, backbones.get(name).default_pool)
    return model.to(dtype).eval()


def _images(dtype=torch.float64, n=3):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(7)).to(dtype)


def _randomise(model, seed=1):
    """Non-trivial values everywhere the method has parameters."""
    g = torch.Generator().manual_seed(seed)
    m = model.method
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(p.dtype))
        if hasattr(m, "gate_logit"):
            m.gate_logit.copy_((3 * torch.randn(m.gate_logit.shape, generator=g)).to(m.gate_logit.dtype))
        if hasattr(m, "temp"):
            m.temp.copy_((0.3 + 2.7 * torch.rand(m.temp.shape, generator=g)).to(m.temp.dtype))


# ------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("gate_init", [1.0, 5.0, 15.0, "random"])
@pytest.mark.parametrize("pool", sorted(POOL_SOURCES))
def test_gatevpt_matches_official_forward(pool, gate_init, attention):
    if gate_init == "random":
        model = _model(pool, attention=attention)
        _randomise(model)
    else:
        model = _model(pool, attention=attention, gate_init=gate_init)
        with torch.no_grad():  # non-trivial temperatures; the gates keep the Table 5 init
            model.method.temp.copy_(torch.linspace(0.5, 2.0, model.method.temp.numel()))
    m, vit = model.method, model.adapter.vit
    assert m.gate_logit.numel() == len(vit.blocks) - 1  # GATE_NUM = blocks - 1 (11 of 12)
    assert m.temp.numel() == len(vit.blocks)            # TEMP_NUM = blocks
    x = _images()
    with torch.no_grad():
        ours = model(x)
        ref = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, m.gate_logit, m.temp, pool)
    # float64: rounding measured ~1e-15 of the logits' scale; dropping the gates or
    # the temperatures moves them by >1e-4 of it
    assert_close_to_scale(ours, ref, rel=1e-10)
    # and the gates matter: with every gate open (g = 1) the output differs
    with torch.no_grad():
        open_ref = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, None, m.temp, pool)
    # measured: >1.9e-3 of the logits' scale apart, 1e7x the float64 rounding bound above
    assert (open_ref - ours).abs().max() > 1e-4 * ours.abs().max()


@pytest.mark.parametrize("gate,learn_temp", [(True, False), (False, True)])
def test_ablations_gate_only_and_temperature_only(gate, learn_temp):
    """The paper's GATE (Fig. 6) and the temperature alone."""
    model = _model("cls", gate=gate, learn_temp=learn_temp)
    _randomise(model)
    m, vit = model.method, model.adapter.vit
    x = _images()
    with torch.no_grad():
        ref = ref_gatevpt(vit, m.head, x, m.prompt_embeddings,
                          m.gate_logit if gate else None, m.temp if learn_temp else None, "cls")
        # float64: rounding measured ~1e-15 of the logits' scale; dropping the gates
        # or the temperatures moves them by >1e-4 of it
        assert_close_to_scale(model(x), ref, rel=1e-10)
    assert hasattr(m, "gate_logit") == gate and hasattr(m, "temp") == learn_temp


def test_float32_sdpa_matches_reference_tightly():
    model = _model("mean_norm", attention="sdpa", dtype=torch.float32)
    _randomise(model)
    m, vit = model.method, model.adapter.vit
    x = _images(torch.float32)
    with torch.no_grad():
        ref = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, m.gate_logit, m.temp, "mean_norm")
        # float32, fused SDPA vs the plain reference: reassociated sums, measured ~1e-7 of the
        # logits' scale; 1e-5 (~80 float32 eps) holds on any CPU (the float64 tests are the tight
        # ones: dropping the gates or the temperatures moves the logits by >1e-4 of their scale)
        assert_close_to_scale(model(x), ref, rel=1e-5)


@pytest.mark.parametrize("method", ["gatevpt", "vpt_deep", "linear"])
@pytest.mark.parametrize("pool", sorted(POOL_SOURCES))
def test_sdpa_and_eager_agree(method, pool):
    outs = []
    for attention in ("sdpa", "eager"):
        model = _model(pool, method=method, attention=attention, dtype=torch.float32)
        _randomise(model)
        with torch.no_grad():
            outs.append(model(_images(torch.float32)))
    # float32, fused SDPA vs eager softmax(qk)v: reassociation, measured up to 8e-7 of the
    # logits' scale (1.05e-5 absolute on logits ~13); 1e-5 of the scale holds on any CPU
    assert_close_to_scale(outs[0], outs[1], rel=1e-5)


# ------------------------------------------------------------------ conventions
@pytest.mark.parametrize("gate_init", TABLE5_GATE_INITS)
def test_gate_logit_starts_at_minus_gate_init(gate_init):
    """Official code: ``gate_logit = -ones(GATE_NUM) * GATE_INIT``, so gates start near 0."""
    m = _model("cls", gate_init=gate_init).method
    assert torch.equal(m.gate_logit, torch.full_like(m.gate_logit, -gate_init))
    g = m.gate_logit.sigmoid()
    # float64 sigmoid vs its closed form: a few ulp; relative only, since g is 2e-9 at init 20
    torch.testing.assert_close(g, torch.full_like(g, 1 / (1 + math.exp(gate_init))), rtol=1e-12,
                               atol=0)
    assert g.max() < 0.5


def test_without_gate_and_temperature_it_is_vpt_shallow_exactly():
    """Paper Sec. 4.3: VPT-shallow is the special case without gates and learnable temperature."""
    gate = _model("mean_norm", gate=False, learn_temp=False, seed=4, prompt_dropout=0.0)
    vpt = _model("mean_norm", method="vpt_shallow", seed=4, prompt_dropout=0.0)
    assert gate.method.state_dict().keys() == vpt.method.state_dict().keys()
    for k, v in vpt.method.state_dict().items():  # same seed -> same prompts and head
        assert torch.equal(gate.method.state_dict()[k], v), k
    x = _images()
    with torch.no_grad():
        assert torch.equal(gate(x), vpt(x))
        m, vit = vpt.method, vpt.adapter.vit
        ref = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, None, None, "mean_norm")
        # float64: rounding measured ~1e-15 of the logits' scale; dropping the gates
        # or the temperatures moves them by >1e-4 of it
        assert_close_to_scale(vpt(x), ref, rel=1e-10)


def test_temperature_is_clamped_before_the_forward():
    model = _model("cls")
    _randomise(model)
    m, vit = model.method, model.adapter.vit
    wild = torch.tensor([50.0, 0.001, 2.0, -3.0], dtype=m.temp.dtype)[: m.temp.numel()]
    with torch.no_grad():
        m.temp.copy_(wild)
    x = _images()
    with torch.no_grad():
        clamped = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, m.gate_logit, wild, "cls")
        unclamped = ref_gatevpt(vit, m.head, x, m.prompt_embeddings, m.gate_logit, wild, "cls",
                                clamp=False)
        ours = model(x)
    assert (clamped - unclamped).abs().max() > 1e-3  # the clamp changes this forward
    # float64: rounding measured ~1e-15 of the logits' scale; dropping the gates or
    # the temperatures moves them by >1e-4 of it
    assert_close_to_scale(ours, clamped, rel=1e-10)
    assert torch.equal(m.temp, wild.clamp(TEMP_MIN, TEMP_MAX))  # clamped in place, as reinit_temp


def test_vpt_deep_replaces_prompts_in_every_block():
    model = _model("cls", method="vpt_deep")
    _randomise(model)
    m, adapter = model.method, model.adapter
    lengths = []
    block = adapter.block

    def spy(i, x, *args, **kwargs):
        lengths.append(x.shape[1])
        return block(i, x, *args, **kwargs)

    adapter.block = spy
    x = _images()
    with torch.no_grad():
        ours = model(x)
        ref = ref_vpt_deep(adapter.vit, m.head, x, m.prompt_embeddings, m.deep_prompt_embeddings)
    # float64: rounding measured ~1e-15 of the logits' scale; dropping the gates or
    # the temperatures moves them by >1e-4 of it
    assert_close_to_scale(ours, ref, rel=1e-10)
    assert lengths == [1 + 3 + adapter.num_patches] * adapter.num_blocks  # replaced, not appended
    assert m.deep_prompt_embeddings.shape[0] == adapter.num_blocks - 1


def test_prompt_dropout_only_in_training():
    model = _model("cls", prompt_dropout=0.5)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: no dropout
        model.train(True)
        torch.manual_seed(0)
        a = model(x)
        b = model(x)
    assert not torch.equal(a, b)
    assert not model.adapter.training  # the frozen backbone stays in eval mode


# ------------------------------------------------------------------ initialisation
def test_prompt_init_bound_vitb():
    """VPT/GateVPT 'random' init: U(-v, v), v = sqrt(6 / (3 * 16 * 16 + 768)) for ViT-B/16."""
    name = next(n for n in full_names() if backbones.get(n).source == "mae")
    with torch.device("meta"):
        adapter = backbones.get(name).adapter(backbones.get(name).build())
    v = math.sqrt(6.0 / (3 * 16 * 16 + 768))
    # float64 closed forms (default rel 1e-6 covers sqrt rounding); v is exactly 1/16
    assert prompt_init_bound(adapter) == pytest.approx(v) and v == pytest.approx(0.0625)
    torch.manual_seed(0)
    m = methods.build_model(adapter, "gatevpt", {"num_prompts": 100}, 10, "cls").method
    p = m.prompt_embeddings
    assert p.shape == (1, 100, 768) and p.device.type == "cpu"
    assert p.abs().max() <= v and p.abs().max() > 0.99 * v
    assert abs(p.mean().item()) < 0.02 * v  # ~10 standard errors (v / sqrt(3 * 76800))
    # std of U(-v, v): the seeded sample std over 76800 values has a standard error of ~0.2%;
    # normal(0, v) would be off by 73%
    assert p.std().item() == pytest.approx(v / math.sqrt(3), rel=0.02)


def test_head_init_vpt():
    """VPT/GateVPT src/models/mlp.py: kaiming-normal (fan_out) weight, bias -log((1-0.01)/0.01)."""
    adapter = _model("cls", dtype=torch.float32).adapter
    torch.manual_seed(3)
    head = methods.build_model(adapter, "linear", {}, 200, "cls").method.head
    assert torch.all(head.bias == -math.log(99))
    std = math.sqrt(2.0 / 200)  # fan_out of a (200, D) weight is 200
    # seeded sample of 200 x 64 normals: the std's standard error is 1/sqrt(2n) ~0.6%; fan_in
    # (64) instead of fan_out would be off by 77%, a gain of 1 instead of sqrt(2) by 29%
    assert head.weight.double().std().item() == pytest.approx(std, rel=0.05)
    assert abs(head.weight.double().mean().item()) < 0.1 * std  # ~11 standard errors
