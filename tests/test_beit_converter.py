"""BEiT v2 MIM backbone: the official pre-training checkpoint layout -> our model.

A fake checkpoint with the key layout of microsoft/unilm ``beit2`` pre-training
(``VisionTransformerForMaskedImageModelingCLS`` saved by ``utils.save_model``: ``{'model': ...}``
with a *shared* relative-position table and the CLS-pretraining branch) is built here at tiny
size.  The reference forward below is written from the checkpoint tensors with plain torch ops
(no timm, no code under test), so the equivalence tests pin the converter, the bias expansion,
the q/v biases, layer scale, the final norm and the MIM head.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from replicate import backbones, methods
from replicate.backbones import beit
from replicate.backbones.converters import CheckpointError, load_into
from tests.helpers import assert_close_to_scale

TINY = "beit_micro_patch8_32.beitv2_test"
D, DEPTH, HEADS, VOCAB, PATCH, GRID = 64, 4, 4, 64, 8, 4
N = GRID * GRID


# --------------------------------------------------------------------------- fake checkpoint
def bert_style_rel_index(side: int) -> torch.Tensor:
    """BEiT's index: grid offsets (dy, dx) -> (dy+side-1)*(2side-1) + dx+side-1 for patch pairs;
    CLS row -> R-3, CLS column -> R-2, CLS-CLS -> R-1 (R = table rows)."""
    rows = (2 * side - 1) ** 2 + 3
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + side - 1
    dx = xs[:, None] - xs[None, :] + side - 1
    idx = torch.empty(side * side + 1, side * side + 1, dtype=torch.long)
    idx[1:, 1:] = dy * (2 * side - 1) + dx
    idx[0, :] = rows - 3
    idx[:, 0] = rows - 2
    idx[0, 0] = rows - 1
    return idx


def _block(g: torch.Generator, prefix: str) -> dict:
    def r(*shape, s=0.1):
        return torch.randn(*shape, generator=g) * s

    return {
        prefix + "gamma_1": 0.1 + r(D, s=0.05), prefix + "gamma_2": 0.1 + r(D, s=0.05),
        prefix + "norm1.weight": 1 + r(D), prefix + "norm1.bias": r(D),
        prefix + "attn.q_bias": r(D), prefix + "attn.v_bias": r(D),
        prefix + "attn.qkv.weight": r(3 * D, D, s=0.15),
        prefix + "attn.proj.weight": r(D, D, s=0.15), prefix + "attn.proj.bias": r(D),
        prefix + "norm2.weight": 1 + r(D), prefix + "norm2.bias": r(D),
        prefix + "mlp.fc1.weight": r(4 * D, D, s=0.15), prefix + "mlp.fc1.bias": r(4 * D),
        prefix + "mlp.fc2.weight": r(D, 4 * D, s=0.15), prefix + "mlp.fc2.bias": r(D),
    }


def fake_beitv2_state(seed: int = 0) -> dict:
    """State dict in the official BEiT v2 pre-training layout (tiny sizes)."""
    g = torch.Generator().manual_seed(seed)
    rows = (2 * GRID - 1) ** 2 + 3
    sd = {
        "cls_token": torch.randn(1, 1, D, generator=g) * 0.5,
        "mask_token": torch.randn(1, 1, D, generator=g) * 0.5,
        "patch_embed.proj.weight": torch.randn(D, 3, PATCH, PATCH, generator=g) * 0.05,
        "patch_embed.proj.bias": torch.randn(D, generator=g) * 0.1,
        "rel_pos_bias.relative_position_bias_table": torch.randn(rows, HEADS, generator=g),
        "rel_pos_bias.relative_position_index": bert_style_rel_index(GRID),
        "norm.weight": 1 + torch.randn(D, generator=g) * 0.1,
        "norm.bias": torch.randn(D, generator=g) * 0.1,
        "lm_head.weight": torch.randn(VOCAB, D, generator=g) * 0.2,
        "lm_head.bias": torch.randn(VOCAB, generator=g) * 0.1,
    }
    for i in range(DEPTH):
        sd.update(_block(g, f"blocks.{i}."))
    for j in range(2):  # CLS-pretraining branch: head_layers = 2, no own rel-pos tables
        sd.update(_block(g, f"cls_pt_layers.{j}."))
    return sd


def save(tmp_path, sd: dict, name: str = "beitv2_fake.pth", wrap: bool = True) -> str:
    path = str(tmp_path / name)
    torch.save({"model": sd, "epoch": 1599} if wrap else sd, path)
    return path


# --------------------------------------------------------------------------- reference forward
def ref_tokens(sd: dict, x: torch.Tensor, seq_bias: torch.Tensor) -> torch.Tensor:
    """BEiT blocks + final norm on an embedded sequence x (B, L, D), bias (H, L, L)."""
    B, L, _ = x.shape
    hd = D // HEADS
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        b = torch.cat([sd[p + "attn.q_bias"], torch.zeros(D), sd[p + "attn.v_bias"]])
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], b).view(B, L, 3, HEADS, hd).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + seq_bias
        o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
        o = F.linear(o, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        x = x + sd[p + "gamma_1"] * o
        h = F.layer_norm(x, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = x + sd[p + "gamma_2"] * h
    return F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)


def ref_patches(sd: dict, images: torch.Tensor) -> torch.Tensor:
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    return x.flatten(2).transpose(1, 2)


def ref_grid_bias(sd: dict) -> torch.Tensor:
    table = sd["rel_pos_bias.relative_position_bias_table"]
    idx = sd["rel_pos_bias.relative_position_index"]
    return table[idx.reshape(-1)].view(N + 1, N + 1, HEADS).permute(2, 0, 1)


def ref_mim_logits(sd: dict, images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """BEiT pre-training forward(x, bool_masked_pos): lm_head logits of the masked patches."""
    e = ref_patches(sd, images)
    w = masked[..., None].float()
    e = e * (1 - w) + sd["mask_token"] * w
    x = torch.cat([sd["cls_token"].expand(len(e), -1, -1), e], dim=1)
    hidden = ref_tokens(sd, x, ref_grid_bias(sd))[:, 1:]
    return F.linear(hidden[masked], sd["lm_head.weight"], sd["lm_head.bias"])


# --------------------------------------------------------------------------- tests
@pytest.fixture
def ckpt(tmp_path):
    sd = fake_beitv2_state()
    return sd, save(tmp_path, sd)


def test_registry_entries():
    real = backbones.get("beitv2_base_patch16_224.pt1k")
    assert real.source == "beitv2" and real.default_file == "beitv2_base_patch16_224_pt1k.pth"
    assert real.url.endswith("/BEiT-v2/beitv2_base_patch16_224_pt1k.pth")
    assert real.adapter is beit.BeitAdapter and not real.tiny
    tiny = backbones.get(TINY)
    assert tiny.tiny and tiny.source == "beitv2"


def test_real_architecture_matches_official_shapes():
    with torch.device("meta"):  # shapes only: no memory, no init cost
        m = beit.beitv2_base_patch16_224()
    sd = m.state_dict()
    assert tuple(sd["lm_head.weight"].shape) == (8192, 768)
    assert tuple(sd["mask_token"].shape) == (1, 1, 768)
    assert tuple(sd["blocks.11.attn.relative_position_bias_table"].shape) == (27 * 27 + 3, 12)
    assert "pos_embed" not in sd and "blocks.0.gamma_1" in sd and "blocks.0.attn.q_bias" in sd
    assert not any(k.startswith(("head.", "fc_norm.", "rel_pos_bias.")) for k in sd)


def test_load_expands_shared_table_and_drops_cls_branch(ckpt):
    sd, path = ckpt
    entry = backbones.get(TINY)
    model = entry.build()
    dropped = load_into(model, path, entry)
    assert sorted(dropped) == sorted([k for k in sd if k.startswith("cls_pt_layers.")]
                                     + ["rel_pos_bias.relative_position_index"])
    for blk in model.blocks:  # every block gets its own copy of the shared table
        assert torch.equal(blk.attn.relative_position_bias_table,
                           sd["rel_pos_bias.relative_position_bias_table"])
    assert (model.blocks[0].attn.relative_position_bias_table.data_ptr()
            != model.blocks[1].attn.relative_position_bias_table.data_ptr())
    assert torch.equal(model.mask_token, sd["mask_token"])
    assert torch.equal(model.lm_head.weight, sd["lm_head.weight"])
    assert torch.equal(model.blocks[0].attn.relative_position_index, bert_style_rel_index(GRID))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_mim_logits_equal_reference(ckpt, attention):
    sd, path = ckpt
    adapter = backbones.create(TINY, path, attention=attention)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=g)
    masked = torch.rand(3, N, generator=g) < 0.4
    masked[:, 0] = True
    ours = adapter.mim_logits(images, masked)
    ref = ref_mim_logits(sd, images, masked)
    assert ours.shape == (int(masked.sum()), VOCAB)
    # float32 vs a hand-built reference: reassociation, ~1e-7 of the scale (0 measured); a
    # wrong bias table or mask slot moves the logits by >1e-2 of it
    assert_close_to_scale(ours, ref, rel=1e-5)


@pytest.mark.parametrize("extra_bias", ["cls", "zero"])
def test_vptm_mask_token_equals_reference(ckpt, extra_bias):
    """VPTM without prompts: [CLS, MASK, patches]; the [MASK] gets the CLS bias entries
    ('cls') or none ('zero').  Its lm_head logits equal a hand-built reference."""
    sd, path = ckpt
    adapter = backbones.create(TINY, path)
    model = methods.build_model(adapter, "vptm", dict(num_prompts=0, extra_bias=extra_bias), 3)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = model.method.features(adapter, model.forward_tokens(images))
    grid = ref_grid_bias(sd)
    src = torch.tensor([0, 0] + list(range(1, N + 1)))  # position 1 ([MASK]) borrows CLS's
    bias = grid[:, src][:, :, src].clone()
    if extra_bias == "zero":
        bias[:, 1, :] = 0
        bias[:, :, 1] = 0
    e = ref_patches(sd, images)
    x = torch.cat([sd["cls_token"].expand(2, -1, -1), sd["mask_token"].expand(2, -1, -1), e], 1)
    h = ref_tokens(sd, x, bias)[:, 1]
    ref = F.linear(h, sd["lm_head.weight"], sd["lm_head.bias"])
    assert_close_to_scale(z, ref, rel=1e-5)  # as in test_mim_logits_equal_reference


# ---------------------------------------------------------------- strict key assertions
def _load(path):
    entry = backbones.get(TINY)
    return load_into(entry.build(), path, entry)


@pytest.mark.parametrize("key", ["lm_head.weight", "lm_head.bias", "mask_token"])
def test_missing_mim_head_is_a_clear_error(tmp_path, key):
    sd = fake_beitv2_state()
    del sd[key]
    with pytest.raises(CheckpointError, match=r"VPTM needs the MIM head") as e:
        _load(save(tmp_path, sd))
    assert key in str(e.value) and "beitv2_base_patch16_224_pt1k.pth" in str(e.value)


def test_unknown_extra_key_is_an_error(tmp_path):
    sd = fake_beitv2_state()
    sd["pos_embed"] = torch.zeros(1, N + 1, D)
    with pytest.raises(CheckpointError, match=r"unexpected key.*pos_embed"):
        _load(save(tmp_path, sd))


def test_missing_block_key_is_an_error(tmp_path):
    sd = fake_beitv2_state()
    del sd["blocks.2.gamma_1"]
    with pytest.raises(CheckpointError, match=r"missing key.*blocks\.2\.gamma_1"):
        _load(save(tmp_path, sd))


def test_truncated_file_is_an_error(tmp_path):
    path = save(tmp_path, fake_beitv2_state())
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read"):
        _load(path)


def test_not_a_pretraining_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="key 'model'"):
        _load(save(tmp_path, fake_beitv2_state(), wrap=False))


def test_wrong_position_index_is_an_error(tmp_path):
    sd = fake_beitv2_state()
    sd["rel_pos_bias.relative_position_index"] = sd["rel_pos_bias.relative_position_index"].T
    with pytest.raises(CheckpointError, match="relative_position_index"):
        _load(save(tmp_path, sd))


def test_shared_and_per_block_tables_is_an_error(tmp_path):
    sd = fake_beitv2_state()
    table = sd["rel_pos_bias.relative_position_bias_table"]
    sd["blocks.0.attn.relative_position_bias_table"] = table.clone()
    with pytest.raises(CheckpointError, match="shared relative-position table and per-block"):
        _load(save(tmp_path, sd))


def test_wrong_size_is_an_error(tmp_path):
    sd = fake_beitv2_state()
    sd["lm_head.weight"] = torch.zeros(VOCAB + 1, D)
    with pytest.raises(CheckpointError, match="wrong shape"):
        _load(save(tmp_path, sd))


# ---------------------------------------------------------------- doctor
def test_check_checkpoint(tmp_path, monkeypatch):
    ok, msg = beit.check_checkpoint(save(tmp_path, fake_beitv2_state()), backbone=TINY)
    assert ok and "lm_head [64, 64]" in msg
    sd = fake_beitv2_state()
    del sd["lm_head.weight"]
    ok, msg = beit.check_checkpoint(save(tmp_path, sd, "nohead.pth"), backbone=TINY)
    assert not ok and "lm_head.weight" in msg
    ok, msg = beit.check_checkpoint(str(tmp_path / "absent.pth"))
    assert not ok and "not found" in msg and beit.BEITV2_PT1K_URL in msg
    monkeypatch.delenv("CKPT_ROOT", raising=False)
    ok, msg = beit.check_checkpoint()
    assert not ok and "CKPT_ROOT" in msg
    monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
    ok, msg = beit.check_checkpoint()
    assert not ok and str(tmp_path / "beitv2_base_patch16_224_pt1k.pth") in msg
