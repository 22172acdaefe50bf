"""VPT-shallow and VPT-deep (Jia et al., ECCV 2022).

Follows KMnP/vpt ``src/models/vit_prompt/vit.py`` (and GatedPromptTuning's copies
``vit_prompt/vit_mae.py`` / ``vit_moco.py``): prompts prepended after CLS without position
embedding, 'random' init U(-v, v) with v = sqrt(6 / (3*patch_area + D)), dropout on the prompt
embeddings wherever they are inserted, and for VPT-deep a fresh prompt set per block that
*replaces* the previous block's prompt outputs.

Prompt assembly (VPT-deep here, GateVPT and LSPT after each gated block) splits the residual
stream once into (CLS, prompts, patches) views and joins it once (``base.split_stream`` /
``join_stream``): one backward node writes the stream's gradient, where three slices would each
send a zero-padded gradient of the whole stream through backward to be added up.  Values and
gradients are bit-identical to slicing (``tests/test_prompt_assembly.py``).
"""
from __future__ import annotations


import torch
import torch.nn as nn

from . import register
from .base import PromptMethod, join_stream, prompt_init_bound, split_stream
from .options import VPTOptions  # noqa: F401  (torch-free; re-exported)


class VPTShallow(PromptMethod):
    name = "vpt_shallow"
    Options = VPTOptions

    def __init__(self, opts: VPTOptions, adapter, num_classes: int, default_pool: str = "cls"):
        super().__init__(opts, adapter, num_classes, default_pool)
        if opts.num_prompts < 1:
            raise ValueError("num_prompts must be >= 1")
        self.num_extra = opts.num_prompts
        bound = prompt_init_bound(adapter)
        self.prompt_embeddings = nn.Parameter(torch.empty(1, opts.num_prompts, adapter.embed_dim))
        nn.init.uniform_(self.prompt_embeddings, -bound, bound)
        self.prompt_dropout = nn.Dropout(opts.prompt_dropout)
        self._bound = bound

    def insert(self, x: torch.Tensor) -> torch.Tensor:
        p = self.prompt_dropout(self.prompt_embeddings.expand(x.shape[0], -1, -1))
        return torch.cat([x[:, :1], p.to(x.dtype), x[:, 1:]], dim=1)

    def prompt_slice(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1:1 + self.num_extra]


class VPTDeep(VPTShallow):
    name = "vpt_deep"
    Options = VPTOptions

    def __init__(self, opts: VPTOptions, adapter, num_classes: int, default_pool: str = "cls"):
        super().__init__(opts, adapter, num_classes, default_pool)
        self.deep_prompt_embeddings = nn.Parameter(
            torch.empty(adapter.num_blocks - 1, opts.num_prompts, adapter.embed_dim))
        nn.init.uniform_(self.deep_prompt_embeddings, -self._bound, self._bound)

    def before_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0:
            return x
        p = self.prompt_dropout(self.deep_prompt_embeddings[i - 1].expand(x.shape[0], -1, -1))
        cls, _, rest = split_stream(x, self.num_extra)  # the old prompts get no gradient
        return join_stream(cls, p.to(x.dtype), rest)


# the registry imports no implementation: each method registers itself
register(VPTShallow)
register(VPTDeep)
