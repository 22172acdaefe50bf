"""Every built-in method's options: the dataclasses a config's ``method = dict(type=..., ...)``
is validated against when it loads, with their defaults and allowed values.

Torch-free (config loading and planning import it; the methods' torch code does not load):
each method class in ``vpt.py``, ``gatevpt.py``, ``lspt.py``, ``vptm.py`` and ``baselines.py``
points its ``Options`` at one of these.  A method defined outside the package keeps its options
in its own module and registers itself (``replicate.methods.register``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class LinearOptions(BaseOptions):
    pass


# --------------------------------------------------------------------------- VPT
@dataclass(frozen=True)
class VPTOptions(BaseOptions):
    #: prompt tokens (per block for VPT-deep)
    num_prompts: int = 10
    #: dropout on prompt embeddings (VPT default 0.0; GateVPT's run.sh and VPT's released
    #: hyper-parameters use 0.1)
    prompt_dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        check_range("num_prompts", self.num_prompts, self.num_prompts >= 1, "an integer >= 1")
        check_range("prompt_dropout", self.prompt_dropout, 0 <= self.prompt_dropout < 1,
                    "in [0, 1)")


# --------------------------------------------------------------------------- GateVPT
@dataclass(frozen=True)
class GateVPTOptions(VPTOptions):
    #: prompt tokens (FGVC/ADE20K: 100; VTAB-1k: per task, paper Table 5)
    num_prompts: int = 100
    #: learnable per-block gates (the paper's GATE)
    gate: bool = True
    #: initial gate logit is -gate_init (official code); Table 5 "GATE INIT."
    gate_init: float = 10.0
    #: number of gated blocks, counted from the first; -1 = all but the last (official GATE_NUM=11)
    num_gates: int = -1
    #: learnable per-block attention temperature (the paper's LT / adaptive attention shaping)
    learn_temp: bool = True
    #: initial temperature (official: ones)
    temp_init: float = 1.0
    #: clamp range applied before every forward (official TEMP_MIN / TEMP_MAX)
    temp_min: float = 0.01
    temp_max: float = 10.0

    def validate(self) -> None:
        super().validate()
        check_range("num_gates", self.num_gates, self.num_gates >= -1,
                    "-1 (all blocks but the last) or a number of blocks >= 0")
        check_range("gate_init", self.gate_init, math.isfinite(self.gate_init), "a finite number")
        if self.learn_temp:
            check_range("temp_init", (self.temp_min, self.temp_init, self.temp_max),
                        0 < self.temp_min <= self.temp_init <= self.temp_max,
                        "0 < temp_min <= temp_init <= temp_max (the values shown are "
                        "temp_min, temp_init, temp_max)")


# --------------------------------------------------------------------------- LSPT
#: ``spatial_tokens`` values -> which tokens of a block's output are averaged
SPATIAL_TOKENS = {
    "patches": "the N patch tokens only (no CLS, no prompts): 'average embedding of patch tokens'",
    "patches_cls": "CLS and the N patch tokens (no prompts)",
    "all": "every token: CLS, prompts and patches",
}
#: ``spatial_where`` values -> where the mean enters relative to GateVPT's gate
SPATIAL_WHERE = {
    "before_gate": "added to the block's output prompts, then gated: g*(P_out+m) + (1-g)*P_in",
    "after_gate": "added after the gate: g*P_out + (1-g)*P_in + m",
}
SPATIAL_SCALES = ("none", "scalar", "channel")
LSTM_INITS = ("zeros", "prompts")
CODED_BLOCKS = ("gates", "all")
COUPLINGS = ("gate_then_lstm", "lstm_replaces_gate")
LSTM_OUTPUTS = ("replace", "residual")


@dataclass(frozen=True)
class LSPTOptions(GateVPTOptions):
    """GateVPT's options (a superset, so an LSPT config can inherit a GateVPT config) + LSPT's."""
    # ---- spatial prompt coding (CSPC / GSPC)
    #: add the mean token embedding of each coded block's output to the prompts
    spatial: bool = True
    #: which output tokens are averaged, one of SPATIAL_TOKENS [CHOICE; default: reviewer 1's quote]
    spatial_tokens: str = "patches"
    #: where the mean is added relative to GateVPT's gate, one of SPATIAL_WHERE [CHOICE]
    spatial_where: str = "before_gate"
    #: learned scale s on the mean: none (s = 1) | scalar (one per coded block) | channel (a
    #: D-vector per coded block) [CHOICE; no source mentions one]
    spatial_scale: str = "none"
    #: initial value of the learned scale (ignored when spatial_scale='none')
    spatial_scale_init: float = 1.0
    # ---- long-term prompt coding (LPC)
    #: run the shared LSTM over the block index
    lstm: bool = True
    #: LSTM hidden size H; -1 = the embedding width D.  When H != D a Linear(H, D) maps h back
    #: to prompts [CHOICE; the paper's H is unknown]
    lstm_hidden: int = -1
    #: initial state: zeros (h0 = c0 = 0) | prompts (h0 = the inserted prompts P^0, c0 = 0;
    #: needs H = D) [CHOICE]
    lstm_init: str = "zeros"
    #: blocks after which spatial coding and the LSTM act: gates (the blocks GateVPT gates,
    #: num_gates; default 1..L-1) | all (every block, the last one's prompts then feed the head)
    coded_blocks: str = "gates"
    #: gate_then_lstm (A: GateVPT gate, then LSTM) | lstm_replaces_gate (B: needs gate=False)
    coupling: str = "gate_then_lstm"
    #: replace (next prompts = W_out h, the default reading) | residual (next prompts = u + W_out h)
    #: [CHOICE, not in any source; a hedge for the reconstruction]
    lstm_output: str = "replace"

    def validate(self) -> None:
        super().validate()
        for key, allowed in (("spatial_tokens", tuple(SPATIAL_TOKENS)),
                             ("spatial_where", tuple(SPATIAL_WHERE)),
                             ("spatial_scale", SPATIAL_SCALES), ("lstm_init", LSTM_INITS),
                             ("coded_blocks", CODED_BLOCKS), ("coupling", COUPLINGS),
                             ("lstm_output", LSTM_OUTPUTS)):
            check_choice(key, getattr(self, key), allowed)
        check_range("lstm_hidden", self.lstm_hidden,
                    self.lstm_hidden == -1 or self.lstm_hidden >= 1, "-1 (= D) or >= 1")
        if self.coupling == "lstm_replaces_gate":  # variant B has no scalar gate, needs the LSTM
            check_range("gate", self.gate, not self.gate,
                        "False with coupling='lstm_replaces_gate' (variant B has no scalar "
                        "gate): set gate=False")
            check_range("lstm", self.lstm, self.lstm,
                        "True with coupling='lstm_replaces_gate': set lstm=True")


# --------------------------------------------------------------------------- VPTM
TOKEN_ORDERS = {
    "prompts_mask": "[CLS, prompts, MASK, patches] (default; VPT places prompts after CLS)",
    "mask_prompts": "[CLS, MASK, prompts, patches]",
    "mask_last": "[CLS, prompts, patches, MASK] (MASK appended after the patch grid)",
}
VERBALIZER_INPUTS = {
    "logits": "lm_head logits of the [MASK] token over the visual-token vocabulary (default)",
    "hidden": "the [MASK] hidden state after the final norm (ProtoVerb's input)",
}


@dataclass(frozen=True)
class VPTMOptions(BaseOptions):
    #: prompt tokens per prompted block (0 = only the [MASK] token; VPT grid {1,5,10,50,100})
    num_prompts: int = 10
    #: VPT-deep prompts (fresh prompts replace the prompt slice before each block) [CHOICE:
    #: deep]; False = VPT-shallow (prompts only at the input)
    deep: bool = True
    #: with deep: number of blocks, from the first, that get fresh prompts (-1 = all; VPT's
    #: "prompt depth"); later blocks carry the previous prompt outputs on
    prompt_depth: int = -1
    #: where prompts and [MASK] go, one of TOKEN_ORDERS (the "prompt location" axis).  With
    #: BEiT v2's relative bias and extra_bias cls|zero the order does not change the output
    #: (attention is permutation-equivariant; tests/test_vptm.py shows it)
    token_order: str = "prompts_mask"
    #: relative-position bias entries of prompts and [MASK] (no grid cell): 'cls' = the CLS
    #: entries (global tokens) [CHOICE] | 'zero'
    extra_bias: str = "cls"
    #: verbalizer input, one of VERBALIZER_INPUTS [CHOICE: logits]
    verbalizer_input: str = "logits"
    #: softmax over the vocabulary before the projection (verbalizer_input='logits' only)
    logits_softmax: bool = False
    #: prototype dimension D_p (ProtoVerb mid_dim default 64; ablated in the paper)
    proto_dim: int = 64
    #: cosine-similarity temperature tau (CE over cos/tau) [CHOICE 0.1; ProtoVerb's loss uses 1]
    tau: float = 0.1
    #: learn tau (parametrised as log tau)
    learn_tau: bool = False
    #: weight lambda of ProtoVerb's instance-instance contrastive term (0 = off)
    instance_weight: float = 0.0
    #: dropout on the prompt embeddings wherever they are inserted (as VPT; not on [MASK])
    prompt_dropout: float = 0.1

    def validate(self) -> None:
        super().validate()
        check_range("num_prompts", self.num_prompts, self.num_prompts >= 0, "an integer >= 0")
        for key, allowed in (("token_order", tuple(TOKEN_ORDERS)), ("extra_bias", ("cls", "zero")),
                             ("verbalizer_input", tuple(VERBALIZER_INPUTS))):
            check_choice(key, getattr(self, key), allowed)
        check_range("logits_softmax", self.logits_softmax,
                    not self.logits_softmax or self.verbalizer_input == "logits",
                    "False unless verbalizer_input='logits'")
        check_range("proto_dim", self.proto_dim, self.proto_dim >= 1, "an integer >= 1")
        check_range("tau", self.tau, self.tau > 0, "> 0")
        check_range("instance_weight", self.instance_weight, self.instance_weight >= 0, ">= 0")
        check_range("prompt_dropout", self.prompt_dropout, 0 <= self.prompt_dropout < 1,
                    "in [0, 1)")
        check_range("prompt_depth", self.prompt_depth,
                    self.prompt_depth == -1 or (self.deep and self.prompt_depth >= 1),
                    "-1, or >= 1 together with deep=True")
        check_range("pool", self.pool, self.pool == "auto",
                    "'auto': VPTM reads the [MASK] token, 'pool' does not apply")
        check_range("head_init", self.head_init, self.head_init == "vpt",
                    "'vpt' (the default): VPTM's head is the prototypical verbalizer")


#: built-in method name -> its options class (the method classes register the same ones)
OPTIONS = {"linear": LinearOptions, "finetune": LinearOptions, "vpt_shallow": VPTOptions,
           "vpt_deep": VPTOptions, "gatevpt": GateVPTOptions, "lspt": LSPTOptions,
           "vptm": VPTMOptions}
