"""Checkpoint converters: fake files in the real key layouts (tests/helpers.py) load exactly;
every way a file can be wrong gives one CheckpointError naming the file and the problem."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate import backbones
from replicate.backbones import converters
from replicate.backbones.converters import CheckpointError
from tests.helpers import (DOCUMENTED_EXTRAS, LAYOUTS, SUFFIX, TESTED_ELSEWHERE, full_names,
                           layout_for, layout_names, meta_model, num_heads, random_state_dict,
                           tensors_equal, tiny_name_for_source, tiny_names, write_checkpoint,
                           write_fake_checkpoint, zeros_state_dict)

ROOT = Path(__file__).resolve().parents[1]



def _load(name: str, path) -> torch.nn.Module:
    return backbones.create(name, checkpoint=str(path)).vit


# ------------------------------------------------------------------ coverage of the registry
@pytest.mark.parametrize("source", sorted(converters.CONVERTERS))
def test_every_converter_has_a_fake_layout_and_a_tiny_backbone(source):
    assert backbones.get(tiny_name_for_source(source)).tiny
    if source in TESTED_ELSEWHERE:
        assert (ROOT / TESTED_ELSEWHERE[source]).is_file()
        return
    assert source in LAYOUTS, (f"add the real key layout of '{source}' files to tests/helpers.py "
                               "LAYOUTS (or list its own test module in TESTED_ELSEWHERE)")
    assert source in DOCUMENTED_EXTRAS


def test_every_backbone_source_has_a_converter():
    for name in backbones.registered():
        assert backbones.get(name).source in converters.CONVERTERS, name


# ------------------------------------------------------------------ tiny round trips
@pytest.mark.parametrize("name", layout_names())
def test_tiny_checkpoint_loads_exactly_the_file_tensors(name, tmp_path):
    path, sd = write_fake_checkpoint(tmp_path, name, seed=3)
    vit = _load(name, path)
    assert tensors_equal(vit.state_dict(), sd)
    # and the dropped keys are exactly the documented extras of this source
    entry = backbones.get(name)
    dropped = converters.load_into(entry.build(), str(path), entry)
    extras = DOCUMENTED_EXTRAS[entry.source]
    assert all(k.startswith(extras) for k in dropped), dropped
    for prefix in extras:
        assert any(k.startswith(prefix) for k in dropped), f"{prefix}* not in the fake file?"


def test_mocov3_keeps_base_encoder_not_momentum_encoder(tmp_path):
    name = tiny_name_for_source("mocov3")
    path, sd = write_fake_checkpoint(tmp_path, name, seed=5)
    raw = torch.load(path)["state_dict"]
    k = "blocks.0.attn.qkv.weight"
    assert not torch.equal(raw["module.momentum_encoder." + k], raw["module.base_encoder." + k])
    assert torch.equal(_load(name, path).state_dict()[k], raw["module.base_encoder." + k])


def test_sup_npz_matches_timms_own_npz_loader(tmp_path):
    """Numerical equivalence with timm.models.vision_transformer._load_weights on the same file;
    timm's loader also independently confirms the fake file has Google's layout."""
    from timm.models.vision_transformer import _load_weights

    name = tiny_name_for_source("sup_npz")
    path, sd = write_fake_checkpoint(tmp_path, name, seed=11)
    ours = _load(name, path).eval()
    theirs = backbones.get(name).build().eval()
    _load_weights(theirs, str(path))
    for k, v in theirs.state_dict().items():
        # exact: both loaders only transpose/reshape/copy the stored float32 arrays
        torch.testing.assert_close(ours.state_dict()[k], v, rtol=0, atol=0, msg=k)
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0, msg=k)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # exact: the same timm module on bit-identical weights runs the same kernels
        torch.testing.assert_close(ours.forward_features(x), theirs.forward_features(x),
                                   rtol=0, atol=0)


# ------------------------------------------------------------------ full size, no disk I/O
@pytest.mark.parametrize("name", [n for n in full_names() if backbones.get(n).source in LAYOUTS])
def test_real_size_key_layout(name):
    """The converted real-size layout (zero tensors of the real shapes, meta device) equals the
    registered architecture's keys and shapes; only documented extras are dropped."""
    entry = backbones.get(name)
    model = meta_model(name)
    obj = layout_for(entry.source, zeros_state_dict(name), num_heads(model))
    sd, dropped = converters.CONVERTERS[entry.source](obj, "/fake/" + entry.default_file)
    expected = model.state_dict()
    assert set(sd) == set(expected)
    for k, v in expected.items():
        assert tuple(sd[k].shape) == tuple(v.shape), k
    assert all(k.startswith(DOCUMENTED_EXTRAS[entry.source]) for k in dropped)
    with warnings.catch_warnings():  # copying CPU zeros (npz) into a meta model is a no-op
        warnings.simplefilter("ignore")
        converters.load_object(model, obj, "/fake/" + entry.default_file, entry)


