"""The registered backbones.  Add one entry per (architecture, weights) pair."""
from __future__ import annotations

import timm
from timm.models.vision_transformer import VisionTransformer

from . import BackboneEntry, register


def _vit_b16() -> VisionTransformer:
    # timm's ViT-B/16: qkv bias, LayerNorm eps 1e-6, class token; the same architecture as the
    # MAE, MoCo v3 and original Google ViT-B/16 encoders.  No head, no fc_norm.
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)


def _vit_micro() -> VisionTransformer:
    # tiny ViT for tests and the demo: 32x32 input, 8x8 patches (16 tokens), 4 blocks, width 64
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4,
                             num_classes=0)


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

from . import beit  # noqa: E402,F401  (BEiT v2 MIM backbones and the beitv2 converter)
from ..micro import entries as _micro  # noqa: E402,F401  (micro pre-trained backbones, SMOKE)
