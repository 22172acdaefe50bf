"""ADE20K through mmseg (GateVPT Table 3): backbone, configs, Runner train/eval/resume, data.

CPU and offline: the configs build without weights, the end-to-end run uses a tiny ViT, a fake
MAE-layout checkpoint and a fake ADEChallengeData2016 folder written here.  Tests that need
mmseg/mmcv skip with a reason when those do not import.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate import backbones, methods
from replicate.backbones.converters import CheckpointError
from replicate.config import ConfigError
from replicate.data import DataError
from replicate.data.ade20k import COUNTS, URL, verify_ade20k
from tests.helpers import assert_close_to_scale

pytestmark = pytest.mark.seg

ROOT = Path(__file__).resolve().parents[1]
CFG_DIR = ROOT / "papers" / "gatevpt" / "configs" / "ade20k"
SMOKE = CFG_DIR / "smoke_tiny.py"
TINY = "vit_micro_patch8_32.mae_test"


def _mmseg_error():
    try:
        import mmcv  # noqa: F401
        import mmseg  # noqa: F401
        from mmseg.registry import MODELS  # noqa: F401

        import replicate.seg
        replicate.seg.require_mmseg()
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=False)
    except Exception as e:  # noqa: BLE001  (any import failure means: skip)
        return f"{type(e).__name__}: {e}"
    return None


_ERR = _mmseg_error()
needs_mmseg = pytest.mark.skipif(_ERR is not None,
                                 reason=f"mmseg/mmcv not importable ({_ERR}): the segmentation "
                                        f"environment runs these (make install-seg; .venv-seg)")


# ------------------------------------------------------------------ fixtures
def write_fake_ade(root: Path, n_train: int = 4, n_val: int = 2, size: int = 64,
                   seed: int = 0) -> Path:
    """ADEChallengeData2016 layout with a few size x size images and label maps (0..5)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for split, n, tag in (("training", n_train, "train"), ("validation", n_val, "val")):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"ADE_{tag}_{i + 1:08d}"
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            lab = np.zeros((size, size), dtype=np.uint8)
            # blocky labels so an image has a few classes; 0 = "other" (ignored)
            for y in range(0, size, 16):
                for x in range(0, size, 16):
                    lab[y:y + 16, x:x + 16] = rng.integers(0, 6)
            Image.fromarray(img).save(base / "images" / split / f"{stem}.jpg", quality=95)
            Image.fromarray(lab).save(base / "annotations" / split / f"{stem}.png")
    return base


def fake_tiny_checkpoint(path: Path, seed: int = 1, drop: str = "") -> Path:
    """A tiny ViT state dict in the MAE release layout ({'model': ...})."""
    torch.manual_seed(seed)
    sd = backbones.get(TINY).build().state_dict()
    if drop:
        sd = {k: v for k, v in sd.items() if k != drop}
    torch.save({"model": sd}, path)
    return path


@pytest.fixture
def ade_root(tmp_path, monkeypatch):
    write_fake_ade(tmp_path / "data")
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))
    return tmp_path / "data" / "ADEChallengeData2016"


# ------------------------------------------------------------------ data layout (no mmseg)
def test_verify_ade20k_layout(tmp_path):
    base = write_fake_ade(tmp_path, n_train=3, n_val=2, size=16)
    assert verify_ade20k(base, expect_counts=False) == []
    problems = verify_ade20k(base)  # a fake folder has the wrong counts
    assert len(problems) == 2
    assert f"{COUNTS['training']:,}" in problems[0] and URL in problems[0]
    os.remove(base / "annotations" / "validation" / "ADE_val_00000002.png")
    problems = verify_ade20k(base, expect_counts=False)
    assert len(problems) == 1 and "ADE_val_00000002" in problems[0]
    assert "no annotation" in problems[0]


def test_verify_ade20k_missing_root_and_nesting(tmp_path):
    missing = verify_ade20k(tmp_path / "nope")
    assert len(missing) == 1 and URL in missing[0] and "does not exist" in missing[0]
    write_fake_ade(tmp_path, n_train=1, n_val=1, size=16)
    nested = verify_ade20k(tmp_path)  # the parent of ADEChallengeData2016
    assert len(nested) == 1 and "ADEChallengeData2016" in nested[0]
    (tmp_path / "ADEChallengeData2016" / "images" / "training").rename(tmp_path / "moved")
    broken = verify_ade20k(tmp_path / "ADEChallengeData2016", expect_counts=False)
    assert len(broken) == 1 and "missing folder" in broken[0]


