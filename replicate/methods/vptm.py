"""VPTM: visual prompt learning as masked visual token modeling (Liao et al., arXiv 2303.04998;
Artificial Intelligence 348, 2025).  RECONSTRUCTION: the paper body is in none of the available
sources; every default below is a choice, listed with its reason in papers/vptm/README.md
("Every reconstructed choice").

Forward pass (on a frozen BEiT v2 MIM backbone, :mod:`replicate.backbones.beit`):

    x   = [CLS, P, [MASK], patches]          # P: learnable prompts; [MASK] = the pre-trained
                                             #    mask_token (frozen); order: ``token_order``
    H   = norm(Blocks(x))                    # VPT-deep: fresh prompts before every block
    z   = lm_head(H[:, mask])                # predicted visual token logits (frozen MIM head)
    v   = W_v z                              # prototypical verbalizer (ProtoVerb, Cui et al.
    s_k = cos(v, C_k) / tau                  #   2022, OpenPrompt prototypical_verbalizer.py:
    y^  = argmax_k s_k                       #   Linear(.., D_p, bias=False), xavier prototypes)
    L   = CE(s, y) [+ lambda * L_ii]         # L_ii: ProtoVerb's instance-instance term

Trainable: prompts, W_v, prototypes (and tau if ``learn_tau``).  Frozen: the whole backbone,
including ``mask_token`` and ``lm_head`` (task consistency with pre-training).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .base import PromptMethod, prompt_init_bound
from .options import TOKEN_ORDERS, VERBALIZER_INPUTS, VPTMOptions  # noqa: F401  (re-exported)

def cosine_logits(v: torch.Tensor, prototypes: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """cos(v_b, C_k) / tau, (B, K), in float32."""
    return F.normalize(v.float(), dim=-1) @ F.normalize(prototypes.float(), dim=-1).T / tau


def instance_contrastive_loss(v: torch.Tensor, targets: torch.Tensor,
                              tau: torch.Tensor) -> torch.Tensor:
    """ProtoVerb's instance-instance term (OpenPrompt ``pcl_loss``) on one batch: for every
    ordered pair (a, p) of different samples with the same label,
    -log(e^{s_ap} / (e^{s_ap} + sum_{n: y_n != y_a} e^{s_an})), s = cos / tau; mean over pairs.
    [CHOICE] ProtoVerb uses tau = 1 and keeps the self pairs; here tau is the verbalizer's and
    self pairs are left out.  0 when the batch has no positive pair."""
    z = F.normalize(v.float(), dim=-1)
    s = z @ z.T / tau
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=s.device)
    pos = same & ~eye
    if not bool(pos.any()):
        return s.sum() * 0.0
    neg_lse = torch.logsumexp(s.masked_fill(same, float("-inf")), dim=1, keepdim=True)
    pair = torch.logaddexp(s, neg_lse) - s  # -log(e^s / (e^s + sum_neg))
    return pair[pos].mean()


class PrototypicalVerbalizer(nn.Module):
    """Linear(in_dim -> D_p, no bias) + one learnable prototype per class; logits = cos / tau.

    With ``keep_embedding`` it keeps the last training batch's projected embeddings for the
    instance-instance term (read and cleared by :meth:`VPTM.extra_loss`)."""

    def __init__(self, in_dim: int, num_classes: int, proto_dim: int, tau: float,
                 learn_tau: bool, keep_embedding: bool = False):
        super().__init__()
        self.proj = nn.Linear(in_dim, proto_dim, bias=False)
        self.prototypes = nn.Parameter(torch.empty(num_classes, proto_dim))
        nn.init.xavier_uniform_(self.prototypes)  # as ProtoVerb
        log_tau = torch.tensor(math.log(tau))
        if learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        self.keep_embedding = keep_embedding
        self.last_embedding: Optional[torch.Tensor] = None

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dev = z.device.type  # cosines and 1/tau in float32, also under bf16 autocast
        ctx = torch.autocast(dev, enabled=False) if dev in ("cuda", "cpu") else nullcontext()
        with ctx:
            v = self.proj(z.float())
            if self.training and self.keep_embedding:
                self.last_embedding = v
            return cosine_logits(v, self.prototypes, self.tau)


class VPTM(PromptMethod):
    name = "vptm"
    Options = VPTMOptions

    def __init__(self, opts: VPTMOptions, adapter, num_classes: int, default_pool: str = "cls"):
        for attr in ("mask_token", "lm_head", "set_extra_bias"):
            if not hasattr(adapter, attr):
                raise ValueError("VPTM needs a BEiT v2 MIM backbone with mask_token and lm_head "
                                 "(e.g. beitv2_base_patch16_224.pt1k); "
                                 f"{type(adapter).__name__} has no {attr}")
        super().__init__(opts, adapter, num_classes, default_pool)
        # a plain reference (not a submodule): mask_token stays a frozen backbone parameter
        object.__setattr__(self, "_adapter", adapter)
        adapter.set_extra_bias(opts.extra_bias)
        m, D, L = opts.num_prompts, adapter.embed_dim, adapter.num_blocks
        depth = 1 if not opts.deep else (L if opts.prompt_depth == -1 else opts.prompt_depth)
        if depth > L:
            raise ValueError(f"prompt_depth {opts.prompt_depth} > {L} blocks")
        self.prompt_depth = depth if m > 0 else 0
        self.num_extra = m + 1 if opts.token_order != "mask_last" else m
        self.prompt_start = 2 if opts.token_order == "mask_prompts" else 1
        bound = prompt_init_bound(adapter)
        self.prompt_embeddings = nn.Parameter(torch.empty(1, m, D))
        nn.init.uniform_(self.prompt_embeddings, -bound, bound)
        if self.prompt_depth > 1:
            self.deep_prompt_embeddings = nn.Parameter(torch.empty(self.prompt_depth - 1, m, D))
            nn.init.uniform_(self.deep_prompt_embeddings, -bound, bound)
        self.prompt_dropout = nn.Dropout(opts.prompt_dropout)

    # ------------------------------------------------------------------ hooks
    def build_head(self, adapter, num_classes: int) -> nn.Module:
        o = self.opts
        logits = o.verbalizer_input == "logits"
        in_dim = adapter.lm_head.out_features if logits else adapter.embed_dim
        return PrototypicalVerbalizer(in_dim, num_classes, o.proto_dim, o.tau, o.learn_tau,
                                      keep_embedding=o.instance_weight > 0)

    def _prompts(self, p: torch.Tensor, B: int, dtype: torch.dtype) -> torch.Tensor:
        return self.prompt_dropout(p.expand(B, -1, -1)).to(dtype)

    def insert(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        p = self._prompts(self.prompt_embeddings, B, x.dtype)
        mask = self._adapter.mask_token.expand(B, -1, -1).to(x.dtype)
        cls, patches = x[:, :1], x[:, 1:]
        order = self.opts.token_order
        if order == "prompts_mask":
            return torch.cat([cls, p, mask, patches], dim=1)
        if order == "mask_prompts":
            return torch.cat([cls, mask, p, patches], dim=1)
        return torch.cat([cls, p, patches, mask], dim=1)

    def before_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == 0 or i >= self.prompt_depth:
            return x
        p = self._prompts(self.deep_prompt_embeddings[i - 1][None], x.shape[0], x.dtype)
        s, m = self.prompt_start, self.opts.num_prompts
        return torch.cat([x[:, :s], p, x[:, s + m:]], dim=1)

    def mask_index(self, seq_len: int) -> int:
        order = self.opts.token_order
        if order == "prompts_mask":
            return 1 + self.opts.num_prompts
        return 1 if order == "mask_prompts" else seq_len - 1

    def features(self, adapter, x: torch.Tensor) -> torch.Tensor:
        h = adapter.final_norm(x[:, self.mask_index(x.shape[1])])  # LayerNorm is per token
        if self.opts.verbalizer_input == "hidden":
            return h
        z = adapter.lm_head(h)
        return z.softmax(dim=-1) if self.opts.logits_softmax else z

    def extra_loss(self, targets: torch.Tensor) -> Optional[torch.Tensor]:
        if self.opts.instance_weight <= 0 or not self.training:
            return None
        v, self.head.last_embedding = self.head.last_embedding, None
        if v is None or v.shape[0] != targets.shape[0]:
            raise RuntimeError("VPTM.extra_loss needs the embeddings of the last training "
                               "forward on this batch")
        return self.opts.instance_weight * instance_contrastive_loss(v, targets, self.head.tau)


# the registry imports no implementation: each method registers itself
register(VPTM)
