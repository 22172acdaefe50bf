"""The prompt assembly of GateVPT, VPT-deep and LSPT before issue 16 (slices + ``torch.cat``),
frozen here as the reference that ``tests/test_prompt_assembly.py`` compares the current assembly
with (bit-identical outputs and gradients) and that ``benchmarks/step.py`` times and counts
(rows ``fast_sliced``: the autograd traffic before the change).  Never used for training.
"""
from __future__ import annotations

import copy
import types

import torch

from replicate import methods


def _old_insert(self, x):
    p = self.prompt_dropout(self.prompt_embeddings.expand(x.shape[0], -1, -1))
    return torch.cat([x[:, :1], p.to(x.dtype), x[:, 1:]], dim=1)


def _old_deep_before_block(self, i, x):
    if i == 0:
        return x
    p = self.prompt_dropout(self.deep_prompt_embeddings[i - 1].expand(x.shape[0], -1, -1))
    return torch.cat([x[:, :1], p.to(x.dtype), x[:, 1 + self.num_extra:]], dim=1)


def _old_gate_after_block(self, i, x_in, x_out):
    if i >= self.num_gates:
        return x_out
    p_out = self.prompt_slice(x_out)
    p = self.combine_prompts(i, self.prompt_slice(x_in), p_out)
    return torch.cat([x_out[:, :1], p, x_out[:, 1 + self.num_extra:]], dim=1)


def _old_spatial_mean(self, x_out, parts=None):
    p = self.num_extra
    how = self.opts.spatial_tokens
    if how == "patches":
        return x_out[:, 1 + p:].mean(dim=1, keepdim=True)
    if how == "patches_cls":
        return torch.cat([x_out[:, :1], x_out[:, 1 + p:]], dim=1).mean(dim=1, keepdim=True)
    return x_out.mean(dim=1, keepdim=True)


def _old_lspt_after_block(self, i, x_in, x_out):
    if not self.is_coded(i):
        return _old_gate_after_block(self, i, x_in, x_out)
    o = self.opts
    gated = o.coupling != "lstm_replaces_gate" and i < self.num_gates
    if not (o.spatial or o.lstm or gated):
        return x_out
    p_out = self.prompt_slice(x_out)
    p = self.code_prompts(i, x_out, self.prompt_slice(x_in), p_out)
    return torch.cat([x_out[:, :1], p.to(x_out.dtype), x_out[:, 1 + self.num_extra:]], dim=1)


def old_assembly(model: methods.PromptedModel) -> methods.PromptedModel:
    """A copy of ``model`` whose method assembles prompts the old way."""
    old = copy.deepcopy(model)
    m = old.method
    bind = lambda f: types.MethodType(f, m)  # noqa: E731
    m.insert = bind(_old_insert)
    if isinstance(m, methods.VPTDeep):
        m.before_block = bind(_old_deep_before_block)
    if isinstance(m, methods.LSPT):
        m.after_block = bind(_old_lspt_after_block)
        m.spatial_mean = bind(_old_spatial_mean)
    elif isinstance(m, methods.GateVPT):
        m.after_block = bind(_old_gate_after_block)
    return old


__all__ = ["old_assembly"]
