"""Cached features for the linear probe (``train.cache_features``).

With ``method='linear'`` nothing before the head trains and the frozen backbone stays in eval
mode, so the head's input for an image is a fixed vector.  When the training split is held in
memory without augmentation (VTAB-1k: the protocol only resizes), the pooled features of every
image are computed once and the head trains on them: the same batches in the same order (the
feature split goes through the engine's own :class:`~replicate.engine.train.Batches`), the same
optimizer, schedule, checkpoints and record.  Only the backbone forward of every epoch is
saved.  FGVC's training transform is random (crop, flip), so it keeps the normal path.

Numerics: features are computed under the run's autocast exactly as in the normal forward;
only the batch composition of the backbone forward differs (eval batches instead of training
batches), which changes float rounding, not the math (tests/test_features.py: 1e-5 on logits,
identical top-1).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from .. import data, methods


class _Length:
    """Stands in for a dataset where only ``len()`` is needed (an in-memory feature split)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def not_applicable(model: methods.PromptedModel, train_split: data.Split) -> Optional[str]:
    """Why cached features would change the run (None when they are exact)."""
    m = model.method
    if not m.frozen_up_to_head or m.trains_backbone:
        return f"method '{m.name}' has trainable parts before the head"
    if not train_split.in_memory:
        return "the training split is streamed through random transforms (not in memory)"
    if train_split.device_augment is not None:
        return "the training split has on-device augmentation"
    return None


@torch.no_grad()
def extract(model: methods.PromptedModel, batches, norm: Callable,
            amp_dtype: Optional[torch.dtype]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (head input) and labels of every image of ``batches``' split, in split
    order, on the batches' device."""
    # the loader class of ``batches`` (engine.train.Batches), not an import of it: train
    # imports this module, and the engine's import graph has no cycles
    eval_b = type(batches)(batches.split, batches.bs, batches.device, False, batches.num_workers)
    model.train(False)
    feats, labels = [], []
    for x, y in eval_b.epoch(0, 0):
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            f = model.method.features(model.adapter, model.forward_tokens(norm(x)))
        feats.append(f)
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def feature_batches(model: methods.PromptedModel, batches, norm: Callable,
                    amp_dtype: Optional[torch.dtype]):
    """``batches`` with every image replaced by its features (same split, order, batch size)."""
    feats, labels = extract(model, batches, norm, amp_dtype)
    s = batches.split
    split = data.Split(_Length(len(labels)), s.num_classes, s.split, s.source_name + ":features",
                       images=feats, labels=labels)
    return type(batches)(split, batches.bs, batches.device, batches.train, 0)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def maybe_cache(model: methods.PromptedModel, train_b, eval_b: Dict[str, object], norm: Callable,
                amp_dtype: Optional[torch.dtype], log: Callable[[str], None]):
    """``(fwd, norm, train_batches, eval_batches)`` training the head on cached features, or
    None (and the reason logged) when that would not be exact."""
    why = not_applicable(model, train_b.split)
    if why is not None:
        if model.method.frozen_up_to_head:
            log(f"cache_features: not used ({why})")
        return None
    n = len(train_b.split) + sum(len(b.split) for b in eval_b.values())
    train_f = feature_batches(model, train_b, norm, amp_dtype)
    eval_f = {s: feature_batches(model, b, norm, amp_dtype) for s, b in eval_b.items()}
    log(f"cache_features: backbone features of {n} images computed once; the head trains on them")
    return model.method.head, _identity, train_f, eval_f
