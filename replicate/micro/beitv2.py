"""BEiT v2-style micro pre-training: masked image modeling that predicts visual tokens with an
``lm_head`` (Peng et al., arXiv 2208.06366), so VPTM has a real MIM head to read.

What follows microsoft/unilm ``beit2/modeling_pretrain.py`` (in miniature):
``VisionTransformerForMaskedImageModelingCLS``: no absolute position embedding, one *shared*
relative-position bias (``rel_pos_bias.*``), layer scale, q/v biases, ``mask_token`` replacing the
masked patch embeddings, final ``norm`` and ``lm_head`` over the vocabulary, cross-entropy on
the masked positions only; plus the CLS-pretraining branch ``cls_pt_layers`` (the last-layer
CLS token joined with an early layer's patch tokens, through ``head_layers`` extra blocks, the
shared ``norm`` and ``lm_head``; ``shared_lm_head=True``), whose loss is added.

What stands in for BEiT v2's tokenizer: VQ-KD learns a codebook by distilling a teacher's
(CLIP's) patch features.  Here the teacher is the MoCo v3 micro encoder (loaded through its
registry entry and converter) and the codebook is a cosine k-means over its l2-normalised
final features of the pre-training images, each patch's feature joined with its image's CLS
feature (``token_cls``, so the targets say more about the image; measured with a standardised
linear probe on the [MASK] token's ``lm_head`` logits, which VPTM reads, on digits val: 44%
with patch features alone vs 46% joined after 25 epochs, 58% joined after 40).  A patch's
visual token is its nearest code, computed on the same augmented view the student sees.

Chosen on digits val (train 800 -> val 200, one seed; the demo's cells): 100 epochs at lr 3e-3
(40 epochs at 1.5e-3: linear probe 70.5%, VPT-deep 70.5%, VPTM 61.0%; 100 at 3e-3: 84.0 / 84.0
/ 71.0%) and a 1,024-word vocabulary (the real BEiT v2 has 8,192): VPTM reads the [MASK] token
through ``lm_head``, and its val top-1 (30 epochs) grows with the vocabulary, 74.0% (64 words),
78.0% (512), 83.0% (1,024), then falls, 77.0% (2,048), while the linear probe stays at 77-85%.

The checkpoint is BEiT v2's pre-training layout, ``{'model': state_dict}`` with the shared
``rel_pos_bias.relative_position_bias_table`` and ``rel_pos_bias.relative_position_index``,
``mask_token``, ``lm_head.*`` and ``cls_pt_layers.*``; the registry's ``beitv2`` converter
expands the shared table into every block and drops the CLS branch, as BEiT's fine-tuning
loader does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.beit import Beit, Block

from .common import augment, normalize, pretraining_images, train_epochs

TEACHER = "vit_micro_patch8_32.mocov3_digits"
RECIPE: Dict[str, object] = dict(
    epochs=100, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=2, num_masked=6,
    vocab_size=1024, kmeans_iters=25, layer_scale_init=0.1, early_layers=2, head_layers=1,
    token_cls=True, teacher=TEACHER, augment=dict(scale=(0.85, 1.1), shift=0.12, rotate=0.2))


class MicroBEiTv2(Beit):
    """timm ``Beit`` with a shared relative-position bias + BEiT v2's pre-training parts, under
    the official key names."""

    def __init__(self, vocab_size: int, early_layers: int, head_layers: int, **kwargs):
        super().__init__(num_classes=0, global_pool="token", use_abs_pos_emb=False,
                         use_rel_pos_bias=False, use_shared_rel_pos_bias=True, **kwargs)
        D, heads = self.embed_dim, self.blocks[0].attn.num_heads
        self.early_layers = early_layers
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.lm_head = nn.Linear(D, vocab_size)
        self.cls_pt_layers = nn.ModuleList(
            Block(dim=D, num_heads=heads, qkv_bias=True, mlp_ratio=4.0,
                  init_values=kwargs.get("init_values"), window_size=None)
            for _ in range(head_layers))
        trunc_normal_(self.mask_token, std=0.02)
        trunc_normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)

    def forward_mim(self, x: torch.Tensor, masked: torch.Tensor
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """lm_head logits at the masked patches from the main branch and the CLS branch."""
        t = self.patch_embed(x)
        w = masked.unsqueeze(-1).to(t.dtype)
        t = t * (1 - w) + self.mask_token * w
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        bias = self.rel_pos_bias()
        early = t
        for i, blk in enumerate(self.blocks):
            t = blk(t, shared_rel_pos_bias=bias)
            if i + 1 == self.early_layers:
                early = t[:, 1:]
        c = torch.cat([t[:, :1], early], dim=1)
        for blk in self.cls_pt_layers:
            c = blk(c, shared_rel_pos_bias=bias)
        main = self.lm_head(self.norm(t)[:, 1:][masked])
        cls = self.lm_head(self.norm(c)[:, 1:][masked])
        return main, cls

    def beitv2_state_dict(self) -> Dict[str, torch.Tensor]:
        sd = {k: v.detach().clone() for k, v in self.state_dict().items()}
        # timm keeps the index as a non-persistent buffer; BEiT's files hold it
        sd["rel_pos_bias.relative_position_index"] = \
            self.rel_pos_bias.relative_position_index.clone()
        return sd


def teacher_features(adapter, x: torch.Tensor, with_cls: bool = False) -> torch.Tensor:
    """l2-normalised final-norm patch features (B, N, D) of the frozen teacher; with
    ``with_cls`` each patch's feature is joined with the image's CLS feature (B, N, 2D), so a
    visual token names both the patch's content and the image it belongs to."""
    t = adapter.embed(x)
    for i in range(adapter.num_blocks):
        t = adapter.block(i, t)
    h = F.normalize(adapter.final_norm(t), dim=-1)
    if not with_cls:
        return h[:, 1:]
    cls = h[:, :1].expand(-1, h.shape[1] - 1, -1)
    return F.normalize(torch.cat([h[:, 1:], cls], dim=-1), dim=-1)