# ------------------------------------------------------------------ configs
def table3_configs():
    from replicate.seg.run import config_files
    return config_files(CFG_DIR)


@needs_mmseg
def test_six_table3_configs_exist():
    from replicate.seg.run import load_seg_config

    rows = set()
    for p in table3_configs():
        cfg = load_seg_config(p)
        bb = cfg.model.backbone
        rows.add((bb.backbone, bb.method["type"]))
        assert cfg.cell["method"] == bb.method["type"] and cfg.cell["table"] == "Table 3"
        assert cfg.effective_batch_size == 16  # Table 5
        assert cfg.optim_wrapper.optimizer.lr == 0.001  # Table 5
        assert cfg.train_dataloader.batch_size * cfg.num_gpus == cfg.effective_batch_size
        n_prompts = {"vpt_deep": 10}.get(bb.method["type"], 100)  # Table 3 header
        assert bb.method["num_prompts"] == n_prompts
        assert "train_cfg.max_iters" in cfg.assumed
    assert rows == {(f"vit_base_patch16_224.{b}", m) for b in ("mae", "mocov3")
                    for m in ("vpt_shallow", "vpt_deep", "gatevpt")}


@needs_mmseg
@pytest.mark.parametrize("path", [pytest.param(p, id=f"{p.parents[2].name}-{p.name}") for p in
                                  sorted(CFG_DIR.glob("*.py")) +
                                  sorted((ROOT / "papers/lspt/configs/ade20k").glob("*.py"))])
