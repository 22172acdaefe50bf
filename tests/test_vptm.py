"""VPTM (reconstruction) on the tiny BEiT v2 MIM backbone: what trains, what stays frozen, the
prototypical verbalizer's prediction rule, parameter counts, every option, the same-backbone
baselines, and papers/vptm's configs.  The checkpoint-level equivalence tests (our [MASK]
logits = a reference computed from the official checkpoint tensors) are in
tests/test_beit_converter.py."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from replicate import backbones, config, methods
from replicate.methods.vptm import VPTM, instance_contrastive_loss
from tests.helpers import assert_close_to_scale

TINY = "beit_micro_patch8_32.beitv2_test"
D, L, VOCAB, K = 64, 4, 64, 5
REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "papers" / "vptm"


def tiny_adapter(seed: int = 0):
    """Random-init tiny BEiT with non-zero relative-position tables (zeros would hide bias bugs)."""
    torch.manual_seed(seed)
    a = backbones.create(TINY, "")
    for blk in a.beit.blocks:
        nn.init.normal_(blk.attn.relative_position_bias_table)
    return a


def build(opts=None, num_classes=K, seed=0, adapter=None):
    a = adapter if adapter is not None else tiny_adapter()
    torch.manual_seed(seed)
    return methods.build_model(a, "vptm", dict(opts or {}), num_classes)


def images(n=6, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- what trains
@pytest.mark.parametrize("opts,extra", [
    ({}, set()),
    (dict(learn_tau=True, instance_weight=0.5), {"method.head.log_tau"}),
    (dict(deep=False, verbalizer_input="hidden", token_order="mask_last"), set()),
])
def test_only_prompts_verbalizer_prototypes_train(opts, extra):
    model = build(opts)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {"method.prompt_embeddings", "method.head.proj.weight", "method.head.prototypes"}
    if opts.get("deep", True):
        expected.add("method.deep_prompt_embeddings")
    assert names == expected | extra
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train(True)
    y = torch.tensor([0, 1, 0, 1, 2, 2])
    loss = F.cross_entropy(model(images()), y)
    aux = model.method.extra_loss(y)
    assert (aux is not None) == (opts.get("instance_weight", 0) > 0)
    if aux is not None:
        loss = loss + aux
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    opt.zero_grad()
    loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{n} gets no gradient"
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (n in names), f"{n}: changed={changed}"
    a = model.adapter
    assert torch.equal(a.mask_token, before["adapter.beit.mask_token"])
    assert torch.equal(a.lm_head.weight, before["adapter.beit.lm_head.weight"])
    assert not a.mask_token.requires_grad and not a.lm_head.weight.requires_grad


@pytest.mark.parametrize("m,deep,depth,inp,learn_tau,dp,k", [
    (10, True, -1, "logits", False, 64, 5),
    (10, False, -1, "logits", False, 64, 5),
    (3, True, 2, "hidden", True, 16, 7),
    (0, True, -1, "logits", False, 32, 3),
    (50, True, -1, "hidden", False, 128, 100),
])
def test_trainable_parameter_count(m, deep, depth, inp, learn_tau, dp, k):
    model = build(dict(num_prompts=m, deep=deep, prompt_depth=depth, verbalizer_input=inp,
                       learn_tau=learn_tau, proto_dim=dp), num_classes=k)
    blocks_with_prompts = (L if depth == -1 else depth) if deep else 1
    in_dim = VOCAB if inp == "logits" else D
    want = m * D * blocks_with_prompts + in_dim * dp + k * dp + int(learn_tau)
    assert model.num_trainable() == want


# --------------------------------------------------------------------------- prediction rule
@pytest.mark.parametrize("inp,softmax", [("logits", False), ("logits", True), ("hidden", False)])
def test_prediction_is_nearest_prototype_by_cosine(inp, softmax):
    model = build(dict(verbalizer_input=inp, logits_softmax=softmax, tau=0.07), num_classes=7)
    x = images(8)
    with torch.no_grad():
        logits = model(x)
        z = model.method.features(model.adapter, model.forward_tokens(x))
    with torch.no_grad():  # the verbalizer input, recomputed: [MASK] sits at 1 + m (m = 10)
        h = model.adapter.final_norm(model.forward_tokens(x))[:, 1 + 10]
        want = h if inp == "hidden" else model.adapter.lm_head(h)
        want = want.softmax(-1) if softmax else want
    # float32, the same ops recomputed on a slice: ~1e-7 of the scale at most (0 measured)
    assert_close_to_scale(z, want, rel=1e-5)
    head = model.method.head
    v = z @ head.proj.weight.T
    cos = torch.stack([F.cosine_similarity(v, c[None], dim=-1) for c in head.prototypes], 1)
    # float32 cosine (normalise vs cosine_similarity) times 1/0.07: measured 2e-7 of the scale
    assert_close_to_scale(logits, cos / 0.07, rel=1e-5)
    assert torch.equal(logits.argmax(1), cos.argmax(1))


def test_features_read_the_mask_token():
    """Changing the pre-trained mask_token changes the verbalizer input (it is the [MASK] slot)."""
    model = build(dict(num_prompts=2))
    x = images(2)
    with torch.no_grad():
        z0 = model.method.features(model.adapter, model.forward_tokens(x))
        # random, not constant: every LayerNorm removes a constant shift of a token
        g = torch.Generator().manual_seed(0)
        model.adapter.mask_token.add_(torch.randn(model.adapter.mask_token.shape, generator=g))
        z1 = model.method.features(model.adapter, model.forward_tokens(x))
    # measured: z moves by >100% of its scale; float32 rounding alone is ~1e-7 of it
    assert (z1 - z0).abs().max() > 1e-2 * z0.abs().max()


# --------------------------------------------------------------------------- token layout
@pytest.mark.parametrize("extra_bias", ["cls", "zero"])
def test_token_order_does_not_change_the_output(extra_bias):
    """BEiT v2 has no absolute positions and extra tokens get type-based bias entries, so
    attention is permutation-equivariant over them: the three orders give the same logits."""
    a = tiny_adapter()
    outs = []
    for order in ("prompts_mask", "mask_prompts", "mask_last"):
        model = build(dict(token_order=order, extra_bias=extra_bias, num_prompts=3), adapter=a)
        with torch.no_grad():
            outs.append(model(images()))
    # float32 attention over permuted tokens sums in another order: measured 6e-7 of the scale
    assert_close_to_scale(outs[1], outs[0], rel=1e-5)
    assert_close_to_scale(outs[2], outs[0], rel=1e-5)


def test_extra_bias_option_changes_the_output():
    a = tiny_adapter()
    with torch.no_grad():
        cls = build(dict(extra_bias="cls"), adapter=a)(images())
        zero = build(dict(extra_bias="zero"), adapter=a)(images())
    assert not torch.allclose(cls, zero, atol=1e-4)  # measured: they differ by 15% of the scale


@pytest.mark.parametrize("order,start",
                         [("prompts_mask", 1), ("mask_prompts", 2), ("mask_last", 1)])
def test_deep_prompts_replace_the_prompt_slice(order, start):
    model = build(dict(token_order=order, num_prompts=3, prompt_depth=3))
    meth = model.method
    meth.train(False)
    x = torch.randn(2, 1 + 3 + 1 + 16, D)
    out = meth.before_block(2, x)
    # exact: the slice is a copy of the prompt parameter (eval: no dropout)
    assert torch.equal(out[:, start:start + 3], meth.deep_prompt_embeddings[1].expand(2, -1, -1))
    keep = [i for i in range(x.shape[1]) if not start <= i < start + 3]
    assert torch.equal(out[:, keep], x[:, keep])
    assert meth.before_block(3, x) is x and meth.before_block(0, x) is x  # depth 3: blocks 0..2
    assert meth.deep_prompt_embeddings.shape == (2, 3, D)


def test_insert_layout():
    model = build(dict(num_prompts=2, token_order="mask_last", prompt_dropout=0.0))
    a = model.adapter
    x = a.embed(images(2))
    seq = model.method.insert(x)
    assert seq.shape[1] == 1 + 2 + 16 + 1 and model.method.num_extra == 2
    assert torch.equal(seq[:, -1], a.mask_token[0].expand(2, -1))
    assert torch.equal(seq[:, 1:3], model.method.prompt_embeddings.expand(2, -1, -1))


# --------------------------------------------------------------------------- options
OPTION_VALUES = {
    "num_prompts": [0, 1, 7], "deep": [True, False], "prompt_depth": [-1, 1, 2, 4],
    "token_order": ["prompts_mask", "mask_prompts", "mask_last"], "extra_bias": ["cls", "zero"],
    "verbalizer_input": ["logits", "hidden"], "logits_softmax": [False, True],
    "proto_dim": [1, 8, 64], "tau": [0.05, 1.0], "learn_tau": [False, True],
    "instance_weight": [0.0, 1.0], "prompt_dropout": [0.0, 0.5],
    "pool": ["auto"], "head_init": ["vpt"],
}


def test_option_table_covers_every_field():
    import dataclasses
    assert set(OPTION_VALUES) == {f.name for f in dataclasses.fields(VPTM.Options)}


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in OPTION_VALUES.items() for v in vs])
def test_every_option_value_runs(field, value):
    model = build({field: value})
    model.train(True)
    y = torch.tensor([0, 1, 1, 2, 3, 3])
    logits = model(images())
    assert logits.shape == (6, K)
    loss = F.cross_entropy(logits, y)
    aux = model.method.extra_loss(y)
    loss = loss if aux is None else loss + aux
    loss.backward()
    assert torch.isfinite(loss)
    assert model.method.head.prototypes.grad is not None


@pytest.mark.parametrize("bad,match", [
    (dict(token_order="suffix"), "token_order"), (dict(extra_bias="abs"), "extra_bias"),
    (dict(verbalizer_input="cls"), "verbalizer_input"), (dict(num_prompts=-1), "num_prompts"),
    (dict(tau=0.0), "tau"), (dict(proto_dim=0), "proto_dim"),
    (dict(deep=False, prompt_depth=3), "prompt_depth"), (dict(pool="cls"), "pool"),
    (dict(verbalizer_input="hidden", logits_softmax=True), "logits_softmax"),
    (dict(instance_weight=-1.0), "instance_weight"), (dict(temperature=1.0), "unknown option"),
])
def test_bad_options_are_rejected_at_config_time(bad, match):
    with pytest.raises((ValueError, KeyError), match=match):
        methods.make_options("vptm", bad)


def test_prompt_depth_beyond_blocks_is_rejected():
    with pytest.raises(ValueError, match="prompt_depth 9 > 4 blocks"):
        build(dict(prompt_depth=9))


def test_vptm_needs_a_mim_backbone():
    a = backbones.create("vit_micro_patch8_32.mae_test", "")
    with pytest.raises(ValueError, match="BEiT v2 MIM backbone"):
        methods.build_model(a, "vptm", {}, K)


# --------------------------------------------------------------------------- losses
def test_instance_contrastive_loss_is_protoverb_pairwise_form():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    tau = torch.tensor(0.5)
    z = F.normalize(v, dim=-1)
    s = (z @ z.T / tau).tolist()
    terms = []
    for a in range(6):
        neg = sum(math.exp(s[a][n]) for n in range(6) if y[n] != y[a])
        for p in range(6):
            if p != a and y[p] == y[a]:
                terms.append(-math.log(math.exp(s[a][p]) / (math.exp(s[a][p]) + neg)))
    want = sum(terms) / len(terms)
    # float32 vs this float64 re-statement over ~60 exp/log terms: ~1e-7 relative
    assert instance_contrastive_loss(v, y, tau).item() == pytest.approx(want, rel=1e-5)
    assert instance_contrastive_loss(v, torch.arange(6), tau).item() == 0.0  # no positive pair


def test_extra_loss_hook():
    a = tiny_adapter()
    vpt = methods.build_model(a, "vpt_deep", dict(num_prompts=2), K)
    assert vpt.method.extra_loss(torch.zeros(2, dtype=torch.long)) is None  # base default
    model = build(dict(instance_weight=0.3), adapter=a)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    model.train(True)
    model(images())
    v = model.method.head.last_embedding
    got = model.method.extra_loss(y)
    # the same float32 loss, scaled by 0.3 inside or outside: a few ulp
    torch.testing.assert_close(got, 0.3 * instance_contrastive_loss(v, y, torch.tensor(0.1)),
                               rtol=1e-5, atol=0)
    assert model.method.head.last_embedding is None  # consumed: no graph kept alive
    with pytest.raises(RuntimeError, match="last training forward"):
        model.method.extra_loss(y)
    model.train(False)
    assert model.method.extra_loss(y) is None


# --------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("method,opts", [("linear", {}), ("vpt_shallow", dict(num_prompts=3)),
                                         ("vpt_deep", dict(num_prompts=3)), ("finetune", {})])
def test_baselines_run_on_the_beit_adapter(method, opts):
    a = tiny_adapter()
    model = methods.build_model(a, method, opts, K, backbones.get(TINY).default_pool)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train(True)
    loss = F.cross_entropy(model(images()), torch.tensor([0, 1, 2, 3, 4, 0]))
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    opt.zero_grad()
    loss.backward()
    opt.step()
    trains_backbone = method == "finetune"
    for n, p in model.named_parameters():
        if n.startswith("adapter.") and not n.startswith(("adapter.beit.mask_token",
                                                         "adapter.beit.lm_head")):
            assert torch.equal(p, before[n]) != trains_backbone, n
    assert not torch.equal(model.method.head.weight, before["method.head.weight"])
    # the MIM parts are not used by the baselines: frozen (even under full fine-tuning)
    assert not any(p.requires_grad for p in a.mim_parameters())
    assert torch.equal(a.lm_head.weight, before["adapter.beit.lm_head.weight"])
    assert torch.equal(a.mask_token, before["adapter.beit.mask_token"])


def test_vpt_prompts_get_cls_type_bias_on_beit():
    """VPT's prompts sit in the extra slot, so the adapter's extra-token bias applies to them."""
    a = tiny_adapter()
    model = methods.build_model(a, "vpt_shallow", dict(num_prompts=2), K)
    with torch.no_grad():
        out_cls = model(images())
        a.set_extra_bias("zero")
        out_zero = model(images())
    assert not torch.allclose(out_cls, out_zero, atol=1e-4)  # measured: 7% of the scale apart


# --------------------------------------------------------------------------- configs
# up to date, loading and labels: tests/test_paper_configs.py (every paper's configs)
def test_smoke_config_trains_through_the_engine(tmp_path):
    from replicate.engine import execute
    from replicate.engine.run import Run

    exp = config.load(PAPER / "configs" / "smoke" / "digits" / "vptm.py").replace(**{
        "optim.epochs": 1, "optim.warmup_epochs": 0, "train.max_steps_per_epoch": 2,
        "train.device": "cpu"})
    rec = execute(Run(exp, seed=0, stage="smoke", train_split="train", eval_splits=("val",),
                      runs_root=str(tmp_path)), echo=lambda s: None)
    assert rec["smoke"] and rec["method_type"] == "vptm" and rec["metrics"]["val_n"] == 200
    o = exp.method.options
    assert rec["trainable_params"] == (o["num_prompts"] * D * L + VOCAB * o["proto_dim"]
                                       + 10 * o["proto_dim"])