def cosine_kmeans(z: torch.Tensor, k: int, iters: int, g: torch.Generator) -> torch.Tensor:
    """(k, D) unit-norm codebook of unit vectors ``z`` (M, D); empty clusters are re-seeded
    from random points so every code is used."""
    codes = z[torch.randperm(len(z), generator=g)[:k]].clone()
    for _ in range(iters):
        assign = (z @ codes.T).argmax(dim=1)
        sums = torch.zeros_like(codes).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=k)
        empty = counts == 0
        if bool(empty.any()):
            sums[empty] = z[torch.randint(len(z), (int(empty.sum()),), generator=g)]
        codes = F.normalize(sums, dim=-1)
    return codes


def standardize_features(sd: Dict[str, torch.Tensor]) -> None:
    """Fold the CLS-feature standardisation into ``norm`` and the shared ``lm_head`` (in place;
    both MIM branches' logits are unchanged, see :mod:`.standardize`)."""
    from ..backbones.beit import convert_beitv2
    from .standardize import fold, pooled_stats

    m, s = pooled_stats("beit_micro_patch8_32.beitv2_digits", convert_beitv2({"model": sd}, "")[0])
    fold(sd, "norm.", "lm_head.weight", m, s, nxt_bias="lm_head.bias")


def pretrain(seed: int, log: Callable[[str], None] = print,
             deps: Optional[Dict[str, Path]] = None) -> dict:
    """Tokenizer (k-means over the teacher) then MIM pre-training; the checkpoint object."""
    from ..backbones import create, get

    r = RECIPE
    if not deps or "mocov3" not in deps:
        raise ValueError("the BEiT v2 micro pre-training needs the MoCo v3 micro checkpoint "
                         "(its tokenizer teacher): deps={'mocov3': path}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images = normalize(pretraining_images())
    teacher = create(r["teacher"], str(deps["mocov3"])).eval()
    with torch.no_grad():
        z = torch.cat([teacher_features(teacher, b, r["token_cls"]) for b in images.split(200)])
        codes = cosine_kmeans(z.flatten(0, 1), r["vocab_size"], r["kmeans_iters"], g)
    ref = get("beit_micro_patch8_32.beitv2_digits").build()  # the downstream architecture
    if ref.lm_head.out_features != r["vocab_size"]:
        raise ValueError(f"RECIPE vocab_size {r['vocab_size']} != the registry entry's lm_head "
                         f"({ref.lm_head.out_features} words): change both together")
    model = MicroBEiTv2(r["vocab_size"], r["early_layers"], r["head_layers"],
                        img_size=ref.patch_embed.img_size[0],
                        patch_size=ref.patch_embed.patch_size[0], embed_dim=ref.embed_dim,
                        depth=len(ref.blocks), num_heads=ref.blocks[0].attn.num_heads,
                        mlp_ratio=4.0, qkv_bias=True, init_values=r["layer_scale_init"])
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], betas=(0.9, 0.98),
                            weight_decay=r["weight_decay"])
    N = model.patch_embed.num_patches

    def loss_fn(idx: torch.Tensor, step: int, total: int) -> Tuple[torch.Tensor, float]:
        x = augment(images[idx], g, **r["augment"])
        with torch.no_grad():
            feats = teacher_features(teacher, x, r["token_cls"])
            tokens = (feats @ codes.T).argmax(dim=-1)  # (B, N): nearest code per patch
        masked = torch.zeros(len(idx), N, dtype=torch.bool)
        pick = torch.rand(len(idx), N, generator=g).argsort(dim=1)[:, :r["num_masked"]]
        masked.scatter_(1, pick, True)
        main, cls = model.forward_mim(x, masked)
        target = tokens[masked]
        loss = F.cross_entropy(main, target) + F.cross_entropy(cls, target)
        return loss, (main.argmax(-1) == target).float().mean().item()

    model.train()
    train_epochs(opt, len(images), r, g, loss_fn, log,
                 lambda e, loss, acc: f"beitv2 epoch {e + 1}/{r['epochs']} MIM loss {loss:.4f} "
                                      f"masked-token accuracy {100 * acc:.1f}%")
    sd = model.beitv2_state_dict()
    standardize_features(sd)
    return {"model": sd, "epoch": r["epochs"] - 1,
            "tokenizer": {"codebook": codes, "teacher": r["teacher"]},
            "args": {"recipe": dict(r), "seed": seed, "data": "digits train 800 (no labels)"}}
