"""BEiT v2 masked-image-modeling backbone (VPTM's pre-trained model), on timm's ``Beit``.

What this file adds to timm (read, not copied, from microsoft/unilm ``beit2/``):

* :class:`BeitMIM`: timm's ``Beit`` (no absolute position embedding, one relative-position bias
  table per block, layer scale, q/v biases, final ``norm``) plus the two MIM parts timm lacks:
  ``mask_token`` (1, 1, D) and ``lm_head`` Linear(D, vocab).  Names equal the official
  pre-training state dict (``beit2/modeling_pretrain.py``,
  ``VisionTransformerForMaskedImageModeling``), so the converter only has to expand the shared
  bias table and drop the pre-training-only CLS branch.
* :class:`BeitAdapter`: the :class:`ViTAdapter` view.  BEiT v2 has no absolute position
  embedding; position enters only through the relative-position bias over the patch grid plus
  three CLS entries (token->CLS, CLS->token, CLS<->CLS).  Extra tokens (prompts, [MASK]) have no
  grid cell, so the adapter builds the bias for the longer sequence: with ``extra_bias='cls'``
  (default; VPTM's choice 7 in papers/vptm/README.md) an extra token gets the CLS entries, i.e.
  it is treated as one more global token; with ``'zero'`` every bias entry touching it is 0.
* :func:`convert_beitv2`: the official pre-training checkpoint (``{'model': state_dict}``) to
  our names, with strict key checks, registered as source ``'beitv2'``.
* :func:`check_checkpoint`: what ``make doctor`` reports for the BEiT v2 file.

Positions of extra tokens: ``block(i, x, n_extra=n)`` treats ``x[:, 1:1+n]`` as extra tokens
and, when ``x`` is longer than ``1 + n + num_patches``, the trailing tokens too (VPTM's
``token_order='mask_last'`` appends the [MASK] after the patches).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.beit import Beit, gen_relative_position_index

from .converters import CheckpointError, Converted, _need_dict, _read, check_and_load, \
    register_converter
from .vit import ViTAdapter, attention_core

#: where the BEiT v2 pre-training checkpoints live (microsoft/unilm beit2/PRETRAINING.md, Model Zoo)
from .zoo import BEITV2_PT1K_URL  # noqa: E402  (the registry entry's URL, defined once there)
BEITV2_PT1K_300E_URL = ("https://github.com/addf400/files/releases/download/BEiT-v2/"
                        "beitv2_base_patch16_224_pt1k_300e.pth")

#: keys of the pre-training model that the downstream model does not have (documented extras):
#: the CLS-pretraining branch of ``VisionTransformerForMaskedImageModelingCLS``
#: (beit2/modeling_pretrain.py: ``cls_pt_layers``; with ``shared_lm_head=False`` also
#: ``cls_pt_norm`` and ``cls_pt_lm_head``).
PRETRAIN_ONLY_PREFIXES = ("cls_pt_layers.", "cls_pt_norm.", "cls_pt_lm_head.")
SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
EXTRA_BIAS_MODES = ("cls", "zero")


# --------------------------------------------------------------------------- model
class BeitMIM(Beit):
    """timm ``Beit`` + ``mask_token`` + ``lm_head``: the BEiT v2 MIM encoder without the
    pre-training-only CLS branch.  Only the adapter runs it (``Beit.forward`` ignores the MIM
    parts)."""

    def __init__(self, vocab_size: int, **kwargs):
        # global_pool='token' keeps timm's final ``norm`` (the LayerNorm lm_head reads) instead
        # of the fine-tuning fc_norm; per-block tables as BEiT's fine-tuning model has them.
        super().__init__(num_classes=0, global_pool="token", use_abs_pos_emb=False,
                         use_rel_pos_bias=True, use_shared_rel_pos_bias=False, **kwargs)
        self.vocab_size = vocab_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.lm_head = nn.Linear(self.embed_dim, vocab_size)
        trunc_normal_(self.mask_token, std=0.02)
        trunc_normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)


def beitv2_base_patch16_224() -> BeitMIM:
    """ViT-B/16 as ``beit_base_patch16_224_8k_vocab_cls_pt`` with the pre-training command of
    beit2/PRETRAINING.md: 768 wide, 12 blocks, 12 heads, qkv bias, layer scale 0.1, LayerNorm
    eps 1e-6, vocab 8192, no absolute position embedding, shared relative-position bias."""
    return BeitMIM(vocab_size=8192, img_size=224, patch_size=16, embed_dim=768, depth=12,
                   num_heads=12, mlp_ratio=4.0, qkv_bias=True, init_values=0.1)


def beit_micro_patch8_32(vocab_size: int = 64) -> BeitMIM:
    """Tiny BEiT for tests and the demo: 32x32 input, 8x8 patches (4x4 grid), width 64, 4 blocks,
    4 heads, vocab 64 (tests); same key layout as the real model.  Layer scale starts at 1.0 (not 0.1):
    only random-init smoke runs see it (a checkpoint sets gamma), and with 0.1 a random tiny
    model's CLS/[MASK] outputs barely depend on the image (1% vs 13% spread on digits)."""
    return BeitMIM(vocab_size=vocab_size, img_size=32, patch_size=8, embed_dim=64, depth=4,
                   num_heads=4, mlp_ratio=4.0, qkv_bias=True, init_values=1.0)