def test_config_builds_offline(path):
    """Every ADE20K config resolves its mmseg:: bases offline and builds (no weights)."""
    from mmseg.registry import MODELS

    from replicate.seg.run import load_seg_config

    cfg = load_seg_config(path)
    bb_cfg = cfg.model.backbone
    if not backbones.get(bb_cfg.backbone).tiny:
        bb_cfg.structure_only = True  # no ViT-B weights offline
    model = MODELS.build(cfg.model)
    bb = model.backbone
    assert type(bb).__name__ == "PromptedViTSeg"
    L = bb.adapter.num_blocks
    # SETR-PUP: main head on the last block, two auxiliary heads on earlier blocks
    assert bb.out_indices[model.decode_head.in_index] == L - 1
    assert len(model.auxiliary_head) == 2
    aux_blocks = sorted(bb.out_indices[h.in_index] for h in model.auxiliary_head)
    if L == 12:
        assert aux_blocks == [4, 8]  # paper: 5th and 9th blocks (1-based)
    assert model.decode_head.in_channels == bb.adapter.embed_dim
    # frozen backbone, trainable method
    assert not any(p.requires_grad for p in bb.adapter.parameters())
    trainable = {id(p) for p in bb.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in bb.method.parameters() if p.requires_grad}
    assert trainable, "the method has no trainable parameters"
    assert bb.method.head is None
    # the position embedding is at the crop grid
    h, w = cfg.crop_size
    ph, pw = bb.adapter.patch_size
    assert bb.adapter.vit.pos_embed.shape[1] == 1 + (h // ph) * (w // pw)
    # no trainable backbone parameter matches mmseg's 'head' lr_mult key (10x lr)
    assert not any("head" in n for n, p in bb.named_parameters() if p.requires_grad)


@needs_mmseg
def test_vitb_config_feature_maps_at_crop_and_other_sizes():
    """Table 3 model (structure only): three 768 x 32 x 32 maps at 512 x 512, prompts dropped;
    a multi-scale-like input (256 x 341) gives the padded 16 x 22 grid; logits are 150-way."""
    from mmseg.registry import MODELS

    from replicate.seg.run import load_seg_config

    cfg = load_seg_config(CFG_DIR / "mae_gatevpt.py")
    cfg.model.backbone.structure_only = True
    model = MODELS.build(cfg.model).eval()
    assert model.backbone.method.num_extra == 100
    with torch.no_grad():
        maps = model.backbone(torch.randn(1, 3, 512, 512))
        assert [tuple(m.shape) for m in maps] == [(1, 768, 32, 32)] * 3
        maps = model.backbone(torch.randn(1, 3, 256, 341))
        assert [tuple(m.shape) for m in maps] == [(1, 768, 16, 22)] * 3
        logits = model.encode_decode(torch.randn(1, 3, 512, 512), [dict(img_shape=(512, 512))])
    assert logits.shape == (1, 150, 512, 512)


# ------------------------------------------------------------------ backbone
METHOD_OPTS = {"vpt_shallow": dict(num_prompts=3), "vpt_deep": dict(num_prompts=3),
               "gatevpt": dict(num_prompts=3), "lspt": dict(num_prompts=3)}


def tiny_seg(method: str, img_size=32, out_indices=(1, 2, 3), checkpoint="", **opts):
    from replicate.seg.backbone import PromptedViTSeg

    torch.manual_seed(0)
    options = dict(METHOD_OPTS.get(method, {}), **opts)
    return PromptedViTSeg(backbone=TINY, checkpoint=checkpoint, img_size=img_size,
                          out_indices=out_indices, method=dict(type=method, **options))


@needs_mmseg
@pytest.mark.parametrize("method", methods.registered())
def test_feature_maps_per_method(method):
    try:
        bb = tiny_seg(method)
    except (TypeError, ValueError) as e:
        pytest.skip(f"method {method} cannot be built on the tiny ViT with default options: {e}")
    bb.eval()
    x = torch.randn(2, 3, 32, 32)
    maps = bb(x)
    assert len(maps) == 3
    for m in maps:
        assert m.shape == (2, 64, 4, 4)  # (B, D, 32/8, 32/8): CLS and prompts dropped
    # the block loop equals PromptedModel.forward_tokens (same hooks, same order)
    with torch.no_grad():
        ref = bb.prompted.forward_tokens(x)[:, -16:]
    # float32, the same blocks and hooks: 1e-5 of the scale covers any other kernel choice
    assert_close_to_scale(maps[-1].flatten(2).transpose(1, 2), ref, rel=1e-5)
    # other input sizes: padded to the patch grid, position embedding resampled on the fly
    maps = bb(torch.randn(1, 3, 44, 36))
    assert [tuple(m.shape) for m in maps] == [(1, 64, 6, 5)] * 3


@needs_mmseg
def test_prompt_count_does_not_change_map_shape_and_prompts_matter():
    a, b = tiny_seg("gatevpt", num_prompts=2), tiny_seg("gatevpt", num_prompts=7)
    a.eval()
    b.eval()
    x = torch.randn(1, 3, 32, 32)
    assert a(x)[0].shape == b(x)[0].shape == (1, 64, 4, 4)
    before = a(x)[-1].clone()
    with torch.no_grad():
        # random, not constant: LayerNorm ignores a shift or scale of a token
        a.method.prompt_embeddings.add_(torch.randn_like(a.method.prompt_embeddings))
    assert not torch.allclose(a(x)[-1], before)


@needs_mmseg
def test_out_indices_order_and_final_norm():
    from replicate.seg.backbone import PromptedViTSeg

    bb = tiny_seg("vpt_shallow", out_indices=(3, 0))
    bb.eval()
    x = torch.randn(1, 3, 32, 32)
    last, first = bb(x)
    bb2 = tiny_seg("vpt_shallow", out_indices=(0, 3))
    bb2.eval()
    # float32, same seed, weights and ops: 1e-5 of the scale covers any other kernel choice
    assert_close_to_scale(bb2(x)[0], first, rel=1e-5)
    assert_close_to_scale(bb2(x)[1], last, rel=1e-5)
    torch.manual_seed(0)
    normed = PromptedViTSeg(backbone=TINY, checkpoint="", img_size=32, out_indices=(0, 3),
                            final_norm=True, method=dict(type="vpt_shallow", num_prompts=3))
    normed.eval()
    y = normed(x)
    assert_close_to_scale(y[0], first, rel=1e-5)  # only the last block is normalised
    assert not torch.allclose(y[1], last)  # LayerNorm changes the map by O(1)
    ref = normed.adapter.final_norm(last.flatten(2).transpose(1, 2))
    assert_close_to_scale(y[1].flatten(2).transpose(1, 2), ref, rel=1e-5)  # as above


@needs_mmseg
def test_pos_embed_resampled_from_checkpoint(tmp_path):
    from replicate.seg.backbone import resize_pos_embed

    ckpt = fake_tiny_checkpoint(tmp_path / "mae.pth")
    orig = torch.load(ckpt)["model"]["pos_embed"]  # (1, 1+4*4, 64)
    bb = tiny_seg("gatevpt", img_size=64, checkpoint=str(ckpt))
    pe = bb.adapter.vit.pos_embed
    assert pe.shape == (1, 1 + 8 * 8, 64) and not pe.requires_grad
    assert torch.equal(pe[:, :1], orig[:, :1])  # CLS entry kept: a copy, exact
    expected = torch.nn.functional.interpolate(
        orig[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2), size=(8, 8), mode="bilinear",
        align_corners=False).permute(0, 2, 3, 1).reshape(1, 64, 64)
    # mmseg's resize_pos_embed; bilinear = 4-term weighted sums: a few ulp if another kernel
    assert_close_to_scale(pe[:, 1:], expected, rel=1e-6)
    assert resize_pos_embed(pe, (8, 8), (8, 8), "bilinear") is pe
    assert [m.shape[-2:] for m in bb(torch.randn(1, 3, 64, 64))] == [(8, 8)] * 3


@needs_mmseg
def test_frozen_backbone_stays_in_eval_and_only_method_and_heads_get_grads():
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    from replicate.seg.run import load_seg_config

    cfg = load_seg_config(SMOKE)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    bb = model.backbone
    assert bb.method.training and not bb.adapter.training
    assert not any(m.training for m in bb.adapter.modules())
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32),
                                        pad_shape=(32, 32)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 6, (1, 32, 32)))
        samples.append(s)
    losses = model.loss(torch.randn(2, 3, 32, 32), samples)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    frozen = {n for n, p in model.named_parameters() if n.startswith("backbone.prompted.adapter.")}
    assert frozen
    for n, p in model.named_parameters():
        if n in frozen:
            assert not p.requires_grad and p.grad is None, n
        else:
            assert p.requires_grad and p.grad is not None, f"{n} got no gradient"
    got = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert got == {"backbone", "decode_head", "auxiliary_head"}
    assert {n for n, p in model.named_parameters() if p.grad is not None
            and n.startswith("backbone.")} == \
        {f"backbone.prompted.method.{n}" for n, _ in bb.method.named_parameters()}


