"""The registered backbones.  Add one entry per (architecture, weights) pair.

Torch-free: each entry names its builder and adapter by a :class:`~replicate.registry.Lazy`
reference, so config validation and planning read names, pools and files without importing
torch or timm.  A backbone defined outside the package registers itself the same way from its
own module (``replicate.backbones.register``), imported through a config's ``custom_imports``.
"""
from __future__ import annotations

from ..registry import Lazy
from .entry import BackboneEntry, register


# builders and adapters by reference (``Lazy``): listing the backbones imports no torch; building
# one imports its module
_vit_b16 = Lazy("replicate.backbones.vit:vit_b16")
_vit_micro = Lazy("replicate.backbones.vit:vit_micro")
_beitv2_base = Lazy("replicate.backbones.beit:beitv2_base_patch16_224")
_beit_micro = Lazy("replicate.backbones.beit:beit_micro_patch8_32")
_beit_micro_1k = Lazy("replicate.backbones.beit:beit_micro_patch8_32_vocab1k")
_BEIT_ADAPTER = Lazy("replicate.backbones.beit:BeitAdapter")
#: micro backbones: their checkpoint is the file in the micro cache (``replicate.micro``)
_MICRO_CHECKPOINT = Lazy("replicate.micro:cached_checkpoint")

MAE_URL = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth"
MOCO_URL = "https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar"
MOCO_LIN_URL = "https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/linear-vit-b-300ep.pth.tar"
SUP_URL = "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"

register(BackboneEntry(
    name="vit_base_patch16_224.mae", build=_vit_b16, source="mae",
    default_file="mae_pretrain_vit_base.pth", url=MAE_URL, default_pool="mean_norm", paper_key="mae_vitb16",
    note="MAE ViT-B/16 IN-1k pre-training, encoder only (key 'model'); GateVPT/VPT use it"))
register(BackboneEntry(
    name="vit_base_patch16_224.mocov3", build=_vit_b16, source="mocov3",
    default_file="vit-b-300ep.pth.tar", url=MOCO_URL, default_pool="cls", paper_key="mocov3_vitb16",
    note="MoCo v3 ViT-B/16 300 ep pre-training checkpoint (module.base_encoder.*; momentum "
         "encoder and projection heads dropped), the layout GateVPT's loader expects"))
register(BackboneEntry(
    name="vit_base_patch16_224.mocov3_linear", build=_vit_b16, source="mocov3_linear",
    default_file="linear-vit-b-300ep.pth.tar", url=MOCO_LIN_URL, default_pool="cls", paper_key="mocov3_vitb16",
    note="MoCo v3 ViT-B/16 linear-probe checkpoint (module.*; the file VPT links, its "
         "ImageNet head dropped); same encoder weights as the pre-training file"))
register(BackboneEntry(
    name="vit_base_patch16_224.orig_in21k", build=_vit_b16, source="sup_npz",
    default_file="imagenet21k_ViT-B_16.npz", url=SUP_URL, default_pool="cls", paper_key="sup_vitb16_in21k",
    # the URL downloads as ViT-B_16.npz; VPT's MODEL_ROOT expects imagenet21k_ViT-B_16.npz
    other_files=("ViT-B_16.npz",),
    note="original Google ViT-B/16 ImageNet-21k weights (VPT's sup_vitb16_imagenet21k), "
         "not timm's augreg default; pre_logits and the 21k head are dropped.  The URL "
         "downloads as ViT-B_16.npz: found under that name too, or rename it (mv ViT-B_16.npz "
         "imagenet21k_ViT-B_16.npz); the ImageNet-1k fine-tuned file of that name is refused"))

