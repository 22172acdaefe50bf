"""MAE-style micro pre-training: masked-patch pixel reconstruction (He et al., CVPR 2022).

Follows facebookresearch/mae ``models_mae.py`` in miniature: fixed 2-D sin-cos position
embeddings, random masking of ``mask_ratio`` of the patches, the encoder sees only the visible
ones (+ CLS), a light decoder (``decoder_embed``, ``mask_token``, ``decoder_pos_embed``,
``decoder_blocks``, ``decoder_norm``, ``decoder_pred``) reconstructs the per-patch normalised
pixels (``norm_pix_loss``) and the loss is the MSE on the masked patches only.  AdamW with
betas (0.9, 0.95), warmup + cosine per step.

The checkpoint is MAE's own layout: ``{'model': state_dict}`` with the encoder under timm names
and the decoder keys beside it (as MAE's pre-training ``checkpoint-*.pth``); the registry's
``mae`` converter keeps the encoder and drops ``decoder*`` / ``mask_token``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block, VisionTransformer

from .common import augment, normalize, pretraining_images, train_epochs
from .sincos import sincos_pos_embed

RECIPE: Dict[str, object] = dict(
    epochs=80, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=3, mask_ratio=0.5,
    decoder_dim=64, decoder_depth=1, decoder_heads=4, norm_pix_loss=True,
    augment=dict(scale=(0.85, 1.1), shift=0.12, rotate=0.2))


class MicroMAE(nn.Module):
    """A timm ViT encoder + MAE's decoder; ``state_dict()`` has MAE's key names."""

    def __init__(self, encoder: VisionTransformer, decoder_dim: int, decoder_depth: int,
                 decoder_heads: int, mask_ratio: float, norm_pix_loss: bool):
        super().__init__()
        self.encoder = encoder
        D, n = encoder.embed_dim, encoder.patch_embed.num_patches
        grid = encoder.patch_embed.grid_size[0]
        self.patch = encoder.patch_embed.patch_size[0]
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        with torch.no_grad():  # MAE: fixed sin-cos embeddings (requires_grad=False)
            encoder.pos_embed.copy_(sincos_pos_embed(D, grid))
        encoder.pos_embed.requires_grad_(False)
        self.decoder_embed = nn.Linear(D, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_dim, grid),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch ** 2 * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        self.num_patches = n

    def mae_state_dict(self) -> Dict[str, torch.Tensor]:
        """Encoder keys (timm names) + decoder keys, as MAE's ``model`` dict."""
        sd = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}
        for k, v in self.state_dict().items():
            if not k.startswith("encoder."):
                sd[k] = v.detach().clone()
        return sd

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p, h, w = self.patch, H // self.patch, W // self.patch
        return x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(B, h * w, p * p * C)

    def forward(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        e, B, N = self.encoder, x.shape[0], self.num_patches
        t = e.patch_embed(x) + e.pos_embed[:, 1:]
        keep = int(N * (1 - self.mask_ratio))
        ids = torch.rand(B, N, generator=g).argsort(dim=1)  # MAE's random_masking
        restore = ids.argsort(dim=1)
        vis = torch.gather(t, 1, ids[:, :keep, None].expand(-1, -1, t.shape[-1]))
        h = torch.cat([(e.cls_token + e.pos_embed[:, :1]).expand(B, -1, -1), vis], dim=1)
        for blk in e.blocks:
            h = blk(h)
        h = self.decoder_embed(e.norm(h))
        full = torch.cat([h[:, 1:], self.mask_token.expand(B, N - keep, -1)], dim=1)
        full = torch.gather(full, 1, restore[:, :, None].expand(-1, -1, h.shape[-1]))
        full = torch.cat([h[:, :1], full], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            full = blk(full)
        pred = self.decoder_pred(self.decoder_norm(full))[:, 1:]
        target = self.patchify(x)
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (
                target.var(-1, keepdim=True) + 1e-6).sqrt()
        mask = torch.ones(B, N)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def standardize_features(sd: Dict[str, torch.Tensor]) -> None:
    """Fold the pooled-feature standardisation into ``norm`` and ``decoder_embed`` (in place;
    the MAE's reconstructions are unchanged, see :mod:`.standardize`)."""
    from ..backbones.converters import convert_mae
    from .standardize import fold, pooled_stats

    m, s = pooled_stats("vit_micro_patch8_32.mae_digits", convert_mae({"model": sd}, "")[0])
    fold(sd, "norm.", "decoder_embed.weight", m, s, nxt_bias="decoder_embed.bias")


def pretrain(seed: int, log: Callable[[str], None] = print,
             deps: Optional[Dict[str, Path]] = None) -> dict:
    """Pre-train a fresh ``build()`` encoder; return the checkpoint object to save."""
    from ..backbones import get

    build = get("vit_micro_patch8_32.mae_digits").build
    r = RECIPE
    torch.manual_seed(seed)
    model = MicroMAE(build(), r["decoder_dim"], r["decoder_depth"], r["decoder_heads"],
                     r["mask_ratio"], r["norm_pix_loss"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r["lr"], betas=(0.9, 0.95), weight_decay=r["weight_decay"])
    images = normalize(pretraining_images())
    g = torch.Generator().manual_seed(seed)
    model.train()
    train_epochs(opt, len(images), r, g,
                 lambda idx, step, total: (model(augment(images[idx], g, **r["augment"]), g), 0.0),
                 log, lambda e, loss, _: f"mae epoch {e + 1}/{r['epochs']} reconstruction loss "
                                         f"{loss:.4f}")
    sd = model.mae_state_dict()
    standardize_features(sd)
    return {"model": sd, "epoch": r["epochs"] - 1,
            "args": {"recipe": dict(r), "seed": seed, "data": "digits train 800 (no labels)"}}