# ------------------------------------------------------------------ end to end
def _ckpt_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu")["state_dict"]


@needs_mmseg
def test_train_eval_checkpoint_resume(tmp_path, ade_root):
    from replicate.seg.run import load_seg_config, prepare_data, seg_test_ms, seg_train

    ckpt = fake_tiny_checkpoint(tmp_path / "mae_tiny.pth")
    work = tmp_path / "run"
    opts = {"model.backbone.checkpoint": str(ckpt), "train_cfg.max_iters": 2,
            "param_scheduler.0.end": 4}
    rec = seg_train(SMOKE, work, cfg_options=opts)
    assert rec["status"] == "done" and rec["smoke"] is True
    assert rec["benchmark"] == "ade20k" and rec["method_type"] == "gatevpt"
    assert rec["backbone"] == "micro_mae_test" and rec["batch_size"] == 2
    m = rec["metrics"]
    assert 0.0 <= m["miou_ss"] <= 100.0 and 0.0 <= m["miou_ms"] <= 100.0
    assert rec["selected_iter"] == 2
    assert rec["trainable_params"] == rec["method_params"] + rec["head_params"]
    on_disk = json.loads((work / "record.json").read_text())
    assert on_disk["metrics"] == m and on_disk["config_hash"] == rec["config_hash"]
    assert (work / "iter_2.pth").is_file()

    # frozen backbone weights equal the checkpoint's after training
    src = torch.load(ckpt)["model"]
    sd2 = _ckpt_weights(work / "iter_2.pth")
    for k, v in src.items():  # frozen: a copy; float32 default tolerance (1.3e-6 rel, 1e-5 abs)
        torch.testing.assert_close(sd2[f"backbone.prompted.adapter.vit.{k}"], v)

    # the multi-scale path loads the checkpoint into the TTA model: one scale (the test
    # scale) without flip reproduces the single-scale metrics exactly
    cfg = load_seg_config(SMOKE, opts)
    cfg.tta_pipeline[1]["transforms"] = [
        [dict(type="Resize", scale=(128, 32), keep_ratio=True)],
        [dict(type="RandomFlip", prob=0.0, direction="horizontal")],
        [dict(type="LoadAnnotations")], [dict(type="PackSegInputs")]]
    prepare_data(cfg)
    one = seg_test_ms(cfg, str(work / "iter_2.pth"), tmp_path / "ms")
    assert {k[:-3]: v for k, v in one.items()} == {k[:-3]: v for k, v in m.items()
                                                   if k.endswith("_ss")}

    # finished: a second call returns the record without training
    assert seg_train(SMOKE, work, cfg_options=opts)["finished"] == rec["finished"]
    # another config in the same finished dir is refused
    with pytest.raises(ConfigError, match="another config"):
        seg_train(SMOKE, work, cfg_options={**opts, "train_cfg.max_iters": 4})

    # preempted before the record: more iterations resume from iter_2 (Runner's own resume)
    (work / "record.json").unlink()
    rec2 = seg_train(SMOKE, work, cfg_options={**opts, "train_cfg.max_iters": 4})
    assert rec2["selected_iter"] == 4 and (work / "iter_4.pth").is_file()
    logs = "".join(Path(f).read_text() for f in glob.glob(str(work / "*" / "*.log")))
    assert "Auto resumed from the latest checkpoint" in logs and "resumed epoch: 0, iter: 2" in logs
    sd4 = _ckpt_weights(work / "iter_4.pth")
    for k, v in src.items():  # frozen: a copy; float32 default tolerance (1.3e-6 rel, 1e-5 abs)
        torch.testing.assert_close(sd4[f"backbone.prompted.adapter.vit.{k}"], v)
    key = "backbone.prompted.method.prompt_embeddings"
    assert not torch.equal(sd2[key], sd4[key])  # the prompts trained
    head = [k for k in sd4 if k.startswith("decode_head.conv_seg")][0]
    assert not torch.equal(sd2[head], sd4[head])


