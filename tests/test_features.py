"""Cached features for the linear probe (train.cache_features, replicate/engine/features.py).

The cached path must give the normal path's run (tolerance: 1e-5 of the scale of losses and
head weights, identical top-1) while running the frozen backbone once per image instead of once
per image and epoch.  Tiny backbone, synthetic in-memory data (CPU, seconds)."""
from __future__ import annotations

import pytest
import torch

from replicate import backbones, data
from replicate.backbones.vit import TimmViTAdapter
from replicate.engine import Run, execute
from replicate.engine.features import not_applicable
from tests.helpers import assert_close_to_scale, tiny_experiment

#: float32: the frozen forward may run in other batch shapes, ~1e-7 relative per feature
#: (0 measured), a few times that after 4 epochs of a linear probe; features of the wrong
#: image or augmentation change the losses in their first digits
REL = 1e-5
quiet = lambda msg: None  # noqa: E731


def linear_run(root, cache: bool, **changes) -> Run:
    exp = tiny_experiment("linear", **{"optim.epochs": 4, "train.max_steps_per_epoch": None,
                                       "optim.lr": 0.5, "train.cache_features": cache, **changes})
    return Run(exp, seed=3, stage="smoke", train_split="train", eval_splits=("val", "test"),
               runs_root=str(root))


@pytest.fixture
def block_images(monkeypatch):
    """Counts images through the frozen backbone (block 0 calls)."""
    seen = []
    real = TimmViTAdapter.block

    def counting(self, i, x, *a, **k):
        if i == 0:
            seen.append(x.shape[0])
        return real(self, i, x, *a, **k)

    monkeypatch.setattr(TimmViTAdapter, "block", counting)
    return seen


def test_cached_features_give_the_same_run_with_one_backbone_pass(tmp_path, block_images):
    normal_run = linear_run(tmp_path / "normal", cache=False)
    normal = execute(normal_run, echo=quiet)
    n_normal = sum(block_images)
    block_images.clear()
    cached_run = linear_run(tmp_path / "cached", cache=True)
    cached = execute(cached_run, echo=quiet)
    n_cached = sum(block_images)

    for split in ("val", "test"):
        assert cached["metrics"][f"{split}_top1"] == normal["metrics"][f"{split}_top1"]
        assert cached["metrics"][f"{split}_loss"] == pytest.approx(
            normal["metrics"][f"{split}_loss"], rel=REL)  # see REL
    assert [h["train_loss"] for h in cached["history"]] == pytest.approx(
        [h["train_loss"] for h in normal["history"]], rel=REL)  # see REL
    assert [h["val_top1"] for h in cached["history"]] == [h["val_top1"] for h in normal["history"]]
    wa = torch.load(normal_run.run_dir / "last.ckpt")["model"]
    wb = torch.load(cached_run.run_dir / "last.ckpt")["model"]
    assert set(wa) == set(wb) == {"method.head.weight", "method.head.bias"}
    for k in wa:
        assert_close_to_scale(wa[k], wb[k], rel=REL)  # see REL
    # the head really trained (a run that never stepped would also "match")
    assert normal["history"][0]["train_loss"] != normal["history"][-1]["train_loss"]

    sizes = {s: len(data.load(normal_run.experiment.data, s, train=False))
             for s in ("train", "val", "test")}
    epochs = normal_run.experiment.optim.epochs
    # normal: every epoch trains on all of train and evaluates val, test once at the end
    assert n_normal == epochs * (sizes["train"] + sizes["val"]) + sizes["test"]
    assert n_cached == sum(sizes.values())  # once per image
    assert "cache_features: backbone features" in (cached_run.run_dir / "log.txt").read_text()


def test_cached_features_resume(tmp_path):
    run = linear_run(tmp_path, cache=True)
    assert execute(run, echo=quiet, should_stop=lambda: True) is None
    rec = execute(run, echo=quiet)
    ref = execute(linear_run(tmp_path / "ref", cache=True), echo=quiet)
    assert rec["metrics"] == ref["metrics"]


def test_cache_is_used_only_where_exact(tmp_path):
    from replicate import methods

    adapter = backbones.create("vit_micro_patch8_32.mae_test", "")
    linear = methods.build_model(adapter, "linear", {}, 4)
    gate = methods.build_model(adapter, "gatevpt", {"num_prompts": 2}, 4)
    split = data.load(tiny_experiment("linear").data, "train", train=True)
    assert not_applicable(linear, split) is None
    assert "gatevpt" in not_applicable(gate, split)
    augmented = data.Split(split.dataset, split.num_classes, split.split, split.source_name,
                           images=split.images, labels=split.labels,
                           device_augment=lambda x, g: x.flip(-1))
    assert "augmentation" in not_applicable(linear, augmented)
    streamed = data.Split(split.dataset, split.num_classes, split.split, split.source_name)
    assert "not in memory" in not_applicable(linear, streamed)
    # a prompt method with the switch on trains normally (backbone every epoch)
    run = Run(tiny_experiment("vpt_shallow", **{"optim.epochs": 1}), 0, "smoke", "train",
              ("val",), str(tmp_path))
    execute(run, echo=quiet)
    assert "cache_features" not in (run.run_dir / "log.txt").read_text()
