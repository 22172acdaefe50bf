"""One prompted-model wrapper shared by every method.

:class:`PromptedModel` runs a frozen :class:`ViTAdapter` and hands control to a
:class:`PromptMethod` at fixed points:

    x = adapter.embed(images)                 # [CLS, patches] + position embedding
    x = method.insert(x)                      # [CLS, extra tokens, patches]
    method.begin(x)                           # per-batch state (e.g. LSPT's LSTM) reset here
    for i in blocks:                          # run_blocks(): shared with packed and seg
        x_in  = method.before_block(i, x)     # VPT-deep replaces the prompt slice
        x_out = adapter.block(i, x_in, temp=method.temperature(i), n_extra=method.num_extra)
        x     = method.after_block(i, x_in, x_out)   # GateVPT gates the prompt slice
    logits = method.head(method.features(x))
    loss = CE(logits, y) + method.extra_loss(y)     # when not None (training only)

A method is a small nn.Module holding only its own parameters plus the task head; the
backbone is never copied.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, ClassVar, ContextManager, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..backbones import ViTAdapter

# options, pools and the option checks are torch-free (options.py); re-exported here
from .options import POOLS, BaseOptions, check_choice, check_range  # noqa: E402,F401


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
    #: True when nothing before the head trains or draws randomness (the linear probe): the
    #: head input is a fixed function of the image, so features can be cached (engine/features)
    frozen_up_to_head: ClassVar[bool] = False
    #: runs of this method may share one frozen backbone in a pack (engine/packed.py)
    packable: ClassVar[bool] = True
    #: plan estimates: a method without its own benchmark row (results/bench) takes the median
    #: model FLOP/s of its family's rows.  'prompt': backward through the frozen blocks to
    #: tokens; 'head': no backward through the blocks; 'full': every weight trains
    throughput_family: ClassVar[str] = "prompt"

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


def _no_swap(k: int) -> ContextManager[None]:
    return contextlib.nullcontext()


def run_blocks(adapter: ViTAdapter, methods: Sequence[PromptMethod], xs: List[torch.Tensor],
               block: Optional[Callable] = None, use: Optional[Callable] = None,
               num_blocks: Optional[int] = None,
               on_block: Optional[Callable[[int, List[torch.Tensor]], None]] = None
               ) -> List[torch.Tensor]:
    """The block loop with the methods' hooks, shared by the plain (:class:`PromptedModel`),
    packed (``engine.packed``) and segmentation (``seg.backbone``) forwards.

    ``xs[k]`` is method ``k``'s token sequence after ``insert``/``begin``.  One method: the
    hooks run in the order of the module docstring.  Several (a pack sharing ``adapter``):
    every run's ``before_block`` (under ``use(k)``, its RNG stream), the frozen block once on
    the concatenated sequences with one temperature per sample, then every ``after_block``.
    ``block(i, x, temp, n_extra)`` defaults to ``adapter.block`` (a compiled block in a pack);
    ``num_blocks`` stops early (segmentation); ``on_block(i, xs)`` sees every block's output.
    Returns the final token sequences."""
    block = block or adapter.block
    use = use or _no_swap
    n_extra = {m.num_extra for m in methods}
    if len(n_extra) != 1:
        raise ValueError("methods sharing a block loop must add the same number of extra tokens")
    n_extra = n_extra.pop()
    xs = list(xs)
    sizes = [x.shape[0] for x in xs]
    for i in range(adapter.num_blocks if num_blocks is None else num_blocks):
        x_in = []
        for k, m in enumerate(methods):
            with use(k):
                x_in.append(m.before_block(i, xs[k]))
        temps = [m.temperature(i) for m in methods]
        if len(methods) == 1:
            out = [block(i, x_in[0], temps[0], n_extra)]
        else:
            if all(t is None for t in temps):
                temp = None
            elif any(t is None for t in temps):
                raise ValueError(f"block {i}: some packed runs have a temperature and some not")
            else:  # one temperature per sample (its run's), broadcast over heads and tokens
                temp = torch.cat([t.reshape(1).expand(n) for t, n in zip(temps, sizes)])
                temp = temp.view(-1, 1, 1, 1)
            out = block(i, torch.cat(x_in), temp, n_extra).split(sizes)
        for k, m in enumerate(methods):
            with use(k):
                xs[k] = m.after_block(i, x_in[k], out[k])
        if on_block is not None:
            on_block(i, xs)
    return xs


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
        return run_blocks(a, [m], [x])[0]

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
