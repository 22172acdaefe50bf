"""The prompted ViT as an mmseg backbone (``type='PromptedViTSeg'``).

No second ViT: the backbone is ``replicate.backbones.create(name, checkpoint)`` (the same
registry, converters and strict key checks as classification) and the method is any method
registered in ``replicate.methods`` (linear, vpt_shallow, vpt_deep, gatevpt, ...), wrapped in
the same :class:`~replicate.methods.PromptedModel`.  What is segmentation-specific lives here:

* position embeddings at the crop size: the checkpoint's grid (14x14 for 224 inputs) is
  resampled once to ``img_size / patch`` after loading, and again on the fly for inputs of
  another size (slide windows at the image border, multi-scale test), as mmseg's
  ``VisionTransformer`` does (``init_weights`` and ``_pos_embeding`` in
  ``mmseg/models/backbones/vit.py``; mode ``interpolate_mode``, bilinear in SETR's configs);
  inputs whose size is not a multiple of the patch size are zero-padded bottom/right first
  (mmseg's ``PatchEmbed(padding='corner')``);
* the block loop is ``methods.run_blocks`` (the one ``PromptedModel.forward_tokens`` uses) and keeps
  the token outputs of the blocks in ``out_indices`` (0-based, as mmseg's ViT: the paper's
  "5th and 9th blocks" are indices 4 and 8); CLS and the extra (prompt) tokens are dropped and
  the patch tokens reshaped to ``(B, D, H/16, W/16)`` maps;
* ``final_norm`` normalises the last block's output only, as mmseg's ViT (off in mmseg's
  SETR-PUP configs, whose heads carry their own LayerNorm).

The method's classification head is removed (the decode/auxiliary heads replace it), so the
trainable backbone parameters are exactly the method's own (prompts, gates, temperatures).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from timm.layers import resample_abs_pos_embed

from .. import backbones, methods
from ..config import ConfigError

_MODES = ("bilinear", "bicubic", "nearest")


def _pair(v: Any, what: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise ConfigError(f"PromptedViTSeg: {what} must be an int or a pair of ints, got {v!r}")


def build_adapter(backbone: str, checkpoint: Optional[str], structure_only: bool = False,
                  attention: str = "sdpa") -> Tuple[backbones.ViTAdapter, backbones.BackboneEntry]:
    """The classification adapter, with weights (``backbones.create``) or structure only."""
    try:
        entry = backbones.get(backbone)
    except KeyError:
        raise ConfigError(
            f"PromptedViTSeg: unknown backbone '{backbone}'; set model.backbone.backbone to one "
            f"of: {', '.join(backbones.registered())}") from None
    if structure_only:
        # architecture only (config checks, tests): seg_train refuses it for real backbones
        return entry.adapter(entry.build(), attention=attention), entry
    return backbones.create(backbone, checkpoint, attention=attention), entry


def build_method(name: str, options: Mapping[str, Any], adapter: backbones.ViTAdapter,
                 default_pool: str) -> methods.PromptMethod:
    """A registered method without its classification head."""
    try:
        cls = methods.get(name)
    except KeyError:
        raise ConfigError(
            f"PromptedViTSeg: unknown method '{name}'; set model.backbone.method.type to one "
            f"of: {', '.join(methods.registered())}") from None
    try:
        opts = methods.make_options(name, options)
    except KeyError as e:
        raise ConfigError(f"PromptedViTSeg: {e.args[0]}") from None
    method = cls(opts, adapter, 1, default_pool)
    method.head = None  # SETR-PUP's decode and auxiliary heads replace it
    return method


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: Tuple[int, int],
                     old_grid: Tuple[int, int], mode: str) -> torch.Tensor:
    """(1, 1+h*w, D) position embedding resampled to another grid; CLS entry kept.

    timm's ``resample_abs_pos_embed`` with ``antialias=False`` is mmseg's ``resize_pos_embed``
    (plain ``F.interpolate``, ``align_corners=False``)."""
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, list(new_grid), list(old_grid), num_prefix_tokens=1,
                                  interpolation=mode, antialias=False)


@MODELS.register_module()
class PromptedViTSeg(BaseModule):
    """A registered ViT + a registered prompt method, returning SETR-style feature maps.

    Args:
        backbone: registry name ``arch.tag`` (``python -m replicate backbones``).
        method: ``dict(type=<method name>, **options)``, validated by the method's Options.
        checkpoint: checkpoint file (``${CKPT_ROOT}`` expanded); None = the tag's default file
            under CKPT_ROOT; '' = random init (tiny test backbones only).
        img_size: crop size the position embedding is resampled to after loading.
        out_indices: 0-based blocks whose outputs are returned, in this order.
        final_norm: apply the backbone's final LayerNorm to the last block's output.
        interpolate_mode: position-embedding resampling mode.
        attention: ``sdpa`` (fused) or ``eager``.
        structure_only: build without loading weights (config checks only).
    """

    def __init__(self, backbone: str, method: Mapping[str, Any],
                 checkpoint: Optional[str] = None, img_size: Any = (512, 512),
                 out_indices: Sequence[int] = (4, 8, 11), final_norm: bool = False,
                 interpolate_mode: str = "bilinear", attention: str = "sdpa",
                 structure_only: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(method, Mapping) or "type" not in method:
            raise ConfigError("PromptedViTSeg: method must be dict(type=<method name>, ...), "
                              f"got {method!r}")
        if interpolate_mode not in _MODES:
            raise ConfigError(f"PromptedViTSeg: interpolate_mode must be one of {_MODES}, "
                              f"got {interpolate_mode!r}")
        adapter, entry = build_adapter(backbone, checkpoint, structure_only, attention)
        vit = getattr(adapter, "vit", None)
        if vit is None or getattr(vit, "cls_token", None) is None or \
                getattr(vit, "no_embed_class", False) or getattr(vit, "pos_embed", None) is None:
            raise ConfigError(f"PromptedViTSeg: backbone '{backbone}' is not a timm ViT with a "
                              "CLS token and an absolute position embedding on it")
        ph, pw = adapter.patch_size
        h, w = _pair(img_size, "img_size")
        if h % ph or w % pw:
            raise ConfigError(f"PromptedViTSeg: img_size {(h, w)} is not a multiple of the "
                              f"patch size {(ph, pw)}")
        L = adapter.num_blocks
        out = tuple(int(i) for i in out_indices)
        if not out or any(not 0 <= i < L for i in out) or len(set(out)) != len(out):
            raise ConfigError(f"PromptedViTSeg: out_indices {tuple(out_indices)} must be distinct "
                              f"0-based block indices in [0, {L - 1}] for '{backbone}'")
        self.backbone_name, self.entry = backbone, entry
        self.out_indices, self.final_norm = out, bool(final_norm)
        self.interpolate_mode = interpolate_mode
        self.method_type = method["type"]

        # position embedding at the crop grid, resampled once after loading (frozen buffer-like
        # parameter: PromptedModel freezes it with the rest of the backbone)
        grid = (h // ph, w // pw)
        old = tuple(adapter.grid_size)
        vit.pos_embed = nn.Parameter(resize_pos_embed(vit.pos_embed.data, grid, old,
                                                      interpolate_mode).clone())
        vit.patch_embed.strict_img_size = False  # sizes are handled here
        vit.patch_embed.img_size = (h, w)
        vit.patch_embed.grid_size = grid
        vit.patch_embed.num_patches = grid[0] * grid[1]
        adapter.grid_size, adapter.num_patches = grid, grid[0] * grid[1]
        self.grid = grid

        opts = {k: v for k, v in method.items() if k != "type"}
        self.prompted = methods.PromptedModel(
            adapter, build_method(self.method_type, opts, adapter, entry.default_pool))

    # ----------------------------------------------------------------- mmengine
    def init_weights(self) -> None:
        """Weights come from the checkpoint at construction; nothing to (re)initialise.

        (The default would recurse into timm modules' own ``init_weights`` otherwise.)"""
        self._is_init = True

    def train(self, mode: bool = True) -> "PromptedViTSeg":
        # PromptedModel keeps the frozen backbone in eval mode (no dropout / drop-path)
        self.training = mode
        self.prompted.train(mode)
        return self

    # ----------------------------------------------------------------- forward
    @property
    def adapter(self) -> backbones.ViTAdapter:
        return self.prompted.adapter

    @property
    def method(self) -> methods.PromptMethod:
        return self.prompted.method

    def embed(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """[CLS, patches] + position embedding at the input's grid; timm's own modules."""
        vit = self.adapter.vit
        ph, pw = self.adapter.patch_size
        H, W = images.shape[-2:]
        pad_h, pad_w = (-H) % ph, (-W) % pw
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        grid = ((H + pad_h) // ph, (W + pad_w) // pw)
        x = vit.patch_embed(images)  # (B, h*w, D)
        pos = resize_pos_embed(vit.pos_embed, grid, self.grid, self.interpolate_mode)
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
        x = vit.patch_drop(vit.pos_drop(x))
        return vit.norm_pre(x), grid

    def forward_tokens(self, images: torch.Tensor) -> Tuple[list, Tuple[int, int]]:
        """Token outputs of the ``out_indices`` blocks (method hooks as in PromptedModel)."""
        m, a = self.method, self.adapter
        m.prepare_step()
        x, grid = self.embed(images)
        x = m.insert(x)
        m.begin(x)
        # blocks after the last wanted one are skipped (SETR's configs end at the last block)
        wanted, outs = set(self.out_indices), {}

        def keep_wanted(i: int, xs: list) -> None:
            if i in wanted:
                last = self.final_norm and i == a.num_blocks - 1
                outs[i] = a.final_norm(xs[0]) if last else xs[0]

        methods.run_blocks(a, [m], [x], num_blocks=max(self.out_indices) + 1,
                           on_block=keep_wanted)
        keep = [outs[i] for i in self.out_indices]
        return keep, grid

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        tokens, (h, w) = self.forward_tokens(images)
        maps = []
        for t in tokens:
            # token layout [CLS, extra tokens, patches]: the patches are the last h*w tokens
            p = t[:, t.shape[1] - h * w:]
            maps.append(p.reshape(p.shape[0], h, w, p.shape[2]).permute(0, 3, 1, 2).contiguous())
        return tuple(maps)

    # ----------------------------------------------------------------- reporting
    def parameter_counts(self) -> dict:
        """Backbone (frozen ViT) and method (trainable prompt parameters) sizes."""
        return {"backbone_params": sum(p.numel() for p in self.adapter.parameters()),
                "method_params": sum(p.numel() for p in self.method.parameters()
                                     if p.requires_grad)}