def test_real_size_fake_layouts_have_the_published_shapes():
    """Guards the fakes themselves: shapes of the real release files (ViT-B/16)."""
    name = next(n for n in full_names() if backbones.get(n).source == "sup_npz")
    w = layout_for("sup_npz", zeros_state_dict(name), 12)
    blk = "Transformer/encoderblock_11/"
    assert w["embedding/kernel"].shape == (16, 16, 3, 768)
    assert w["cls"].shape == (1, 1, 768)
    assert w["Transformer/posembed_input/pos_embedding"].shape == (1, 197, 768)
    assert w[blk + "MultiHeadDotProductAttention_1/query/kernel"].shape == (768, 12, 64)
    assert w[blk + "MultiHeadDotProductAttention_1/query/bias"].shape == (12, 64)
    assert w[blk + "MultiHeadDotProductAttention_1/out/kernel"].shape == (12, 64, 768)
    assert w[blk + "MlpBlock_3/Dense_0/kernel"].shape == (768, 3072)
    assert w["head/kernel"].shape == (768, 21843)
    moco = layout_for("mocov3", zeros_state_dict(name), 12)["state_dict"]
    assert moco["module.base_encoder.head.0.weight"].shape == (4096, 768)
    assert "module.base_encoder.head.0.bias" not in moco  # MoCo v3 MLP linears have no bias
    assert moco["module.base_encoder.head.6.weight"].shape == (256, 4096)
    assert "module.base_encoder.head.7.weight" not in moco  # last BN: affine=False
    assert moco["module.predictor.0.weight"].shape == (4096, 256)
    assert any(k.startswith("module.momentum_encoder.blocks.11.") for k in moco)


def test_real_size_wrong_source_names_the_right_backbone():
    """MoCo v3's linear-probe file given to the pre-training entry, and the reverse."""
    pre = next(n for n in full_names() if backbones.get(n).source == "mocov3")
    lin = next(n for n in full_names() if backbones.get(n).source == "mocov3_linear")
    for entry_name, file_source, right in ((pre, "mocov3_linear", lin), (lin, "mocov3", pre)):
        obj = layout_for(file_source, zeros_state_dict(entry_name), 12)
        with pytest.raises(CheckpointError) as e:
            converters.load_object(meta_model(entry_name), obj, "/ckpt/x.pth.tar",
                                   backbones.get(entry_name))
        assert "/ckpt/x.pth.tar" in str(e.value) and f"'{right}'" in str(e.value)


# ------------------------------------------------------------------ wrong files
def _corrupted(source: str, sd, heads: int, how: str):
    sd = dict(sd)
    npz = source == "sup_npz"
    if how == "missing" and not npz:
        del sd["blocks.1.mlp.fc2.bias"]
    elif how == "shape":
        sd["blocks.0.mlp.fc1.bias"] = torch.zeros(7)
    elif how == "unexpected" and not npz:
        sd["blocks.0.attn.extra_scale"] = torch.ones(3)
    obj = layout_for(source, sd, heads)
    if how == "missing" and npz:
        del obj["Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias"]
    elif how == "unexpected" and npz:
        obj["Transformer/encoderblock_0/extra_scale"] = np.ones(3, np.float32)
    return obj