# ------------------------------------------------------------------ bad input
@needs_mmseg
def test_missing_data_root(tmp_path, monkeypatch):
    from replicate.seg.run import seg_train

    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="ADEChallengeData2016") as e:
        seg_train(SMOKE, tmp_path / "run")
    assert URL in str(e.value) and not (tmp_path / "run").exists()
    monkeypatch.delenv("DATA_ROOT")
    with pytest.raises(ConfigError, match="DATA_ROOT is not set"):
        seg_train(SMOKE, tmp_path / "run")


@needs_mmseg
@pytest.mark.parametrize("override, match", [
    ({"model.backbone.backbone": "vit_nope_patch16"}, "vit_nope_patch16' is not registered"),
    ({"model.backbone.method": {"type": "no_such_method"}}, "unknown method 'no_such_method'"),
    ({"model.backbone.method.gate_int": 3}, "unknown option"),
    ({"model.backbone.backbone": "vit_base_patch16_224.mae",
      "model.backbone.structure_only": True}, "structure_only"),
    ({"effective_batch_size": 0}, "effective_batch_size"),
])
def test_bad_config_is_one_clear_error(tmp_path, ade_root, override, match):
    from replicate.seg.run import seg_train

    with pytest.raises(ConfigError, match=match):
        seg_train(SMOKE, tmp_path / "run", cfg_options=override)


@needs_mmseg
def test_missing_or_misfit_checkpoint_in_seg_train(tmp_path, ade_root, monkeypatch):
    from replicate.seg.run import seg_train

    with pytest.raises(CheckpointError, match="not found.*get"):
        seg_train(SMOKE, tmp_path / "run",
                  cfg_options={"model.backbone.checkpoint": str(tmp_path / "none.pth")})
    monkeypatch.delenv("CKPT_ROOT", raising=False)
    with pytest.raises(ConfigError, match="CKPT_ROOT is not set"):
        seg_train(CFG_DIR / "mae_gatevpt.py", tmp_path / "run")
    bad = fake_tiny_checkpoint(tmp_path / "bad.pth", drop="blocks.0.attn.qkv.weight")
    with pytest.raises(CheckpointError, match="blocks.0.attn.qkv.weight"):
        seg_train(SMOKE, tmp_path / "run", cfg_options={"model.backbone.checkpoint": str(bad)})


