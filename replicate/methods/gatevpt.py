"""GateVPT / Gated Prompt Tuning (Yoo et al., ICML 2023).

Follows ryongithub/GatedPromptTuning ``src/models/vit_prompt/vit_mae.py`` and ``vit_moco.py``
(shallow branch) and ``src/models/vit_backbones/vit_mae.py``:

* prompts are inserted once, after CLS, as in VPT-shallow (paper Sec. 4);
* one scalar gate logit per block except the last (GATE_NUM = 11 for ViT-B), initialised to
  ``-gate_init`` (the code's sign; the paper's Table 5 values are meant for it);
  after block i < num_gates the prompt slice becomes ``g*out + (1-g)*in``, g = sigmoid(logit);
  CLS and patch tokens are the block's normal output (paper Eq. 7, Algorithm 1);
* one learnable temperature per block (TEMP_NUM = 12) dividing the scaled attention logits of
  *all* tokens, initialised to 1 and clamped in place to [temp_min, temp_max] = [0.01, 10]
  before every forward (``reinit_temp``).

``gate=False, learn_temp=False`` is exactly VPT-shallow (paper Sec. 4.3); the two switches
give the paper's GATE / GATE+LT ablation (Fig. 6).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from . import register
from .base import join_stream, split_stream
from .options import GateVPTOptions  # noqa: F401  (torch-free; re-exported)
from .vpt import VPTShallow


class GateVPT(VPTShallow):
    name = "gatevpt"
    Options = GateVPTOptions

    def __init__(self, opts: GateVPTOptions, adapter, num_classes: int, default_pool: str = "cls"):
        super().__init__(opts, adapter, num_classes, default_pool)
        L = adapter.num_blocks
        n = L - 1 if opts.num_gates < 0 else opts.num_gates
        if not 0 <= n <= L:
            raise ValueError(f"num_gates must be in [0, {L}] or -1, got {opts.num_gates}")
        self.num_gates = n if opts.gate else 0
        if opts.gate:
            self.gate_logit = nn.Parameter(torch.full((n,), -float(opts.gate_init)))
        if opts.learn_temp:
            if not 0 < opts.temp_min <= opts.temp_init <= opts.temp_max:
                raise ValueError("need 0 < temp_min <= temp_init <= temp_max")
            self.temp = nn.Parameter(torch.full((L,), float(opts.temp_init)))

    def prepare_step(self) -> None:
        if self.opts.learn_temp:
            with torch.no_grad():
                self.temp.clamp_(self.opts.temp_min, self.opts.temp_max)

    def temperature(self, i: int) -> Optional[torch.Tensor]:
        return self.temp[i] if self.opts.learn_temp else None

    def gate_value(self, i: int) -> Optional[torch.Tensor]:
        return self.gate_logit[i].sigmoid() if i < self.num_gates else None

    def combine_prompts(self, i: int, p_in: torch.Tensor, p_out: torch.Tensor) -> torch.Tensor:
        """The prompts block i+1 receives, from block i's input and output prompts."""
        g = self.gate_value(i)
        return p_out if g is None else g * p_out + (1 - g) * p_in

    def after_block(self, i: int, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        if i >= self.num_gates:
            # ungated block: nothing to rebuild (tested on the index, not with `p is p_out`:
            # a tensor identity test breaks the torch.compile graph at every block, torch 2.1)
            return x_out
        cls, p_out, rest = split_stream(x_out, self.num_extra)  # views; one backward node
        p = self.combine_prompts(i, self.prompt_slice(x_in), p_out)
        return join_stream(cls, p, rest)


# the registry imports no implementation: each method registers itself
register(GateVPT)