#: what the message must say, and the offending key under its timm or .npz name
WORDS = {"missing": ("missing", ("fc2", "Dense_1")),
         "unexpected": ("unexpected", ("extra_scale",)),
         "shape": ("shape", ("fc1", "Dense_0"))}


@pytest.mark.parametrize("how", sorted(WORDS))
@pytest.mark.parametrize("name", layout_names())
def test_wrong_keys_and_shapes_raise_one_error_naming_file_and_key(name, how, tmp_path):
    source = backbones.get(name).source
    obj = _corrupted(source, random_state_dict(name), num_heads(meta_model(name)), how)
    path = write_checkpoint(obj, tmp_path / f"bad{SUFFIX[source]}")
    with pytest.raises(CheckpointError) as e:
        _load(name, path)
    msg = str(e.value)
    problem, keys = WORDS[how]
    assert str(path) in msg and problem in msg, msg
    assert any(k in msg for k in keys), msg


@pytest.mark.parametrize("entry_name,file_name",
                         [(e, f) for e in tiny_names() for f in layout_names() if e != f])
def test_other_layout_loads_identically_or_error_names_the_right_backbone(entry_name, file_name,
                                                                         tmp_path):
    """A file of another source either fits exactly (a plain-timm entry reads MAE's 'model'
    dict) or the error names the file and, for the same architecture, the backbone whose
    layout the file has."""
    path, sd = write_fake_checkpoint(tmp_path, file_name, seed=2)
    try:
        vit = _load(entry_name, path)
    except CheckpointError as e:
        assert str(path) in str(e), str(e)
        if backbones.get(entry_name).build is backbones.get(file_name).build:
            assert f"'{file_name}'" in str(e), str(e)
    else:
        assert backbones.get(entry_name).source == "timm"
        assert tensors_equal(vit.state_dict(), sd)


@pytest.mark.parametrize("source", sorted(SUFFIX))
def test_truncated_file(source, tmp_path):
    path, _ = write_fake_checkpoint(tmp_path, tiny_name_for_source(source))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        _load(tiny_name_for_source(source), path)
    assert str(path) in str(e.value) and "truncated" in str(e.value)


