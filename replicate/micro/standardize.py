"""Standardise the features a probe reads by re-parameterising the final LayerNorm.

Why: after a short pre-training the pooled features of these micro models vary little from
image to image around a large shared offset (e.g. per-dimension std 0.05 around values of
magnitude 0.8), and plain SGD on such features -- the VPT protocol's linear probe and prompt
tuning -- either diverges along the offset or barely moves along the signal.  MAE's own linear
probe puts a BatchNorm without affine before the head for the same reason (MAE paper,
appendix A.2).  Here that normalisation is folded into the checkpoint instead:

    final norm      w, b   ->  w / s,  (b - m) / s      (m, s: mean and std of the pooled
    next layer      W, c   ->  W diag(s),  c + W m       feature over the pre-training images)

so the pooled feature becomes (f - m) / s, while every pre-training output is unchanged: the
layer that reads the final norm in pre-training (MAE's ``decoder_embed``, MoCo v3's projection
MLP ``head.0`` + its BatchNorm's running mean, BEiT v2's shared ``lm_head``) absorbs the inverse.
``tests/test_learning.py`` checks the invariance.  Statistics come from the unlabeled
pre-training images only.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from .common import normalize, pretraining_images

#: floor on s relative to its median (a dead feature dimension must not be blown up)
STD_FLOOR = 0.05


@torch.no_grad()
def pooled_stats(entry_name: str, state: Dict[str, torch.Tensor]
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the entry's default-pool feature over the pre-training images, with
    ``state`` (converted, model names) loaded through the entry's own converter path."""
    from .. import backbones, methods
    from ..backbones.converters import check_and_load

    entry = backbones.get(entry_name)
    model = entry.build()
    check_and_load(model, state, "<in-memory micro checkpoint>", entry.source)
    adapter = entry.adapter(model)
    probe = methods.build_model(adapter, "linear", {}, 10, entry.default_pool)
    probe.train(False)
    x = normalize(pretraining_images())
    f = torch.cat([probe.method.features(adapter, probe.forward_tokens(b)) for b in x.split(200)])
    m, s = f.mean(0), f.std(0)
    return m, s.clamp_min(STD_FLOOR * s.median())


@torch.no_grad()
def fold(sd: Dict[str, torch.Tensor], norm: str, nxt_weight: str, m: torch.Tensor,
         s: torch.Tensor, nxt_bias: str = "", running_mean: str = "") -> None:
    """In place: ``norm`` (prefix of a LayerNorm) standardises by (m, s); the Linear whose
    weight is ``nxt_weight`` takes s and m back (into its bias, or into the running mean of the
    BatchNorm right after a bias-free Linear)."""
    w, b = sd[norm + "weight"], sd[norm + "bias"]
    sd[norm + "weight"] = w / s
    sd[norm + "bias"] = (b - m) / s
    W = sd[nxt_weight]
    shift = W @ m
    sd[nxt_weight] = W * s[None]
    if nxt_bias:
        sd[nxt_bias] = sd[nxt_bias] + shift
    if running_mean:
        sd[running_mean] = sd[running_mean] - shift
