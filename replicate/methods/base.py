"""One prompted-model wrapper shared by every method.

:class:`PromptedModel` runs a frozen :class:`ViTAdapter` and hands control to a
:class:`PromptMethod` at fixed points:

    x = adapter.embed(images)                 # [CLS, patches] + position embedding
    x = method.insert(x)                      # [CLS, extra tokens, patches]
    method.begin(x)                           # per-batch state (e.g. LSPT's LSTM) reset here
    for i in blocks:
        x_in  = method.before_block(i, x)     # VPT-deep replaces the prompt slice
        x_out = adapter.block(i, x_in, temp=method.temperature(i), n_extra=method.num_extra)
        x     = method.after_block(i, x_in, x_out)   # GateVPT gates the prompt slice
    logits = method.head(method.features(x))
    loss = CE(logits, y) + method.extra_loss(y)     # when not None (training only)

A method is a small nn.Module holding only its own parameters plus the task head; the
backbone is never copied.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import torch
import torch.nn as nn

from ..backbones import ViTAdapter

#: head inputs (``pool`` option).  'auto' takes the backbone entry's default.
POOLS = {
    "cls": "final norm, then the CLS token (VPT/GateVPT on supervised and MoCo v3 ViTs)",
    "mean_norm": "mean over all tokens but CLS (prompts + patches), then the pretrained final "
                 "norm (GateVPT's MAE 'original' pooling)",
    "mean_fcnorm": "mean over all tokens but CLS, then a fresh frozen LayerNorm (VPT's MAE "
                   "pooling: its fc_norm is not in the MAE checkpoint and stays at init)",
    "mean_patches_norm": "mean over patch tokens only, then the final norm ('img_pool')",
}


@dataclass(frozen=True)
class BaseOptions:
    """Options every method has."""
    #: head input, one of POOLS or 'auto' (the backbone's default)
    pool: str = "auto"
    #: head init: vpt (kaiming-normal fan_out weight, bias -log(99), VPT's mlp.py) | zeros
    head_init: str = "vpt"

    def validate(self) -> None:
        """Enumerated and ranged options, checked when a config loads
        (``replicate.methods.validate_options``); each subclass extends it."""
        check_choice("pool", self.pool, ("auto", *sorted(POOLS)))
        check_choice("head_init", self.head_init, ("vpt", "zeros"))


def check_choice(key: str, value, allowed) -> None:
    """``method.<key>`` must be one of ``allowed`` (the message lists them)."""
    if value not in allowed:
        raise ValueError(f"'method.{key}' = {value!r} is invalid: it must be one of "
                         f"{', '.join(map(repr, allowed))}")


def check_range(key: str, value, ok: bool, want: str) -> None:
    """``method.<key>`` must satisfy ``ok`` (``want`` says what is allowed)."""
    if not ok:
        raise ValueError(f"'method.{key}' = {value!r} is invalid: it must be {want}")


def init_head(head: nn.Linear, how: str) -> None:
    if how == "vpt":
        nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out")
        nn.init.constant_(head.bias, -math.log((1 - 0.01) / 0.01))
    elif how == "zeros":
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    else:
        raise ValueError(f"head_init must be 'vpt' or 'zeros', got {how!r}")


def prompt_init_bound(adapter: ViTAdapter) -> float:
    """VPT's 'random' prompt init: U(-v, v), v = sqrt(6 / (3 * patch_area + D))."""
    ps = getattr(adapter, "patch_size", (16, 16))
    area = ps[0] * ps[1] if isinstance(ps, (tuple, list)) else ps * ps
    return math.sqrt(6.0 / float(3 * area + adapter.embed_dim))


