"""A uniform view of a timm ViT for the prompt methods (wrap, don't fork).

The adapter runs timm's own patch embedding, blocks and norms; methods insert extra tokens
between CLS and the patch tokens and act between blocks.  The only thing re-expressed here is
the block's attention, because GateVPT's learnable temperature divides the attention logits
(official ``src/models/vit_backbones/vit_mae.py``: ``softmax(q k^T * scale / temp)``) and timm's
``Attention.forward`` takes no temperature.  Every weight used is the timm module's own.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class ViTAdapter(nn.Module):
    """Frozen-backbone interface used by :class:`replicate.methods.PromptedModel`.

    Token layout everywhere: ``[CLS, extra_1..extra_n, patch_1..patch_N]``; the extra tokens
    (prompts, [MASK]) get no position embedding (VPT ``incorporate_prompt``).
    """

    embed_dim: int
    num_blocks: int
    num_patches: int
    #: attention kernel: "sdpa" (fused) or "eager" (explicit softmax; the reference)
    attention: str = "sdpa"

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1+N, D)
        raise NotImplementedError

    def block(self, i: int, x: torch.Tensor, temp: Optional[torch.Tensor] = None,
              n_extra: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def attention_core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   temp: Optional[torch.Tensor], impl: str,
                   bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q k^T * scale / temp + bias) v, fused (SDPA) or eager.

    Dividing q by temp equals dividing the logits by temp and keeps the gradient to temp.
    """
    if temp is not None:
        # a per-sample temp (B,1,1,1) from a packed sweep would promote bf16 q to fp32; the
        # cast keeps q's dtype and rounds as a 0-dim temp does (no-op otherwise)
        q = (q / temp).to(q.dtype)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    return attn.softmax(dim=-1) @ v


class TimmViTAdapter(ViTAdapter):
    """Adapter over ``timm.models.vision_transformer.VisionTransformer``."""

    def __init__(self, vit: nn.Module, attention: str = "sdpa"):
        super().__init__()
        self.vit = vit
        self.attention = attention
        self.embed_dim = vit.embed_dim
        self.num_blocks = len(vit.blocks)
        self.num_patches = vit.patch_embed.num_patches
        self.patch_size = vit.patch_embed.patch_size
        self.grid_size = vit.patch_embed.grid_size
        if getattr(vit, "reg_token", None) is not None:
            raise ValueError("register tokens are not supported by the prompt layout")
        for blk in vit.blocks:
            if getattr(blk.attn, "gate", None) is not None:
                raise ValueError("gated-attention timm blocks are not supported")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        v = self.vit
        x = v.patch_embed(images)
        x = v._pos_embed(x)  # CLS + position embedding, timm's own
        x = v.patch_drop(x)
        return v.norm_pre(x)

    def block(self, i: int, x: torch.Tensor, temp: Optional[torch.Tensor] = None,
              n_extra: int = 0) -> torch.Tensor:
        blk = self.vit.blocks[i]
        a = blk.attn
        h = blk.norm1(x)
        B, N, _ = h.shape
        qkv = a.qkv(h).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        o = attention_core(q, k, v, a.scale, temp, self.attention)
        o = a.norm(o.transpose(1, 2).reshape(B, N, -1))
        o = a.proj_drop(a.proj(o))
        x = x + blk.drop_path1(blk.ls1(o))
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.norm(x)


# --------------------------------------------------------------------------- builders
# named by the registry entries in ``zoo.py`` (as ``Lazy`` references, so the registry stays
# torch-free)
def vit_b16() -> nn.Module:
    """timm's ViT-B/16: qkv bias, LayerNorm eps 1e-6, class token; the same architecture as the
    MAE, MoCo v3 and original Google ViT-B/16 encoders.  No head, no fc_norm."""
    import timm

    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)


def vit_micro() -> nn.Module:
    """Tiny ViT for tests and the demo: 32x32 input, 8x8 patches (16 tokens), 4 blocks, width
    64."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4,
                             num_classes=0)
