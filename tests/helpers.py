"""Shared test utilities: fake checkpoints in the real key layouts, the one tiny experiment
(:data:`TINY_EXPERIMENT`, as a dict, an Experiment or a config file's text: :func:`tiny_dict`,
:func:`tiny_from_dict`, :func:`tiny_config_text`; :func:`tiny_experiment` is the engine tests'
variant), and the paper folders' generators and config files.

Every builder here writes the layout of the real release file (no weights are ever downloaded):

* ``mae``            ``mae_pretrain_vit_base.pth``: ``{'model': encoder state dict}`` (timm names,
                     no head, no decoder).
* ``mocov3``         ``vit-b-300ep.pth.tar`` (MoCo v3 main_moco.py ``save_checkpoint``):
                     ``{'epoch', 'arch', 'state_dict', 'optimizer', 'scaler'}`` with
                     ``module.base_encoder.*`` (encoder + projection MLP ``head.{0,1,3,4,6,7}``,
                     BN layers with running stats, the last BN without affine),
                     ``module.momentum_encoder.*`` (same) and ``module.predictor.{0,1,3,4}``.
* ``mocov3_linear``  ``linear-vit-b-300ep.pth.tar`` (MoCo v3 main_lincls.py): ``{'epoch', 'arch',
                     'state_dict': {'module.<timm name>', 'module.head.weight/bias'}, 'best_acc1',
                     'optimizer'}``.
* ``sup_npz``        Google ``ViT-B_16.npz`` (ImageNet-21k): flat ``name -> array`` with
                     ``embedding/kernel`` HWIO, ``cls``, ``Transformer/posembed_input/...``,
                     ``Transformer/encoderblock_i/...`` (q/k/v kernels (D, H, hd), out kernel
                     (H, hd, D)), ``Transformer/encoder_norm``, ``pre_logits/*``, ``head/*``.
* ``timm``           a plain timm ``state_dict()`` including its classifier head.

Import as ``from tests.helpers import ...``.  Keep these names stable: other test files use them.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from replicate import backbones

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

#: name prefix of the tiny test/demo backbones
TINY_PREFIX = "vit_micro_patch8_32."


# ------------------------------------------------------------------ registry views
def tiny_names() -> list:
    return [n for n in backbones.registered() if backbones.get(n).tiny]


def full_names() -> list:
    """The real (ViT-B/16) backbones: not tiny, not the micro pre-trained SMOKE backbones made
    locally (replicate/micro; tests/test_learning.py covers those)."""
    return [n for n in backbones.registered()
            if not backbones.get(n).tiny and not backbones.get(n).extra.get("micro")]


def tiny_name_for_source(source: str) -> str:
    """The tiny registered backbone whose checkpoint layout is ``source``."""
    names = [n for n in tiny_names() if backbones.get(n).source == source]
    if not names:
        raise LookupError(f"no tiny backbone with source '{source}': register one in "
                          "replicate/backbones/zoo.py so its converter is tested")
    return names[0]


def meta_model(name: str) -> nn.Module:
    """The registered architecture on the meta device: shapes without memory or init time."""
    with torch.device("meta"):
        return backbones.get(name).build()


def num_heads(model: nn.Module) -> int:
    return model.blocks[0].attn.num_heads


def random_state_dict(name: str, seed: int = 0) -> StateDict:
    """A timm state dict of backbone ``name`` with random, distinct values (norm weights too,
    so a converter that drops or swaps a tensor cannot go unnoticed)."""
    torch.manual_seed(seed)
    model = backbones.get(name).build()
    g = torch.Generator().manual_seed(seed + 1)
    return {k: v.detach() + 0.05 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}


def zeros_state_dict(name: str, device: str = "meta") -> StateDict:
    """Zero tensors of the real shapes (meta by default: no memory)."""
    return {k: torch.zeros(v.shape, device=device) for k, v in meta_model(name).state_dict().items()}


# ------------------------------------------------------------------ layouts (no file I/O)
def _mlp_with_bn(prefix: str, dims: list, last_bn_affine: bool, like: Tensor) -> StateDict:
    """MoCo v3 ``_build_mlp``: Linear(no bias) [BN ReLU] ... Linear, BN(affine=False) last.
    Module indices: linear 3*l, BN 3*l+1 (ReLU 3*l+2 has no tensors)."""
    out: StateDict = {}
    nl = len(dims) - 1
    for l in range(nl):
        d_in, d_out = dims[l], dims[l + 1]
        out[f"{prefix}{3 * l}.weight"] = torch.zeros(d_out, d_in, device=like.device)
        bn = f"{prefix}{3 * l + 1}."
        if l < nl - 1 or last_bn_affine:
            out[bn + "weight"] = torch.ones(d_out, device=like.device)
            out[bn + "bias"] = torch.zeros(d_out, device=like.device)
        out[bn + "running_mean"] = torch.zeros(d_out, device=like.device)
        out[bn + "running_var"] = torch.ones(d_out, device=like.device)
        out[bn + "num_batches_tracked"] = torch.zeros((), dtype=torch.long, device=like.device)
    return out


def mae_layout(sd: StateDict) -> dict:
    return {"model": dict(sd)}


def mocov3_pretrain_layout(sd: StateDict, mlp_dim: Optional[int] = None,
                           out_dim: Optional[int] = None) -> dict:
    """ViT-B real sizes: projection 768 -> 4096 -> 4096 -> 256, predictor 256 -> 4096 -> 256."""
    like = sd["cls_token"]
    dim = like.shape[-1]
    mlp_dim = mlp_dim or (4096 if dim >= 384 else 2 * dim)
    out_dim = out_dim or (256 if dim >= 384 else dim // 2)
    head = _mlp_with_bn("head.", [dim, mlp_dim, mlp_dim, out_dim], False, like)
    enc = {**sd, **head}
    state = {}
    for k, v in enc.items():
        state[f"module.base_encoder.{k}"] = v
        # the momentum encoder holds different values: loading it instead would be caught
        mom = v + 1 if v.is_floating_point() and v.device.type != "meta" else v
        state[f"module.momentum_encoder.{k}"] = mom
    state.update({f"module.{k}": v for k, v in
                  _mlp_with_bn("predictor.", [out_dim, mlp_dim, out_dim], False, like).items()})
    return {"epoch": 300, "arch": "vit_base", "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0]}]},
            "scaler": {"scale": 65536.0}}


def mocov3_linear_layout(sd: StateDict, num_classes: int = 1000) -> dict:
    like = sd["cls_token"]
    dim = like.shape[-1]
    state = {f"module.{k}": v for k, v in sd.items()}
    state["module.head.weight"] = torch.zeros(num_classes, dim, device=like.device)
    state["module.head.bias"] = torch.zeros(num_classes, device=like.device)
    return {"epoch": 90, "arch": "vit_base", "state_dict": state, "best_acc1": 76.7,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}}


def timm_layout(sd: StateDict, num_classes: int = 1000) -> dict:
    like = sd["cls_token"]
    out = dict(sd)
    out["head.weight"] = torch.zeros(num_classes, like.shape[-1], device=like.device)
    out["head.bias"] = torch.zeros(num_classes, device=like.device)
    return out


def google_npz_layout(sd: StateDict, heads: int, num_classes: int = 21843) -> Dict[str, np.ndarray]:
    """Inverse of the ViT .npz conversion, written from the Flax naming of google-research/
    vision_transformer (models_vit.py); this is what ``imagenet21k/ViT-B_16.npz`` holds."""
    def a(t: Tensor) -> np.ndarray:
        if t.device.type == "meta":  # full-size layout checks: lazily allocated zeros
            return np.zeros(tuple(t.shape), np.float32)
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))

    D = sd["cls_token"].shape[-1]
    hd = D // heads
    w: Dict[str, np.ndarray] = {
        "embedding/kernel": a(sd["patch_embed.proj.weight"].permute(2, 3, 1, 0)),  # OIHW -> HWIO
        "embedding/bias": a(sd["patch_embed.proj.bias"]),
        "cls": a(sd["cls_token"]),
        "Transformer/posembed_input/pos_embedding": a(sd["pos_embed"]),
        "Transformer/encoder_norm/scale": a(sd["norm.weight"]),
        "Transformer/encoder_norm/bias": a(sd["norm.bias"]),
        "pre_logits/kernel": np.zeros((D, D), np.float32),
        "pre_logits/bias": np.zeros((D,), np.float32),
        "head/kernel": np.zeros((D, num_classes), np.float32),
        "head/bias": np.zeros((num_classes,), np.float32),
    }
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(n_blocks):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        m = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"] = a(sd[b + "norm1.weight"])
        w[p + "LayerNorm_0/bias"] = a(sd[b + "norm1.bias"])
        w[p + "LayerNorm_2/scale"] = a(sd[b + "norm2.weight"])
        w[p + "LayerNorm_2/bias"] = a(sd[b + "norm2.bias"])
        qkv_w = sd[b + "attn.qkv.weight"].chunk(3, dim=0)   # each (D_out, D_in)
        qkv_b = sd[b + "attn.qkv.bias"].chunk(3, dim=0)
        for n, wt, bt in zip(("query", "key", "value"), qkv_w, qkv_b):
            w[m + f"{n}/kernel"] = a(wt.T.reshape(D, heads, hd))
            w[m + f"{n}/bias"] = a(bt.reshape(heads, hd))
        w[m + "out/kernel"] = a(sd[b + "attn.proj.weight"].T.reshape(heads, hd, D))
        w[m + "out/bias"] = a(sd[b + "attn.proj.bias"])
        for j, name in ((0, "fc1"), (1, "fc2")):
            w[p + f"MlpBlock_3/Dense_{j}/kernel"] = a(sd[b + f"mlp.{name}.weight"].T)
            w[p + f"MlpBlock_3/Dense_{j}/bias"] = a(sd[b + f"mlp.{name}.bias"])
    return w


#: checkpoint source -> builder(state_dict, heads) -> the object the real file holds
LAYOUTS: Dict[str, Callable[[StateDict, int], object]] = {
    "mae": lambda sd, heads: mae_layout(sd),
    "mocov3": lambda sd, heads: mocov3_pretrain_layout(sd),
    "mocov3_linear": lambda sd, heads: mocov3_linear_layout(sd),
    "sup_npz": lambda sd, heads: google_npz_layout(sd, heads),
    "timm": lambda sd, heads: timm_layout(sd),
}

#: file name suffix of each source's release file (the reader picks np.load for .npz)
SUFFIX = {"mae": ".pth", "mocov3": ".pth.tar", "mocov3_linear": ".pth.tar", "sup_npz": ".npz",
          "timm": ".pth"}

#: keys each converter must drop on purpose (prefixes); everything else must load
DOCUMENTED_EXTRAS = {
    "mae": (),
    "mocov3": ("module.base_encoder.head.", "module.momentum_encoder.", "module.predictor."),
    "mocov3_linear": ("module.head.",),
    "sup_npz": ("pre_logits/", "head/"),
    "timm": ("head.",),
}


#: converter sources whose fake checkpoints live in their own test module (layout knowledge
#: stays with the backbone's author); the generic converter tests skip them
TESTED_ELSEWHERE = {"beitv2": "tests/test_beit_converter.py"}


def layout_names() -> list:
    """Tiny backbones whose source has a fake layout here (the generic converter tests)."""
    return [n for n in tiny_names() if backbones.get(n).source in LAYOUTS]


def layout_for(source: str, sd: StateDict, heads: int) -> object:
    if source not in LAYOUTS:
        raise LookupError(f"tests/helpers.py has no fake-checkpoint layout for source '{source}': "
                          "add one (the real file's key layout) to LAYOUTS")
    return LAYOUTS[source](sd, heads)


def write_checkpoint(obj: object, path: os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        with open(path, "wb") as f:   # np.savez(path) would append another .npz
            np.savez(f, **obj)
    else:
        torch.save(obj, path)
    return path


def write_fake_checkpoint(directory: os.PathLike, name: str, seed: int = 0,
                          source: Optional[str] = None):
    """Write a fake checkpoint for backbone ``name`` in the layout of ``source`` (default: the
    entry's own).  Returns ``(path, timm_state_dict_it_holds)``."""
    entry = backbones.get(name)
    source = source or entry.source
    sd = random_state_dict(name, seed)
    heads = num_heads(meta_model(name))
    path = Path(directory) / f"{name.replace('.', '_')}-{source}{SUFFIX.get(source, '.pth')}"
    write_checkpoint(layout_for(source, sd, heads), path)
    return path, sd


# ------------------------------------------------------------------ models
@functools.lru_cache(maxsize=4)
def built_module(name: str) -> nn.Module:
    """``get(name).build()`` with random init, built once per test session (ViT-B init is slow).
    Callers must not change its weights (deepcopy it first)."""
    torch.manual_seed(0)
    return backbones.get(name).build().eval()


def method_options(method: str, **extra) -> dict:
    """Small but valid options for any registered method: few prompt tokens keep ViT-B cheap."""
    import dataclasses

    from replicate import methods

    fields = {f.name for f in dataclasses.fields(methods.get(method).Options)}
    opts = {"num_prompts": 2} if "num_prompts" in fields else {}
    opts.update(extra)
    return opts


# ------------------------------------------------------------------ experiments
#: The one tiny experiment the tests build on: a smoke run of the random-init micro ViT on the
#: synthetic 32x32 shapes (paper 'demo'), seconds on one CPU.  The builders below return it as a
#: dict, an Experiment or a config file's text; a test states only what it changes.
TINY_EXPERIMENT: Dict[str, object] = {
    "paper": "demo", "smoke": True, "protocol": "synthetic-smoke",
    "backbone": {"name": TINY_PREFIX + "mae_test", "checkpoint": ""},
    "method": {"type": "linear"},
    "data": {"benchmark": "synthetic", "task": "shapes", "image_size": 32, "num_workers": 0},
    "optim": {"lr": 0.1, "batch_size": 250, "epochs": 2, "warmup_epochs": 0},
    "train": {"max_steps_per_epoch": 1},
}
#: GateVPT as the launch, sweep and CLI tests run it: 2 prompts, gates open (init 1.0)
TINY_GATEVPT = {"type": "gatevpt", "num_prompts": 2, "gate_init": 1.0}


def tiny_dict(name: str = "tiny", method=None, **sections) -> dict:
    """:data:`TINY_EXPERIMENT` named ``name``.  ``method``: a method type (its default options)
    or a full ``method`` dict.  Each of ``sections`` that is a dict updates that section's keys
    (``optim=dict(lr=0.5)`` keeps the other optim keys); any other value replaces the key."""
    import copy

    raw = copy.deepcopy(TINY_EXPERIMENT)
    raw = {"name": name, **raw}
    if method is not None:
        raw["method"] = {"type": method} if isinstance(method, str) else dict(method)
    for key, value in sections.items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = copy.deepcopy(value)
    return raw


def tiny_from_dict(name: str = "tiny", method=None, **sections):
    """:func:`tiny_dict` loaded and validated as a :class:`replicate.config.Experiment`."""
    from replicate import config

    return config.from_dict(tiny_dict(name, method, **sections), source=f"<tests: {name}>")


def _py(value) -> str:
    if isinstance(value, Mapping):
        return "dict(" + ", ".join(f"{k}={_py(v)}" for k, v in value.items()) + ")"
    return repr(value)


def tiny_config_text(name: str, method=None, **sections) -> str:
    """:func:`tiny_dict` as a config file's text (one ``key = value`` line per section, in the
    order of :data:`TINY_EXPERIMENT`; the default method is a linear probe): the smallest run
    the harness accepts."""
    raw = tiny_dict(name, method, **sections)
    return "\n" + "".join(f"{k} = {_py(v)}\n" for k, v in raw.items())


def tiny_experiment(method: str = "gatevpt", backbone: str = TINY_PREFIX + "mae_test",
                    checkpoint: Optional[str] = "", **changes):
    """The engine tests' variant of the tiny experiment: ``method`` with small valid options,
    an explicit SGD schedule (4 epochs of 2 steps), CPU fp32, images in memory, no augmentation.
    ``changes`` are dotted keys, e.g. ``**{'optim.lr': 0.5}``."""
    exp = tiny_from_dict(
        f"t-{method}", {"type": method, **method_options(method)},
        backbone={"name": backbone, "checkpoint": checkpoint},
        data={"root": "", "in_memory": True, "transform": "none"},
        optim={"optimizer": "sgd", "lr": 0.5, "batch_size": 32, "epochs": 4,
               "warmup_epochs": 1, "weight_decay": 1e-3},
        train={"device": "cpu", "precision": "fp32", "max_steps_per_epoch": 2})
    return exp.replace(**changes) if changes else exp


# ------------------------------------------------------------------ paper folders
REPO = Path(__file__).resolve().parents[1]


def generator_papers() -> list:
    """Keys of the discovered paper folders whose configs are generated (``make_configs.py``)."""
    from replicate import papers

    return [k for k, p in papers.discover().items() if (p.folder / "make_configs.py").is_file()]


@functools.lru_cache(maxsize=None)
def load_generator(paper: str):
    """``papers/<paper>/make_configs.py`` as a module (it is a script, not a package)."""
    import importlib.util

    path = REPO / "papers" / paper / "make_configs.py"
    spec = importlib.util.spec_from_file_location(f"make_configs_{paper}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def experiment_configs(paper: str) -> list:
    """The experiment config files of a paper (not ``_base_`` fragments, not the mmseg configs
    under ``ade20k/``, which tests/test_seg.py builds), sorted."""
    base = REPO / "papers" / paper / "configs"
    return sorted(p for p in base.rglob("*.py") if "_base_" not in p.relative_to(base).parts
                  and "ade20k" not in p.relative_to(base).parts)


def tensors_equal(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ float comparisons
def assert_close_to_scale(actual: Tensor, expected: Tensor, rel: float, msg: Optional[str] = None
                          ) -> None:
    """``|actual - expected| <= rel * (|expected| + max|expected|)`` elementwise.

    Rounding in a network (reassociated sums, a fused attention kernel, another SIMD width)
    grows with the magnitude of the values being summed, not with each output element, so
    an element near 0 gets an error sized to the whole tensor: the absolute floor is ``rel``
    times the tensor's largest magnitude and the bound holds however the values scale.
    """
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale, msg=msg)


def demo_paper(tmp_path: Path, monkeypatch, configs: Mapping[str, str], mode: str = "smoke",
               published: bool = True) -> Path:
    """A papers/ root under ``tmp_path`` holding one paper 'demo': ``configs/<mode>/<name>.py``
    for each (name, text) of ``configs`` and, with ``published``, a header-only published.csv;
    REPLICATE_PAPERS points at it (restored after the test).  Returns the paper folder."""
    from replicate.results.published import COLUMNS

    paper = tmp_path / "papers" / "demo"
    folder = paper / "configs" / mode
    folder.mkdir(parents=True)
    for name, text in configs.items():
        (folder / f"{name}.py").write_text(text)
    if published:
        (paper / "published.csv").write_text(",".join(COLUMNS) + "\n")
    monkeypatch.setenv("REPLICATE_PAPERS", str(paper.parent))
    return paper
