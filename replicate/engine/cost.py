"""Counted costs of one training step: model FLOPs and autograd memory traffic.

Both are counted, not timed, so they hold on any machine: the model is built on the ``meta``
device (shapes only, no memory, no arithmetic) and one forward + backward runs under a
``TorchDispatchMode`` that sees every ATen operator:

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention;
  elementwise operators count 0), the counter the step benchmark uses; on the meta device SDPA
  runs as its explicit matmuls, so attention counts as in the benchmark's reference step
  (eager attention);
* memory traffic: for every operator that is not a view, the bytes of its tensor inputs and
  outputs (a tensor broadcast by stride 0 counts its stored elements only), split into the
  forward and the backward pass; plus the bytes autograd saves for backward (the
  ``saved_tensors_hooks`` of the forward, each storage once) and the backward graph's nodes.

``plan`` (``replicate/estimate.py``) prices runs with :func:`flops_per_image`; the step
benchmark reports :func:`step_traffic` per row (before and after the prompt-assembly change,
for example); ``engine/packed.py`` refuses a pack whose :func:`step_memory` would not fit the
device.  Memory and traffic are counted with SDPA as the GPU runs it (:func:`fused_attention`).
A meta-device count of a ViT-B/16 step takes well under a second.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .. import backbones, methods


def _stored_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches reading/writing ``t``: broadcast (stride-0) dims count once."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


class _Traffic(TorchDispatchMode):
    """Sum of input + output bytes of every non-view operator, per phase."""

    def __init__(self):
        super().__init__()
        self.phase = "forward"
        self.bytes: Counter = Counter()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        pure_view = any(r.alias_info is not None and not r.alias_info.is_write
                        for r in schema.returns)
        if not pure_view:
            ins = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.bytes[self.phase] += sum(_stored_bytes(t) for t in ins + outs)
            self.ops[self.phase] += 1
        return out


@dataclass
class StepTraffic:
    """Autograd-side costs of one training step (see the module docstring)."""
    forward_bytes: int
    backward_bytes: int
    saved_bytes: int
    backward_nodes: int
    node_kinds: Dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.node_kinds.items(),
                                                       key=lambda kv: -kv[1])[:4])
        return (f"forward {self.forward_bytes / 1e9:.2f} GB, backward {self.backward_bytes / 1e9:.2f}"
                f" GB, saved {self.saved_bytes / 1e9:.2f} GB, {self.backward_nodes} backward "
                f"nodes ({top})")


def backward_graph(root: torch.Tensor) -> Counter:
    """Node kinds of the backward graph behind ``root`` (each node once)."""
    seen, stack, kinds = set(), [root.grad_fn], Counter()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        kinds[type(fn).__name__] += 1
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return kinds


@contextlib.contextmanager
def _saved_bytes(acc: list) -> Iterator[None]:
    """Add to ``acc[0]`` the bytes autograd keeps for backward: each saved storage once (a
    saved view keeps its whole base alive), parameters not counted (they exist anyway)."""
    seen = set()

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if not isinstance(base, torch.nn.Parameter):
            if t.device.type == "meta":  # no storages on meta: one entry per base tensor
                key, nbytes = id(base), _stored_bytes(base)
            else:
                st = t.untyped_storage()
                key, nbytes = (st.data_ptr(), t.device), st.nbytes()
            if key not in seen:
                seen.add(key)
                acc[0] += nbytes
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def step_traffic(loss_fn: Callable[[], torch.Tensor]) -> StepTraffic:
    """Run ``loss_fn()`` (a forward returning a scalar loss) and its backward, counting."""
    mode, saved = _Traffic(), [0]
    with mode:
        with _saved_bytes(saved):
            loss = loss_fn()
        kinds = backward_graph(loss)
        mode.phase = "backward"
        loss.backward()
    return StepTraffic(mode.bytes["forward"], mode.bytes["backward"], saved[0],
                       sum(kinds.values()), dict(kinds))


# ------------------------------------------------------------------ FLOPs of a real shape
def meta_model(backbone: str, method: str, options: Optional[dict] = None,
               num_classes: int = 100) -> methods.PromptedModel:
    """The registered backbone + method on the meta device (no weights, no memory)."""
    entry = backbones.get(backbone)
    with torch.device("meta"):
        adapter = entry.adapter(entry.build(), attention="sdpa")
        return methods.build_model(adapter, method, dict(options or {}), num_classes,
                                   entry.default_pool)


def input_size(model: methods.PromptedModel) -> int:
    a = model.adapter  # both adapters carry timm's patch grid and patch size
    ps = a.patch_size[0] if isinstance(a.patch_size, (tuple, list)) else a.patch_size
    return int(a.grid_size[0]) * int(ps)


def count_flops(model: methods.PromptedModel, batch: int, train: bool = True) -> float:
    """Model FLOPs of one step of ``batch`` images: forward + backward when ``train`` (the
    method's trainable tensors get gradients, the frozen backbone's do not), else forward."""
    from torch.utils.flop_counter import FlopCounterMode

    dev = next(model.parameters()).device
    s = input_size(model)
    x = torch.zeros(batch, 3, s, s, device=dev)
    y = torch.zeros(batch, dtype=torch.long, device=dev)
    model.train(train)
    with FlopCounterMode(display=False) as counter:
        if train:
            loss = F.cross_entropy(model(x).float(), y)
            extra = model.method.extra_loss(y)
            if extra is not None:
                loss = loss + extra
            loss.backward()
        else:
            # grad mode stays on: the same forward ops (FLOPs), and torch >= 2.10's counter
            # (its module tracker) raises "Expected gradient function to be set" on a view of a
            # trainable tensor made under no_grad (a prompt's expand)
            model(x)
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """SDPA as the GPU runs it (the memory-efficient kernel: saves its output and log-sum-exp,
    not the attention matrix) also on the meta device, where PyTorch would pick the explicit
    math path; for memory and traffic counts of GPU steps."""
    real = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        if q.device.type != "meta" or dropout_p or is_causal:
            return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale)
        bias = None if attn_mask is None else attn_mask.expand(q.shape[0], q.shape[1],
                                                               q.shape[2], k.shape[2])
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, scale=scale)[0]

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


def step_memory(backbone: str, method: str, options: Optional[dict] = None,
                num_classes: int = 100, batch: int = 128) -> Dict[str, int]:
    """Bytes one fp32 training step of ``batch`` images holds on the device (fused attention),
    counted on the meta device: ``activations`` (what autograd saves for backward), ``frozen`` (backbone weights)
    and ``trainable`` (the method's tensors; the optimizer adds gradients and momentum)."""
    model = meta_model(backbone, method, options, num_classes)
    s = input_size(model)
    x = torch.zeros(batch, 3, s, s, device="meta")
    y = torch.zeros(batch, dtype=torch.long, device="meta")
    saved = [0]
    model.train(True)
    with _saved_bytes(saved), fused_attention():
        F.cross_entropy(model(x).float(), y)
    params = list(model.parameters())
    return {"activations": saved[0],
            "frozen": sum(p.numel() * p.element_size() for p in params if not p.requires_grad),
            "trainable": sum(p.numel() * p.element_size() for p in params if p.requires_grad)}


_FLOPS: Dict[Tuple, Tuple[float, float, float, float]] = {}


def _shape_key(options: Optional[dict]) -> str:
    """Method options that can change which matmuls run: float options (initial values,
    dropout rates, clamp bounds) never do, so configs differing only in them share a count."""
    return repr(sorted((k, v) for k, v in (options or {}).items() if not isinstance(v, float)))


def flops_per_image(backbone: str, method: str, options: Optional[dict] = None,
                    num_classes: int = 100) -> Tuple[float, float]:
    """(training-step FLOPs, evaluation-forward FLOPs) per image, counted on the meta device.

    Counted at batch 2 and at two head widths (2 and 4 classes): every counted operator is
    linear in the batch, and only the head depends on the class count, linearly, so the count
    for ``num_classes`` is exact (tests/test_plan.py checks it against a direct count).  Cached
    per architecture, method and shape-changing options."""
    entry = backbones.get(backbone)
    key = (entry.build, entry.adapter, entry.default_pool, method, _shape_key(options))
    if key not in _FLOPS:
        counts = []
        for c in (2, 4):
            model = meta_model(backbone, method, options, c)
            counts += [count_flops(model, 2, True) / 2, count_flops(model, 2, False) / 2]
        _FLOPS[key] = tuple(counts)
    t2, e2, t4, e4 = _FLOPS[key]
    return (t2 + (t4 - t2) * (num_classes - 2) / 2, e2 + (e4 - e2) * (num_classes - 2) / 2)


__all__ = ["StepTraffic", "step_traffic", "backward_graph", "meta_model", "count_flops",
           "step_memory", "fused_attention",
           "flops_per_image", "input_size"]
