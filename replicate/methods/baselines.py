"""Linear probe and full fine-tuning: no extra tokens, the same wrapper and head."""
from __future__ import annotations


from . import register
from .base import PromptMethod
from .options import LinearOptions  # noqa: F401  (torch-free; re-exported)


class LinearProbe(PromptMethod):
    """Frozen backbone, a linear head on the pooled features (VPT's transfer type 'linear')."""
    name = "linear"
    Options = LinearOptions
    frozen_up_to_head = True
    throughput_family = "head"


class FullFinetune(PromptMethod):
    """Every backbone weight trains (VPT's 'end2end'); backbone dropouts active in training."""
    name = "finetune"
    Options = LinearOptions
    trains_backbone = True
    packable = False  # its runs each train their own backbone
    throughput_family = "full"


# the registry imports no implementation: each method registers itself
register(LinearProbe)
register(FullFinetune)
