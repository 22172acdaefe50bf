"""LSPT: Long-term Spatial Prompt Tuning (Mo et al., arXiv 2402.17406) -- a RECONSTRUCTION.

The paper's method section is in none of the available sources (``papers/lspt/README.md``
lists them, with what each states).  What the sources state: LSPT builds on GateVPT (its Eqs. 1-3 equal
GaPT's Eqs. 4-5, OpenReview reviewer 3), adds "the average embedding of patch tokens to the
output prompts" (spatial coding, CSPC/GSPC; reviewer 1) and a single-layer LSTM shared across
blocks that carries prompt information from early blocks to late ones (long-term prompt
coding, LPC; reviewers 1 and 4, sciencestack summary).  Everything else here is a choice, exposed
as an option below, with the README's reading as the default (variant A):

    for a coded block l (default: the blocks GateVPT gates, 1..L-1):
        m   = mean of the block's output patch tokens                   (B, 1, D)   [spatial]
        u   = g_l * (P_out + s*m) + (1 - g_l) * P_in                     GateVPT's gate kept
        h,c = LSTMCell(u reshaped (B*p, D), (h, c))                      one LSTM, shared   [LPC]
        P   = W_out h  (W_out only when H != D)                          prompts of block l+1

State (h, c) is reset in :meth:`begin`, once per forward (per batch).  With ``spatial=False``
and ``lstm=False`` the forward is exactly GateVPT's (a test checks ``torch.equal``).

Variants (``coupling`` + the two switches):
    A  gate_then_lstm, spatial on,  lstm on   (default)
    B  lstm_replaces_gate (needs gate=False): u = P_out + s*m, no scalar gate
    C  spatial on,  lstm off  (ablation "CSPC only")
    D  spatial off, lstm on   (ablation "LPC only")
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from . import register
from .base import join_stream, split_stream
from .gatevpt import GateVPT
from .options import (CODED_BLOCKS, COUPLINGS, LSPTOptions, LSTM_INITS,  # noqa: F401
                      LSTM_OUTPUTS, SPATIAL_SCALES, SPATIAL_TOKENS, SPATIAL_WHERE)

def lstm_param_count(embed_dim: int, hidden: int) -> int:
    """Trainable parameters of the LPC module: LSTMCell(D, H) + Linear(H, D) when H != D.

    PyTorch's LSTMCell has two bias vectors: 4*(D*H + H*H + 2*H).
    """
    n = 4 * (embed_dim * hidden + hidden * hidden + 2 * hidden)
    if hidden != embed_dim:
        n += hidden * embed_dim + embed_dim
    return n


def _check(value: str, allowed, option: str) -> None:
    if value not in allowed:
        raise ValueError(f"LSPT option {option} must be one of {', '.join(allowed)}, got {value!r}")


class LSPT(GateVPT):
    name = "lspt"
    Options = LSPTOptions

    def __init__(self, opts: LSPTOptions, adapter, num_classes: int, default_pool: str = "cls"):
        super().__init__(opts, adapter, num_classes, default_pool)
        _check(opts.spatial_tokens, SPATIAL_TOKENS, "spatial_tokens")
        _check(opts.spatial_where, SPATIAL_WHERE, "spatial_where")
        _check(opts.spatial_scale, SPATIAL_SCALES, "spatial_scale")
        _check(opts.lstm_init, LSTM_INITS, "lstm_init")
        _check(opts.coded_blocks, CODED_BLOCKS, "coded_blocks")
        _check(opts.coupling, COUPLINGS, "coupling")
        _check(opts.lstm_output, LSTM_OUTPUTS, "lstm_output")
        if opts.coupling == "lstm_replaces_gate":
            if opts.gate:
                raise ValueError("coupling='lstm_replaces_gate' (variant B) has no scalar gate: "
                                 "set gate=False in the method options")
            if not opts.lstm:
                raise ValueError("coupling='lstm_replaces_gate' needs lstm=True")
        L, D = adapter.num_blocks, adapter.embed_dim
        # coded blocks always start at block 0 and are contiguous
        self.num_coded = L if opts.coded_blocks == "all" else (
            L - 1 if opts.num_gates < 0 else opts.num_gates)
        self.hidden = D if opts.lstm_hidden == -1 else opts.lstm_hidden
        if self.hidden < 1:
            raise ValueError(f"lstm_hidden must be >= 1 or -1 (= D), got {opts.lstm_hidden}")
        if opts.lstm and opts.lstm_init == "prompts" and self.hidden != D:
            raise ValueError(f"lstm_init='prompts' sets h0 to the prompts, so lstm_hidden must "
                             f"equal the embedding width {D} (or -1), got {self.hidden}")
        if opts.spatial and opts.spatial_scale != "none":
            shape = (self.num_coded, 1, 1, 1) if opts.spatial_scale == "scalar" else \
                (self.num_coded, 1, 1, D)
            self.spatial_scale = nn.Parameter(torch.full(shape, float(opts.spatial_scale_init)))
        if opts.lstm:
            # one cell shared by all coded blocks: the sequence axis is the block index
            self.lstm = nn.LSTMCell(D, self.hidden)
            self.lstm_proj = nn.Linear(self.hidden, D) if self.hidden != D else None
        self._state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    # ------------------------------------------------------------------ pieces
    def is_coded(self, i: int) -> bool:
        return i < self.num_coded

    def spatial_mean(self, x_out: torch.Tensor,
                     parts: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """Mean embedding (B, 1, D) of the tokens ``spatial_tokens`` selects from a block output.
        ``parts``: x_out's (CLS, patches) views when the caller has split it already (one
        backward node for the whole stream, ``base.split_stream``)."""
        how = self.opts.spatial_tokens
        if how == "all":
            return x_out.mean(dim=1, keepdim=True)
        cls, _, rest = split_stream(x_out, self.num_extra) if parts is None else \
            (parts[0], None, parts[1])
        if how == "patches":
            return rest.mean(dim=1, keepdim=True)
        return torch.cat([cls, rest], dim=1).mean(dim=1, keepdim=True)

    def _scaled_mean(self, i: int, x_out: torch.Tensor,
                     parts: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        m = self.spatial_mean(x_out, parts)
        if self.opts.spatial_scale != "none":
            m = self.spatial_scale[i].to(m.dtype) * m
        return m

    def begin(self, x: torch.Tensor) -> None:
        """Reset the LSTM state for this batch (h0, c0 of shape (B*p, H))."""
        if not self.opts.lstm:
            return
        B = x.shape[0]
        c0 = x.new_zeros(B * self.num_extra, self.hidden)
        if self.opts.lstm_init == "prompts":
            h0 = self.prompt_slice(x).reshape(B * self.num_extra, self.hidden)
        else:
            h0 = torch.zeros_like(c0)
        self._state = (h0, c0)

    def _lstm_step(self, u: torch.Tensor) -> torch.Tensor:
        if self._state is None:
            raise RuntimeError("LSPT: LSTM state missing; begin(x) must run before the blocks")
        B, p, D = u.shape
        h, c = self.lstm(u.reshape(B * p, D), self._state)
        self._state = (h, c)
        out = h if self.lstm_proj is None else self.lstm_proj(h)
        out = out.reshape(B, p, D).to(u.dtype)
        return u + out if self.opts.lstm_output == "residual" else out

    def code_prompts(self, i: int, x_out: torch.Tensor, p_in: torch.Tensor,
                     p_out: torch.Tensor,
                     parts: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """The prompts block i+1 receives after a coded block i (``parts``: x_out's (CLS,
        patches) views, see :meth:`spatial_mean`)."""
        o = self.opts
        m = self._scaled_mean(i, x_out, parts) if o.spatial else None
        if o.coupling == "lstm_replaces_gate":
            u = p_out if m is None else p_out + m
        else:
            before = m is not None and o.spatial_where == "before_gate"
            u = self.combine_prompts(i, p_in, p_out + m if before else p_out)
            if m is not None and not before:
                u = u + m
        if o.lstm:
            u = self._lstm_step(u)
            if i == self.num_coded - 1:
                self._state = None  # last step: drop the references to this batch's graph
        return u

    # ------------------------------------------------------------------ hook
    def after_block(self, i: int, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        if not self.is_coded(i):
            return super().after_block(i, x_in, x_out)
        o = self.opts
        gated = o.coupling != "lstm_replaces_gate" and i < self.num_gates
        if not (o.spatial or o.lstm or gated):
            # nothing coded and no gate: GateVPT's own shortcut, decided from the options (a
            # `p is p_out` identity test breaks the torch.compile graph at every block)
            return x_out
        cls, p_out, rest = split_stream(x_out, self.num_extra)  # views; one backward node
        p = self.code_prompts(i, x_out, self.prompt_slice(x_in), p_out, (cls, rest))
        return join_stream(cls, p.to(x_out.dtype), rest)


# the registry imports no implementation: each method registers itself
register(LSPT)
