"""MoCo v3-style micro pre-training: contrastive learning with a momentum encoder (Chen, Xie and
He, ICCV 2021).

Follows facebookresearch/moco-v3 ``moco/builder.py`` (``MoCo_ViT``) and ``vits.py`` in
miniature: the base encoder is a ViT whose ``head`` is the 3-layer projection MLP (Linear
without bias, BatchNorm, ReLU; last BatchNorm without affine), the momentum encoder is its copy
updated as an exponential moving average with a cosine momentum schedule m -> 1, a 2-layer
``predictor`` follows the base encoder only, and the loss is the symmetrised InfoNCE
``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr = 2T * CE(q k^T / T)`` over the batch.  As MoCo v3's
ViTs: fixed 2-D sin-cos position embeddings and a frozen random patch projection
(``stop_grad_conv1``).  AdamW, warmup + cosine per step.

The checkpoint is MoCo v3's own layout, ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` with
DistributedDataParallel's ``module.`` prefix: ``module.base_encoder.*`` (the registry's
``mocov3`` converter keeps these, minus ``head.*``), ``module.momentum_encoder.*`` and
``module.predictor.*`` (dropped).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from .common import augment, normalize, pretraining_images, train_epochs
from .sincos import sincos_pos_embed

RECIPE: Dict[str, object] = dict(
    epochs=25, batch_size=32, lr=1e-3, weight_decay=0.1, warmup_epochs=2, temperature=0.2,
    momentum=0.99, mlp_dim=256, out_dim=64, stop_grad_conv1=True,
    augment=dict(scale=(0.7, 1.2), shift=0.2, rotate=0.35, jitter=0.4), noise=0.2)


def build_mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int,
              last_bn: bool = True) -> nn.Sequential:
    """MoCo v3's ``_build_mlp``: Linear(no bias) [+ BN + ReLU between], BN(affine=False) last."""
    layers = []
    for i in range(num_layers):
        d_in = input_dim if i == 0 else mlp_dim
        d_out = output_dim if i == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)


class MicroMoCo(nn.Module):
    """``base_encoder`` / ``momentum_encoder`` / ``predictor`` under MoCo v3's names."""

    def __init__(self, build: Callable[[], VisionTransformer], mlp_dim: int, out_dim: int,
                 temperature: float, stop_grad_conv1: bool):
        super().__init__()
        self.T = temperature
        self.base_encoder = build()
        D = self.base_encoder.embed_dim
        grid = self.base_encoder.patch_embed.grid_size[0]
        with torch.no_grad():
            self.base_encoder.pos_embed.copy_(sincos_pos_embed(D, grid))
        self.base_encoder.pos_embed.requires_grad_(False)
        if stop_grad_conv1:
            self.base_encoder.patch_embed.requires_grad_(False)
        self.base_encoder.head = build_mlp(3, D, mlp_dim, out_dim)
        self.momentum_encoder = copy.deepcopy(self.base_encoder)
        self.momentum_encoder.requires_grad_(False)
        self.predictor = build_mlp(2, out_dim, mlp_dim, out_dim)

    @torch.no_grad()
    def update_momentum_encoder(self, m: float) -> None:
        for pb, pm in zip(self.base_encoder.parameters(), self.momentum_encoder.parameters()):
            pm.mul_(m).add_(pb.detach(), alpha=1 - m)

    def contrastive_loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.T / self.T
        return F.cross_entropy(logits, torch.arange(len(q))) * (2 * self.T)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, m: float) -> torch.Tensor:
        q1 = self.predictor(self.base_encoder(x1))
        q2 = self.predictor(self.base_encoder(x2))
        with torch.no_grad():
            self.update_momentum_encoder(m)
            k1, k2 = self.momentum_encoder(x1), self.momentum_encoder(x2)
        return self.contrastive_loss(q1, k2) + self.contrastive_loss(q2, k1)


def _view(x: torch.Tensor, g: torch.Generator, r: dict) -> torch.Tensor:
    out = augment(x, g, **r["augment"])
    return out + r["noise"] * torch.randn(out.shape, generator=g)


def standardize_features(state: Dict[str, torch.Tensor]) -> None:
    """Fold the CLS-feature standardisation into the base encoder's ``norm`` and its projection
    MLP (``head.0`` weight, ``head.1`` running mean); in place, outputs unchanged (see
    :mod:`.standardize`).  The momentum encoder is left as trained."""
    from ..backbones.converters import convert_mocov3
    from .standardize import fold, pooled_stats

    sd = convert_mocov3({"state_dict": state}, "")[0]
    m, s = pooled_stats("vit_micro_patch8_32.mocov3_digits", sd)
    pre = "module.base_encoder."
    fold(state, pre + "norm.", pre + "head.0.weight", m, s,
         running_mean=pre + "head.1.running_mean")


def pretrain(seed: int, log: Callable[[str], None] = print,
             deps: Optional[Dict[str, Path]] = None) -> dict:
    """Pre-train fresh ``build()`` encoders; return the checkpoint object to save."""
    from ..backbones import get

    build = get("vit_micro_patch8_32.mocov3_digits").build
    r = RECIPE
    torch.manual_seed(seed)
    model = MicroMoCo(build, r["mlp_dim"], r["out_dim"], r["temperature"], r["stop_grad_conv1"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])
    images = normalize(pretraining_images())
    g = torch.Generator().manual_seed(seed)

    def loss_fn(idx: torch.Tensor, step: int, total: int) -> Tuple[torch.Tensor, float]:
        # MoCo v3's adjust_moco_momentum: 1 - 0.5 * (1 + cos(pi * t)) * (1 - m)
        m = 1 - 0.5 * (1 + math.cos(math.pi * step / total)) * (1 - r["momentum"])
        x = images[idx]
        return model(_view(x, g, r), _view(x, g, r), m), 0.0

    model.train()
    train_epochs(opt, len(images), r, g, loss_fn, log,
                 lambda e, loss, _: f"mocov3 epoch {e + 1}/{r['epochs']} contrastive loss "
                                    f"{loss:.4f}")
    state = {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    standardize_features(state)
    return {"epoch": r["epochs"], "arch": "vit_micro_patch8_32", "state_dict": state,
            "optimizer": opt.state_dict(),
            "args": {"recipe": dict(r), "seed": seed, "data": "digits train 800 (no labels)"}}