@pytest.mark.parametrize("source", ["mae", "sup_npz"])
def test_empty_and_absent_files(source, tmp_path):
    name = tiny_name_for_source(source)
    empty = tmp_path / f"empty{SUFFIX[source]}"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        _load(name, empty)
    assert str(empty) in str(e.value) and "empty" in str(e.value)
    absent = tmp_path / f"absent{SUFFIX[source]}"
    with pytest.raises(CheckpointError) as e:
        _load(name, absent)
    assert str(absent) in str(e.value) and "not found" in str(e.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is a README, not weights\n")
    with pytest.raises(CheckpointError) as e:
        _load(tiny_name_for_source("mae"), path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------ Google .npz: shapes, names
NPZ_BLOCK0 = "Transformer/encoderblock_0/"
NPZ_ATTN0 = NPZ_BLOCK0 + "MultiHeadDotProductAttention_1/"


@pytest.mark.parametrize("key,reshape,expected", [
    ("embedding/kernel", lambda a: a.reshape(8, 8, -1), "(P, P, 3, D)"),   # rank 3: permute
    (NPZ_ATTN0 + "query/kernel", lambda a: a.reshape(-1), "(D=64, H, hd)"),  # rank 1: flatten(1)
    (NPZ_ATTN0 + "out/kernel", lambda a: a.reshape(4, -1), "(H=4, hd=16, D=64)"),  # rank 2
    (NPZ_BLOCK0 + "MlpBlock_3/Dense_0/kernel", lambda a: a[None], "(D=64, M)"),     # rank 3
    ("cls", lambda a: np.concatenate([a, a], -1), "(1, 1, D=64)"),  # right rank, 2 * D
])
def test_npz_array_of_the_wrong_shape_names_file_key_and_both_shapes(key, reshape, expected,
                                                                       tmp_path):
    """Each of these used to reach a torch reshape (a raw torch error) or fail later under a
    timm name; now one CheckpointError names the .npz array, its shape and the layout."""
    name = tiny_name_for_source("sup_npz")
    obj = layout_for("sup_npz", random_state_dict(name), num_heads(meta_model(name)))
    obj[key] = reshape(obj[key])
    path = write_checkpoint(obj, tmp_path / "bad.npz")
    with pytest.raises(CheckpointError) as e:
        _load(name, path)
    msg = str(e.value)
    assert str(path) in msg and f"array '{key}' has shape {tuple(obj[key].shape)}" in msg, msg
    assert f"expected {expected}" in msg, msg


def test_npz_with_an_imagenet_1k_head_is_refused(tmp_path):
    """Google's ImageNet-1k fine-tuned release is also called ViT-B_16.npz: its 1000-class
    head tells it apart from the 21k pre-training file the registry means."""
    name = tiny_name_for_source("sup_npz")
    obj = layout_for("sup_npz", random_state_dict(name), num_heads(meta_model(name)))
    obj["head/kernel"], obj["head/bias"] = np.zeros((64, 1000), np.float32), np.zeros(1000)
    path = write_checkpoint(obj, tmp_path / "ViT-B_16.npz")
    with pytest.raises(CheckpointError, match=r"'head/kernel' has shape \(64, 1000\).*21843"):
        _load(name, path)


def _in21k_like_tiny():
    """The tiny .npz backbone with the real in21k entry's file names (a ViT-B file is 330 MB)."""
    import dataclasses

    real = backbones.get("vit_base_patch16_224.orig_in21k")
    assert real.default_file == "imagenet21k_ViT-B_16.npz" and "ViT-B_16.npz" in real.other_files
    tiny = backbones.get(tiny_name_for_source("sup_npz"))
    return dataclasses.replace(tiny, tiny=False, default_file=real.default_file,
                               other_files=real.other_files, url=real.url)


def test_the_downloads_own_npz_name_is_accepted(tmp_path, monkeypatch):
    entry = _in21k_like_tiny()
    sd = random_state_dict(entry.name, seed=4)
    downloaded = write_checkpoint(layout_for("sup_npz", sd, num_heads(meta_model(entry.name))),
                                  tmp_path / "ViT-B_16.npz")
    monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
    assert backbones.resolve_checkpoint(entry, None) == str(downloaded)  # via CKPT_ROOT
    given = "${CKPT_ROOT}/imagenet21k_ViT-B_16.npz"                     # or an explicit path
    assert backbones.resolve_checkpoint(entry, given) == str(downloaded)
    model = entry.build()
    converters.load_into(model, backbones.resolve_checkpoint(entry, None), entry)
    assert tensors_equal(model.state_dict(), sd)
    # the registry's own name wins when both exist; other paths are taken as given
    (tmp_path / "imagenet21k_ViT-B_16.npz").write_bytes(downloaded.read_bytes())
    assert backbones.resolve_checkpoint(entry, None) == str(tmp_path / "imagenet21k_ViT-B_16.npz")
    assert backbones.resolve_checkpoint(entry, str(tmp_path / "x.npz")) == str(tmp_path / "x.npz")


def test_missing_npz_message_says_where_to_get_it_and_how_to_rename(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
    name = "vit_base_patch16_224.orig_in21k"
    entry = backbones.get(name)
    path = backbones.resolve_checkpoint(entry, None)
    assert path == str(tmp_path / "imagenet21k_ViT-B_16.npz")
    with pytest.raises(CheckpointError) as e:
        converters.load_into(meta_model(name), path, entry)
    msg = str(e.value)
    assert f"checkpoint not found: {path}" in msg and entry.url in msg, msg
    assert f"mv {tmp_path / 'ViT-B_16.npz'} {path}" in msg, msg