def beit_micro_patch8_32_vocab1k() -> BeitMIM:
    """The demo's micro BEiT v2 (:mod:`replicate.micro.beitv2`): :func:`beit_micro_patch8_32`
    with a 1,024-word ``lm_head`` (the real model has 8,192 words; VPTM reads this head, and a
    64-word one measured as its bottleneck, replicate/micro/beitv2.py)."""
    return beit_micro_patch8_32(vocab_size=1024)


# --------------------------------------------------------------------------- adapter
class BeitAdapter(ViTAdapter):
    """:class:`ViTAdapter` over :class:`BeitMIM` (timm's modules, our attention call)."""

    def __init__(self, beit: BeitMIM, attention: str = "sdpa", extra_bias: str = "cls"):
        super().__init__()
        self.beit = beit
        self.attention = attention
        self.embed_dim = beit.embed_dim
        self.num_blocks = len(beit.blocks)
        self.num_patches = beit.patch_embed.num_patches
        self.patch_size = beit.patch_embed.patch_size
        self.grid_size = beit.patch_embed.grid_size
        if beit.pos_embed is not None or beit.rel_pos_bias is not None:
            raise ValueError("BeitAdapter expects per-block relative-position bias and no "
                             "absolute position embedding (BEiT v2 as fine-tuned)")
        self.extra_bias = "cls"
        self.set_extra_bias(extra_bias)
        self._index_cache: Dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ MIM parts
    @property
    def mask_token(self) -> nn.Parameter:
        return self.beit.mask_token

    @property
    def lm_head(self) -> nn.Linear:
        return self.beit.lm_head

    def mim_parameters(self) -> List[nn.Parameter]:
        """mask_token and lm_head: never trained here (VPTM keeps its pre-training MIM head
        frozen; the classification baselines do not use it)."""
        return [self.beit.mask_token, *self.beit.lm_head.parameters()]

    def requires_grad_(self, requires_grad: bool = True) -> "BeitAdapter":
        # full fine-tuning unfreezes the backbone; the MIM head stays frozen (it gets no
        # gradient from a classification loss, and weight decay would otherwise move it)
        super().requires_grad_(requires_grad)
        for p in self.mim_parameters():
            p.requires_grad_(False)
        return self

    def set_extra_bias(self, mode: str) -> None:
        """Bias entries of extra tokens: 'cls' (the CLS entries) or 'zero'."""
        if mode not in EXTRA_BIAS_MODES:
            raise ValueError(f"extra_bias must be one of {EXTRA_BIAS_MODES}, got {mode!r}")
        self.extra_bias = mode

    # ------------------------------------------------------------------ ViTAdapter
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_masked(images, None)

    def embed_masked(self, images: torch.Tensor,
                     bool_masked_pos: Optional[torch.Tensor]) -> torch.Tensor:
        """[CLS, patches] with the patches where ``bool_masked_pos`` (B, N) is True replaced by
        ``mask_token``, as BEiT's pre-training forward does (x*(1-w) + mask_token*w)."""
        b = self.beit
        x = b.patch_embed(images)
        if bool_masked_pos is not None:
            w = bool_masked_pos.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + b.mask_token.to(x.dtype) * w
        x = torch.cat([b.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        return b.pos_drop(x)

    def extended_index(self, n_extra: int, n_tail: int, device: torch.device) -> torch.Tensor:
        """(L, L) indices into the bias table (plus one zero row at ``num_relative_distance``
        for mode 'zero') for the layout [CLS, n_extra extras, patches, n_tail extras]."""
        key = (n_extra, n_tail, self.extra_bias, str(device))
        idx = self._index_cache.get(key)
        if idx is not None:
            return idx
        attn = self.beit.blocks[0].attn
        base = attn.relative_position_index.to(device)  # (N+1, N+1), CLS at 0
        n = self.num_patches
        # every extra token borrows CLS's row/column of the grid index
        src = torch.cat([torch.zeros(1 + n_extra, dtype=torch.long),
                         torch.arange(1, n + 1), torch.zeros(n_tail, dtype=torch.long)]).to(device)
        idx = base[src][:, src].clone()
        if self.extra_bias == "zero":
            extra = torch.zeros(src.numel(), dtype=torch.bool, device=device)
            extra[1:1 + n_extra] = True
            if n_tail:
                extra[-n_tail:] = True
            idx[extra, :] = attn.num_relative_distance
            idx[:, extra] = attn.num_relative_distance
        self._index_cache[key] = idx
        return idx

    def rel_pos_bias(self, i: int, n_extra: int, n_tail: int,
                     device: torch.device) -> torch.Tensor:
        """(1, heads, L, L) relative-position bias of block ``i`` for the extended sequence."""
        attn = self.beit.blocks[i].attn
        table = attn.relative_position_bias_table  # (num_relative_distance, heads)
        if self.extra_bias == "zero":
            table = torch.cat([table, table.new_zeros(1, table.shape[1])])
        idx = self.extended_index(n_extra, n_tail, device)
        L = idx.shape[0]
        return table[idx.view(-1)].view(L, L, -1).permute(2, 0, 1).unsqueeze(0)

    def block(self, i: int, x: torch.Tensor, temp: Optional[torch.Tensor] = None,
              n_extra: int = 0) -> torch.Tensor:
        blk = self.beit.blocks[i]
        a = blk.attn
        B, L, _ = x.shape
        n_tail = L - 1 - n_extra - self.num_patches
        if n_tail < 0:
            raise ValueError(f"sequence of {L} tokens is shorter than CLS + {n_extra} extra + "
                             f"{self.num_patches} patch tokens")
        h = blk.norm1(x)
        qkv_bias = None
        if a.q_bias is not None:  # BEiT: q and v biases, no k bias
            qkv_bias = torch.cat([a.q_bias, torch.zeros_like(a.v_bias), a.v_bias])
        qkv = F.linear(h, a.qkv.weight, qkv_bias)
        q, k, v = qkv.reshape(B, L, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.rel_pos_bias(i, n_extra, n_tail, x.device).to(q.dtype)
        o = attention_core(q, k, v, a.scale, temp, self.attention, bias)
        o = a.proj_drop(a.proj(o.transpose(1, 2).reshape(B, L, -1)))
        if blk.gamma_1 is not None:
            o = blk.gamma_1 * o
        x = x + blk.drop_path1(o)
        m = blk.mlp(blk.norm2(x))
        if blk.gamma_2 is not None:
            m = blk.gamma_2 * m
        return x + blk.drop_path2(m)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.beit.norm(x)

    @torch.no_grad()
    def mim_logits(self, images: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        """lm_head logits at the masked patches, (num_masked, vocab): BEiT's pre-training
        ``forward(x, bool_masked_pos)`` through this adapter (the equivalence test uses it)."""
        x = self.embed_masked(images, bool_masked_pos)
        for i in range(self.num_blocks):
            x = self.block(i, x)
        x = self.final_norm(x)[:, 1:]
        return self.lm_head(x[bool_masked_pos])


# --------------------------------------------------------------------------- converter
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def convert_beitv2(obj: object, path: str) -> Converted:
    """Official BEiT v2 pre-training checkpoint -> :class:`BeitMIM` names.

    * ``{'model': state_dict}`` as ``utils.save_model`` writes it (beit2/utils.py);
    * ``lm_head.*`` and ``mask_token`` must be present (VPTM predicts visual tokens with them);
    * the shared ``rel_pos_bias.relative_position_bias_table`` is cloned into every block's
      ``blocks.i.attn.relative_position_bias_table``, exactly as BEiT's fine-tuning loader
      does (beit2/run_class_finetuning.py, "Expand the shared relative position embedding to
      each transformer block"), and every ``relative_position_index`` buffer is dropped there
      too (timm regenerates it; we check that the file's index equals the regenerated one);
    * ``cls_pt_layers.*`` (and ``cls_pt_norm.*``/``cls_pt_lm_head.*``) are dropped: the
      pre-training-only CLS branch (beit2/modeling_pretrain.py).
    Everything else must match the model exactly (``check_and_load``).
    """
    sd = _need_dict(obj, "model", path, "BEiT v2 pre-training")
    missing = [k for k in ("lm_head.weight", "lm_head.bias", "mask_token") if k not in sd]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}: VPTM needs the MIM head (lm_head) "
            "and mask_token of the BEiT v2 *pre-training* checkpoint; fine-tuned files "
            "(*_ft1k.pth, *_ft21k.pth, timm's beitv2_* weights) do not have them. Download "
            f"{BEITV2_PT1K_URL} (beit2/PRETRAINING.md, Model Zoo, 1600 epochs).")
    per_block = [k for k in sd
                 if _BLOCK.match(k) and k.endswith("attn.relative_position_bias_table")]
    if SHARED_TABLE in sd and per_block:
        raise CheckpointError(f"checkpoint {path} has both a shared relative-position table and "
                              f"per-block tables ({per_block[0]}): not a BEiT v2 pre-training file")
    out: Dict[str, torch.Tensor] = {}
    dropped: List[str] = []
    for k, v in sd.items():
        if k.startswith(PRETRAIN_ONLY_PREFIXES):
            dropped.append(k)
        elif k.endswith("relative_position_index"):
            _check_index(v, path, k)
            dropped.append(k)
        elif k != SHARED_TABLE:
            out[k] = v
    if SHARED_TABLE in sd:
        blocks = sorted({int(m.group(1)) for k in sd for m in [_BLOCK.match(k)] if m})
        if not blocks:
            raise CheckpointError(f"checkpoint {path} has no 'blocks.*' keys")
        for i in blocks:
            out[f"blocks.{i}.attn.relative_position_bias_table"] = sd[SHARED_TABLE].clone()
    return out, dropped


def _check_index(index: torch.Tensor, path: str, key: str) -> None:
    """The file's relative_position_index must be the one BEiT's code generates for its grid."""
    n = index.shape[0] - 1
    side = int(round(n ** 0.5))
    if index.ndim != 2 or side * side != n:
        raise CheckpointError(f"checkpoint {path}: '{key}' has shape {tuple(index.shape)}, not "
                              "(grid_area + 1, grid_area + 1)")
    if not torch.equal(index.long(), gen_relative_position_index((side, side))):
        raise CheckpointError(f"checkpoint {path}: '{key}' differs from BEiT's relative position "
                              "index for a square grid: the file uses another position layout")


register_converter("beitv2", convert_beitv2)


# the registry entries of these models are in ``zoo.py`` (torch-free)
PAPER_KEY = "beitv2_vitb16"


# --------------------------------------------------------------------------- doctor
def check_checkpoint(path: Optional[str] = None,
                     backbone: str = "beitv2_base_patch16_224.pt1k") -> Tuple[bool, str]:
    """Is the BEiT v2 pre-training checkpoint with its MIM head usable?  ``(ok, message)``.

    ``path=None`` looks for the entry's default file under ``$CKPT_ROOT``.  The file is
    converted and loaded strictly into a freshly built model (a few seconds for ViT-B)."""
    from .entry import get

    entry = get(backbone)
    where = f"get it from {entry.url} (beit2/PRETRAINING.md, Model Zoo) into $CKPT_ROOT"
    if path is None:
        root = os.environ.get("CKPT_ROOT")
        if not root:
            return False, f"BEiT v2 ({backbone}): CKPT_ROOT is not set; {where}"
        path = os.path.join(root, entry.default_file)
    if not os.path.isfile(path):
        return False, f"BEiT v2 ({backbone}): {path} not found; {where}"
    try:
        sd, dropped = convert_beitv2(_read(path), path)
        model = entry.build()
        check_and_load(model, sd, path, entry.source)
    except CheckpointError as e:
        return False, f"BEiT v2 ({backbone}): {e}"
    head = tuple(model.lm_head.weight.shape)
    return True, (f"BEiT v2 ({backbone}): {path} OK, MIM head lm_head {list(head)} and "
                  f"mask_token present, {len(model.blocks)} blocks; {len(dropped)} "
                  "pre-training-only key(s) dropped (cls_pt_layers.*, relative_position_index)")
