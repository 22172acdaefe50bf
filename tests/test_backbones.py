"""Backbone registry and the ViT adapter (wrap, don't fork, timm's ViT)."""
from __future__ import annotations

import re

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from replicate import backbones
from replicate.backbones import TimmViTAdapter, converters
from replicate.config import ConfigError
from replicate.methods import POOLS
from tests.helpers import (assert_close_to_scale, built_module, full_names, meta_model, tiny_names,
                           write_fake_checkpoint)



# ------------------------------------------------------------------ registry
@pytest.mark.parametrize("name", backbones.registered())
def test_entry_is_complete(name):
    e = backbones.get(name)
    assert e.name == name and re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", name), "arch.tag"
    assert e.source in converters.CONVERTERS
    assert e.default_pool in POOLS
    assert e.paper_key and e.url and e.note
    assert len(e.mean) == 3 and len(e.std) == 3
    if not e.tiny:
        assert e.default_file, "a real backbone names its file under CKPT_ROOT"


def test_required_real_backbones_are_registered():
    """Issue 4: ViT-B/16 MAE, MoCo v3 and the original supervised ImageNet-21k weights."""
    keys = {backbones.get(n).paper_key: backbones.get(n) for n in full_names()}
    assert keys["mae_vitb16"].source == "mae"
    assert keys["mocov3_vitb16"].source in ("mocov3", "mocov3_linear")
    assert keys["sup_vitb16_in21k"].source == "sup_npz"  # Google's npz, not timm's augreg
    assert {backbones.get(n).source for n in full_names()} >= {"mae", "mocov3", "mocov3_linear",
                                                                 "sup_npz"}


def test_unknown_and_duplicate_names():
    with pytest.raises(KeyError, match="registered"):
        backbones.get("vit_base_patch16_224.nope")
    with pytest.raises(KeyError, match="twice"):
        backbones.register(backbones.get(backbones.registered()[0]))
    with pytest.raises(KeyError, match="twice"):
        converters.register_converter("mae", converters.convert_mae)


# ------------------------------------------------------------------ checkpoint resolution
@pytest.mark.parametrize("name", full_names())
def test_real_backbone_needs_a_checkpoint(name, monkeypatch, tmp_path):
    e = backbones.get(name)
    with pytest.raises(ConfigError, match="random init"):
        backbones.resolve_checkpoint(e, "")
    monkeypatch.delenv("CKPT_ROOT", raising=False)
    with pytest.raises(ConfigError) as err:
        backbones.resolve_checkpoint(e, None)
    assert "CKPT_ROOT" in str(err.value) and e.default_file in str(err.value)
    with pytest.raises(ConfigError, match="CKPT_ROOT"):
        backbones.resolve_checkpoint(e, "${CKPT_ROOT}/x.pth")
    monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
    assert backbones.resolve_checkpoint(e, None) == str(tmp_path / e.default_file)
    assert backbones.resolve_checkpoint(e, "${CKPT_ROOT}/x.pth") == f"{tmp_path}/x.pth"


@pytest.mark.parametrize("name", tiny_names())
def test_tiny_backbone_random_init_and_checkpoint_via_env(name, monkeypatch, tmp_path):
    e = backbones.get(name)
    assert backbones.resolve_checkpoint(e, "") is None
    assert backbones.resolve_checkpoint(e, None) is None
    if e.source in ("mae", "timm"):  # the ${CKPT_ROOT} path reaches the converter
        path, sd = write_fake_checkpoint(tmp_path, name)
        monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
        adapter = backbones.create(name, checkpoint="${CKPT_ROOT}/" + path.name)
        assert torch.equal(adapter.vit.state_dict()["norm.weight"], sd["norm.weight"])


# ------------------------------------------------------------------ the adapter
def _timm_names():
    return [n for n in tiny_names() if backbones.get(n).adapter is TimmViTAdapter]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("name", _timm_names())
def test_adapter_reproduces_timm_forward(name, attention):
    """embed -> blocks -> final_norm through the adapter == timm's own forward_features."""
    torch.manual_seed(0)
    adapter = backbones.create(name, checkpoint="", attention=attention).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = adapter.embed(x)
        for i in range(adapter.num_blocks):
            h = adapter.block(i, h)
        ours = adapter.final_norm(h)
        theirs = adapter.vit.forward_features(x)
    # float32, the same ops through another call path: measured <=3e-7 of the scale
    assert_close_to_scale(ours, theirs, rel=1e-5)


def test_adapter_reproduces_timm_forward_vitb_on_one_224_image():
    name = next(n for n in full_names() if backbones.get(n).source == "mae")
    module = built_module(name)
    adapter = TimmViTAdapter(module, attention="sdpa")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = adapter.embed(x)
        for i in range(adapter.num_blocks):
            h = adapter.block(i, h)
        # float32 over 12 blocks of width 768: reassociation could reach ~1e-5 of the scale
        # (0 measured); a skipped or misordered op moves it by >1e-2
        assert_close_to_scale(adapter.final_norm(h), module.forward_features(x), rel=1e-4)


def test_temperature_one_is_the_plain_block():
    torch.manual_seed(0)
    adapter = backbones.create(_timm_names()[0], checkpoint="").eval()
    x = adapter.embed(torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        plain = adapter.block(0, x)
        assert torch.equal(adapter.block(0, x, temp=torch.tensor(1.0)), plain)
        # measured: temp 0.5 moves the output by 4e-4 of its scale, 40x what allclose forgives
        assert not torch.allclose(adapter.block(0, x, temp=torch.tensor(0.5)), plain)


def test_adapter_geometry():
    vitb = next(n for n in full_names() if backbones.get(n).adapter is TimmViTAdapter)
    a = TimmViTAdapter(meta_model(vitb))
    assert (a.num_blocks, a.embed_dim, a.num_patches, tuple(a.patch_size)) == (12, 768, 196, (16, 16))
    t = backbones.create(_timm_names()[0], checkpoint="")
    assert (t.num_blocks, t.embed_dim, t.num_patches) == (4, 64, 16)


def test_register_tokens_are_refused():
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                            num_classes=0, reg_tokens=2)
    with pytest.raises(ValueError, match="register"):
        TimmViTAdapter(vit)
