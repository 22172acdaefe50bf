"""Autograd traffic columns of the step benchmark (``backward_gb``, ``saved_gib``,
``backward_nodes``): one fp32 training step counted on the meta device (``replicate/engine/
cost.py``), for the row's architecture, method, attention kernel and prompt assembly.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

_TRAFFIC: Dict[tuple, dict] = {}


def traffic_columns(backbone: str, method: str, classes: int, batch: int, attention: str,
                    sliced: bool) -> dict:
    """Autograd traffic of one fp32 training step, counted on the meta device (engine/cost.py):
    the same architecture and method, the row's attention kernel and prompt assembly."""
    from replicate.engine import cost

    key = (backbone, method, classes, batch, attention, sliced)
    if key not in _TRAFFIC:
        model = cost.meta_model(backbone, method, {}, classes)
        model.adapter.attention = attention
        if sliced:
            from benchmarks.legacy_assembly import old_assembly
            model = old_assembly(model)
        s = cost.input_size(model)
        x = torch.zeros(batch, 3, s, s, device="meta")
        y = torch.zeros(batch, dtype=torch.long, device="meta")

        def step():
            model.train(True)
            return F.cross_entropy(model(x), y)

        with cost.fused_attention():
            t = cost.step_traffic(step)
        _TRAFFIC[key] = {"backward_gb": t.backward_bytes / 1e9,
                         "saved_gib": t.saved_bytes / 2 ** 30, "backward_nodes": t.backward_nodes}
    return dict(_TRAFFIC[key])