def split_stream(x: torch.Tensor, n_extra: int
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(CLS, extra tokens, patches) of a token sequence ``[CLS, extra, patches]`` as views.

    One ``split`` instead of three slices: in backward, one ``SplitWithSizesBackward`` writes
    the gradient of ``x`` once (the three parts' gradients side by side, zeros for a part that
    gets none), where each slice would allocate a zero-filled gradient of the whole stream and
    the engine would then add them up.  Values and gradients are bit-identical (each gradient
    element is the same sum of the same terms, less the zeros; ``tests/test_prompt_assembly.py``)."""
    return x.split([1, n_extra, x.shape[1] - 1 - n_extra], dim=1)


def join_stream(cls: torch.Tensor, extra: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """``[CLS, extra, patches]``: the inverse of :func:`split_stream` (one copy of the stream)."""
    return torch.cat([cls, extra, rest], dim=1)


class PromptMethod(nn.Module):
    """Base class: no extra tokens, identity hooks, linear head on the pooled features."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = BaseOptions
    #: True for full fine-tuning: the backbone trains and stays in train mode
    trains_backbone: ClassVar[bool] = False

    def __init__(self, opts: BaseOptions, adapter: ViTAdapter, num_classes: int,
                 default_pool: str = "cls"):
        super().__init__()
        self.opts = opts
        self.num_extra = 0
        self.pool = default_pool if opts.pool == "auto" else opts.pool
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {sorted(POOLS)} or 'auto', got {self.pool!r}")
        if self.pool == "mean_fcnorm":
            self.fc_norm = nn.LayerNorm(adapter.embed_dim, eps=1e-6)
            self.fc_norm.requires_grad_(False)  # frozen at init, as in VPT
        self.head = self.build_head(adapter, num_classes)

    # ------------------------------------------------------------------ hooks
    def build_head(self, adapter: ViTAdapter, num_classes: int) -> nn.Module:
        head = nn.Linear(adapter.embed_dim, num_classes)
        init_head(head, self.opts.head_init)
        return head

    def insert(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def begin(self, x: torch.Tensor) -> None:
        """Called once per forward after insert(); reset per-batch state here."""

    def before_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x

    def temperature(self, i: int) -> Optional[torch.Tensor]:
        return None

    def after_block(self, i: int, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        return x_out

    def features(self, adapter: ViTAdapter, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "cls":
            return adapter.final_norm(x)[:, 0]
        if self.pool == "mean_norm":
            return adapter.final_norm(x[:, 1:].mean(dim=1))
        if self.pool == "mean_fcnorm":
            return self.fc_norm(x[:, 1:].mean(dim=1))
        return adapter.final_norm(x[:, 1 + self.num_extra:].mean(dim=1))

    def trainable_parameters(self):
        """Parameters this method trains (the wrapper freezes everything else)."""
        return [p for n, p in self.named_parameters() if not n.startswith("fc_norm.")]

    def prepare_step(self) -> None:
        """Called before every forward in training and eval (e.g. GateVPT's clamp)."""

    def extra_loss(self, targets: torch.Tensor) -> Optional[torch.Tensor]:
        """A loss term added to the cross-entropy of the last training forward (e.g. VPTM's
        instance-instance contrastive term), or None.  The engine calls it after forward."""
        return None


class PromptedModel(nn.Module):
    """A frozen ViT adapter + one method.  ``forward(images) -> logits``."""

    def __init__(self, adapter: ViTAdapter, method: PromptMethod):
        super().__init__()
        self.adapter = adapter
        self.method = method
        trainable = {id(p) for p in method.trainable_parameters()}
        for p in method.parameters():
            p.requires_grad_(id(p) in trainable)
        adapter.requires_grad_(method.trains_backbone)
        self.train(False)

    def train(self, mode: bool = True) -> "PromptedModel":
        # The frozen backbone stays in eval mode (no dropout / drop-path), as VPT's
        # PromptedTransformer.train() does; only the method's own modules switch.
        self.training = mode
        self.method.train(mode)
        self.adapter.train(mode and self.method.trains_backbone)
        return self

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        m, a = self.method, self.adapter
        m.prepare_step()
        x = m.insert(a.embed(images))
        m.begin(x)
        for i in range(a.num_blocks):
            x_in = m.before_block(i, x)
            x_out = a.block(i, x_in, temp=m.temperature(i), n_extra=m.num_extra)
            x = m.after_block(i, x_in, x_out)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.forward_tokens(images)
        return self.method.head(self.method.features(self.adapter, x))

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def trainable_state_dict(self) -> dict:
        """What a checkpoint must hold: trainable tensors (and all of them for fine-tuning)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}
