"""Registry entries of the micro pre-trained backbones (imported by ``backbones.zoo``).

Same architectures as the tiny random-init smoke backbones (``vit_micro_patch8_32``: 32x32
input, 8x8 patches, width 64, 4 blocks, 4 heads; ``beit_micro_patch8_32``: the BEiT v2 MIM model
at that size with a 64-word ``lm_head``), same sources and converters as the real ViT-B/16
files.  ``checkpoint=None`` in a config means the file in the micro cache
(:func:`replicate.micro.checkpoint_path`); build it with ``python -m replicate micro-pretrain``.
"""
from __future__ import annotations

from ..backbones import BackboneEntry, register
from ..backbones.beit import BeitAdapter, beit_micro_patch8_32
from ..backbones.zoo import _vit_micro

_HOW = ("made locally: python -m replicate micro-pretrain (replicate/micro), cached in "
        "$REPLICATE_MICRO_CACHE")

register(BackboneEntry(
    name="vit_micro_patch8_32.mae_digits", build=_vit_micro, source="mae",
    default_file="mae_micro_digits-<recipe>.pth", url=_HOW, default_pool="mean_norm",
    paper_key="mae_micro", extra={"micro": "mae"},
    note="SMOKE: micro ViT pre-trained MAE-style (masked pixel reconstruction) on the digits "
         "train images, no labels; MAE's {'model': ...} layout"))
register(BackboneEntry(
    name="vit_micro_patch8_32.mocov3_digits", build=_vit_micro, source="mocov3",
    default_file="mocov3_micro_digits-<recipe>.pth.tar", url=_HOW, default_pool="cls",
    paper_key="mocov3_micro", extra={"micro": "mocov3"},
    note="SMOKE: micro ViT pre-trained MoCo v3-style (momentum contrastive) on the digits train "
         "images, no labels; MoCo v3's module.base_encoder/momentum_encoder layout"))
register(BackboneEntry(
    name="beit_micro_patch8_32.beitv2_digits", build=beit_micro_patch8_32, source="beitv2",
    default_file="beitv2_micro_digits-<recipe>.pth", url=_HOW, default_pool="cls",
    paper_key="beitv2_micro", adapter=BeitAdapter, extra={"micro": "beitv2"},
    note="SMOKE: micro BEiT v2-style MIM model (64 visual tokens: k-means over the MoCo v3 "
         "micro encoder's patch + CLS features) pre-trained on the digits train images, no labels; "
         "BEiT v2's pre-training layout with lm_head"))