@needs_mmseg
def test_bad_backbone_or_method_or_checkpoint_at_build(tmp_path):
    from replicate.seg.backbone import PromptedViTSeg

    with pytest.raises(ConfigError, match="unknown backbone 'nope'.*registered|one of"):
        PromptedViTSeg(backbone="nope", method=dict(type="gatevpt"))
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        PromptedViTSeg(backbone=TINY, checkpoint="", img_size=32, out_indices=(3,),
                       method=dict(type="nope"))
    with pytest.raises(ConfigError, match="out_indices"):
        PromptedViTSeg(backbone=TINY, checkpoint="", img_size=32, out_indices=(1, 9),
                       method=dict(type="linear"))
    with pytest.raises(ConfigError, match="not a multiple"):
        PromptedViTSeg(backbone=TINY, checkpoint="", img_size=30, out_indices=(3,),
                       method=dict(type="linear"))
    bad = fake_tiny_checkpoint(tmp_path / "bad.pth", drop="blocks.0.attn.qkv.weight")
    with pytest.raises(CheckpointError, match=str(bad)):
        PromptedViTSeg(backbone=TINY, checkpoint=str(bad), img_size=32, out_indices=(3,),
                       method=dict(type="linear"))
    with pytest.raises(ConfigError, match="random init is only"):
        PromptedViTSeg(backbone="vit_base_patch16_224.mae", checkpoint="",
                       method=dict(type="linear"))


@needs_mmseg
def test_missing_config_file(tmp_path):
    from replicate.seg.run import load_seg_config

    with pytest.raises(ConfigError, match="not found"):
        load_seg_config(tmp_path / "nope.py")


def test_cli_subcommands_parse():
    from replicate.seg.cli import add_subcommands

    parser = argparse.ArgumentParser()
    add_subcommands(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["seg-train", str(SMOKE), "--work-dir", "w", "--cfg-options",
                           "train_cfg.max_iters=2"])
    assert a.func.__name__ == "cmd_seg_train" and a.work_dir == "w"
    assert parser.parse_args(["seg-plan"]).func.__name__ == "cmd_seg_plan"


def test_segjob_is_picklable_and_requeues_itself():
    import pickle

    from replicate.seg.run import SegJob

    job = pickle.loads(pickle.dumps(SegJob(cfg_options={"train_cfg.max_iters": 2})))
    delayed = job.checkpoint("cfg.py", "/runs/x")
    assert isinstance(delayed.function, SegJob) and delayed.args == ("cfg.py", "/runs/x")
    assert delayed.function.cfg_options == {"train_cfg.max_iters": 2}


@needs_mmseg
def test_seg_plan_lists_the_six_runs(tmp_path):
    from replicate.seg.run import seg_plan

    plan = seg_plan(CFG_DIR, str(tmp_path))
    assert len(plan) == 6 and {p["state"] for p in plan} == {"new"}
    assert len({p["work_dir"] for p in plan}) == 6
    assert all(p["work_dir"].startswith(str(tmp_path / "gatevpt" / "ade20k")) for p in plan)


def test_data_verify_reports_ade20k(tmp_path):
    """`data verify` includes ADE20K: a missing folder is an error naming the download."""
    from replicate.data.verify import verify

    findings = verify(str(tmp_path), benchmark="ade20k")
    assert findings and findings[0].level == "error"
    assert "ADEChallengeData2016" in findings[0].message
    (tmp_path / "ADEChallengeData2016" / "images" / "training").mkdir(parents=True)
    msgs = " ".join(f.message for f in verify(str(tmp_path), benchmark="ade20k"))
    assert "annotations" in msgs or "20,210" in msgs or "20210" in msgs


@needs_mmseg
def test_lspt_ade20k_cells_do_not_inherit_gatevpt_table():
    """LSPT's ADE20K configs build on GateVPT's Table 3 setup, but no LSPT ADE20K table is known:
    the resolved cell must not name GateVPT's table (records copy it)."""
    from replicate.seg.run import config_files, load_seg_config

    paths = config_files(ROOT / "papers/lspt/configs/ade20k")
    assert len(paths) == 2
    for p in paths:
        cfg = load_seg_config(p)
        assert cfg.paper == "lspt" and cfg.cell["method"] == "lspt"
        assert cfg.cell["benchmark"] == "ade20k"  # the rest of GateVPT's cell is kept
        assert "Table" not in cfg.cell["table"] and "unavailable" in cfg.cell["table"]