# tiny variants, one per checkpoint layout, so every converter is exercised in tests
for _tag, _src, _pool in (("mae_test", "mae", "mean_norm"), ("mocov3_test", "mocov3", "cls"),
                          ("mocov3_linear_test", "mocov3_linear", "cls"),
                          ("in21k_test", "sup_npz", "cls"), ("timm_test", "timm", "cls")):
    register(BackboneEntry(
        name=f"vit_micro_patch8_32.{_tag}", build=_vit_micro, source=_src,
        default_file="", url="(test backbone: no download; random init or a fake checkpoint)",
        default_pool=_pool, paper_key=f"micro_{_tag}", tiny=True, note=f"tiny ViT with the {_src} checkpoint layout"))

# BEiT v2 MIM backbones (models and the beitv2 converter: beit.py)
BEITV2_PT1K_URL = ("https://github.com/addf400/files/releases/download/BEiT-v2/"
                   "beitv2_base_patch16_224_pt1k.pth")
register(BackboneEntry(
    name="beitv2_base_patch16_224.pt1k", build=_beitv2_base, source="beitv2",
    default_file="beitv2_base_patch16_224_pt1k.pth", url=BEITV2_PT1K_URL, default_pool="cls",
    paper_key="beitv2_vitb16", adapter=_BEIT_ADAPTER,
    note="BEiT v2 ViT-B/16 ImageNet-1k MIM pre-training, 1600 epochs, VQ-KD CLIP tokenizer, "
         "with mask_token and the 8192-way lm_head (VPTM needs them); the CLS-pretraining "
         "branch is dropped; ImageNet mean/std as --imagenet_default_mean_and_std"))
register(BackboneEntry(
    name="beit_micro_patch8_32.beitv2_test", build=_beit_micro, source="beitv2",
    default_file="", url="(test backbone: no download; random init or a fake checkpoint)",
    default_pool="cls", paper_key="micro_beitv2_test", adapter=_BEIT_ADAPTER, tiny=True,
    note="tiny BEiT v2 MIM model (vocab 64) with the official pre-training checkpoint layout"))


# micro pre-trained backbones (SMOKE): same architectures as the tiny random-init smoke
# backbones, same sources and converters as the real files; ``checkpoint=None`` in a config means
# the file in the micro cache (``replicate.micro.checkpoint_path``); build it with
# ``python -m replicate micro-pretrain``
_HOW = ("made locally: python -m replicate micro-pretrain (replicate/micro), cached in "
        "$REPLICATE_MICRO_CACHE")

register(BackboneEntry(
    name="vit_micro_patch8_32.mae_digits", build=_vit_micro, source="mae",
    default_file="mae_micro_digits-<recipe>.pth", url=_HOW, default_pool="mean_norm",
    paper_key="mae_micro", extra={"micro": "mae"}, default_checkpoint=_MICRO_CHECKPOINT,
    note="SMOKE: micro ViT pre-trained MAE-style (masked pixel reconstruction) on the digits "
         "train images, no labels; MAE's {'model': ...} layout"))
register(BackboneEntry(
    name="vit_micro_patch8_32.mocov3_digits", build=_vit_micro, source="mocov3",
    default_file="mocov3_micro_digits-<recipe>.pth.tar", url=_HOW, default_pool="cls",
    paper_key="mocov3_micro", extra={"micro": "mocov3"}, default_checkpoint=_MICRO_CHECKPOINT,
    note="SMOKE: micro ViT pre-trained MoCo v3-style (momentum contrastive) on the digits train "
         "images, no labels; MoCo v3's module.base_encoder/momentum_encoder layout"))
register(BackboneEntry(
    name="beit_micro_patch8_32.beitv2_digits", build=_beit_micro_1k, source="beitv2",
    default_file="beitv2_micro_digits-<recipe>.pth", url=_HOW, default_pool="cls",
    paper_key="beitv2_micro", adapter=_BEIT_ADAPTER, extra={"micro": "beitv2"},
    default_checkpoint=_MICRO_CHECKPOINT,
    note="SMOKE: micro BEiT v2-style MIM model (1,024 visual tokens: k-means over the MoCo v3 "
         "micro encoder's patch + CLS features) pre-trained on the digits train images, no labels; "
         "BEiT v2's pre-training layout with lm_head"))
