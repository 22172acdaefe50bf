"""One converter per checkpoint source, each asserting the exact key sets.

A converter turns the file's own layout into timm's state-dict names and returns, with the
converted dict, the keys it drops on purpose (documented extras: MoCo v3's momentum encoder
and projection heads, the linear-probe ImageNet head, ViT-B_16's pre_logits and 21k head).
``load_into`` then requires the converted keys to equal the model's keys exactly and the
shapes to match; anything else is one :class:`CheckpointError` naming the file and what is
wrong.  Never a silent ``strict=False``.
"""
from __future__ import annotations

import os
import re
import zipfile
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn


from ..errors import CheckpointError  # noqa: E402,F401  (bottom layer; re-exported here)


Converted = Tuple[Dict[str, torch.Tensor], List[str]]


def not_found_message(path: str, entry) -> str:
    """A missing checkpoint: where to get it, and the other names it may be saved under."""
    msg = (f"checkpoint not found: {path}: download it from {entry.url} to that path, or fix "
           "backbone.checkpoint / CKPT_ROOT (`python -m replicate backbones` lists each file "
           "and its URL)")
    others = tuple(getattr(entry, "other_files", ()))
    if others and os.path.basename(path) == entry.default_file:
        folder = os.path.dirname(path) or "."
        msg += (f". The download is named {others[0]}: that name is found too, in the same "
                f"folder, or rename it: mv {os.path.join(folder, others[0])} {path}")
    return msg


def _read(path: str, url: str = "") -> object:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}: download it"
                              + (f" from {url}" if url else "") + " to that path, or fix "
                              "backbone.checkpoint / CKPT_ROOT (`python -m replicate backbones` "
                              "lists each file and its URL)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): download it again")
    try:
        if path.endswith(".npz"):
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(path)
        return _torch_load(path)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            Exception) as e:  # torch raises many types for truncated files
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(e).__name__}: {e}); the file is "
            "truncated or not a checkpoint: download it again and compare its size") from None


def _torch_load(path: str) -> object:
    """Tensors only first (torch >= 2.6's default); release files that also pickle Python
    objects (e.g. a training script's argparse Namespace beside the weights) are then read in
    full, as the official loaders (torch 1.x, no ``weights_only``) read them."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location="cpu", weights_only=False)


def _need_dict(obj: object, key: str, path: str, source: str) -> dict:
    if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], dict):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a {source} checkpoint: expected a dict with key "
            f"'{key}', found {found}")
    return obj[key]


def convert_mae(obj: object, path: str) -> Converted:
    """MAE pre-training release (``mae_pretrain_vit_base.pth``): ``{'model': encoder dict}``,
    timm names already; no head.  Official MAE/GateVPT loaders read ``checkpoint['model']``."""
    sd = _need_dict(obj, "model", path, "MAE")
    drop = [k for k in sd if k.startswith(("head.", "fc_norm.", "decoder", "mask_token"))]
    return {k: v for k, v in sd.items() if k not in drop}, drop


def convert_mocov3(obj: object, path: str) -> Converted:
    """MoCo v3 pre-training file (``vit-b-300ep.pth.tar``): ``{'state_dict': ...}`` with
    ``module.base_encoder.*`` (kept, prefix stripped), ``module.momentum_encoder.*`` and
    ``module.predictor.*`` (dropped), as GateVPT's ``build_mocov3_model`` does.  The base
    encoder's projection MLP ``head.*`` is dropped too."""
    sd = _need_dict(obj, "state_dict", path, "MoCo v3")
    pre = "module.base_encoder."
    if not any(k.startswith(pre) for k in sd):
        hint = " It looks like the MoCo v3 linear-probe file." if "module.head.weight" in sd else ""
        raise CheckpointError(f"checkpoint {path}: no '{pre}*' keys, so it is not a MoCo v3 "
                              f"pre-training checkpoint.{hint}")
    out, drop = {}, []
    for k, v in sd.items():
        if k.startswith(pre) and not k.startswith(pre + "head."):
            out[k[len(pre):]] = v
        else:
            drop.append(k)
    return out, drop


def convert_mocov3_linear(obj: object, path: str) -> Converted:
    """MoCo v3 linear-probe file (``linear-vit-b-300ep.pth.tar``, the file VPT links):
    ``{'state_dict': {'module.<timm name>': ...}}``; its ImageNet ``module.head.*`` is dropped
    (VPT's loader strips ``module.`` only)."""
    sd = _need_dict(obj, "state_dict", path, "MoCo v3 linear-probe")
    if any(k.startswith("module.base_encoder.") for k in sd):
        raise CheckpointError(f"checkpoint {path} is a MoCo v3 pre-training checkpoint "
                              "(module.base_encoder.*), not the linear-probe file.")
    out, drop = {}, []
    for k, v in sd.items():
        if k.startswith("module.") and not k.startswith("module.head."):
            out[k[len("module."):]] = v
        else:
            drop.append(k)
    return out, drop


def convert_timm(obj: object, path: str) -> Converted:
    """A plain timm state dict (optionally under 'state_dict' or 'model'); head dropped."""
    sd = obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                sd = obj[key]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"checkpoint {path} holds no state dict")
    drop = [k for k in sd if k.startswith(("head.", "fc_norm.", "pre_logits."))]
    return {k: torch.as_tensor(v) for k, v in sd.items() if k not in drop}, drop


_NPZ_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/(.+)$")
#: classes of the ImageNet-21k head in Google's pre-training .npz files
IN21K_CLASSES = 21843

#: Flax layout of each array the conversion reads (key suffix -> dims); a name binds to the
#: size first seen for it, so every array must agree on D (width), M (MLP), H (heads) ...
_NPZ_LAYOUT: Dict[str, Tuple[object, ...]] = {
    "embedding/kernel": ("P", "P", 3, "D"), "embedding/bias": ("D",), "cls": (1, 1, "D"),
    "Transformer/posembed_input/pos_embedding": (1, "N", "D"),
    "scale": ("D",), "LayerNorm_0/bias": ("D",), "LayerNorm_2/bias": ("D",),
    "encoder_norm/bias": ("D",),
    "query/kernel": ("D", "H", "hd"), "key/kernel": ("D", "H", "hd"),
    "value/kernel": ("D", "H", "hd"), "query/bias": ("H", "hd"), "key/bias": ("H", "hd"),
    "value/bias": ("H", "hd"), "out/kernel": ("H", "hd", "D"), "out/bias": ("D",),
    "Dense_0/kernel": ("D", "M"), "Dense_0/bias": ("M",), "Dense_1/kernel": ("M", "D"),
    "Dense_1/bias": ("D",),
}


def _npz_layout(key: str) -> Tuple[object, ...]:
    return next(v for k, v in _NPZ_LAYOUT.items() if key == k or key.endswith("/" + k))


def _fmt_layout(layout: Tuple[object, ...], dims: Dict[str, int]) -> str:
    parts = [f"{d}={dims[d]}" if d in dims else str(d) for d in layout]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def convert_sup_npz(obj: object, path: str) -> Converted:
    """Google's ViT ``.npz`` (``imagenet21k_ViT-B_16.npz``, VPT's supervised in21k weights) to
    timm names.  Conv kernel HWIO -> OIHW; q/k/v kernels (D, heads, hd) concatenated to timm's
    fused qkv; out kernel (heads, hd, D) -> (D, D).  ``pre_logits/*`` and ``head/*`` dropped."""
    w = obj
    if not isinstance(w, dict) or "embedding/kernel" not in w:
        raise CheckpointError(f"checkpoint {path} is not a Google ViT .npz (no 'embedding/kernel')")
    # the ImageNet-1k fine-tuned release is also called ViT-B_16.npz (imagenet21k+imagenet2012/,
    # VPT's 'sup_vitb16'): its 1000-class head tells it apart from the 21k pre-training file
    head = np.shape(w.get("head/kernel", np.zeros((0, IN21K_CLASSES))))
    if len(head) != 2 or head[1] != IN21K_CLASSES:
        raise CheckpointError(
            f"checkpoint {path}: 'head/kernel' has shape {tuple(head)}, the ImageNet-21k "
            f"pre-training release has (D, {IN21K_CLASSES}): this is another ViT .npz (the "
            "ImageNet-1k fine-tuned ViT-B_16.npz has 1000 classes); get "
            "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz")

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    out: Dict[str, torch.Tensor] = {}
    used = set()
    dims: Dict[str, int] = {}  # layout names bound so far (D, M, H, ...)

    def take(key: str) -> np.ndarray:
        """The array at ``key``, its shape checked against the Flax layout before any reshape
        (a wrong rank would otherwise be a raw torch error far from the file)."""
        if key not in w:
            raise CheckpointError(f"checkpoint {path}: key '{key}' missing from the .npz")
        layout, got = _npz_layout(key), tuple(int(n) for n in np.shape(w[key]))
        bound = dict(dims)
        ok = len(got) == len(layout)
        if ok:
            for d, n in zip(layout, got):
                if (bound.setdefault(d, n) if isinstance(d, str) else d) != n:
                    ok = False
                    break
        if not ok:
            raise CheckpointError(
                f"checkpoint {path}: array '{key}' has shape {got}, expected "
                f"{_fmt_layout(layout, dims)}; the file is damaged or not a Google ViT .npz "
                "(download it again)")
        dims.update(bound)
        used.add(key)
        return w[key]

    out["patch_embed.proj.weight"] = t(take("embedding/kernel")).permute(3, 2, 0, 1)
    out["patch_embed.proj.bias"] = t(take("embedding/bias"))
    out["cls_token"] = t(take("cls"))
    out["pos_embed"] = t(take("Transformer/posembed_input/pos_embedding"))
    out["norm.weight"] = t(take("Transformer/encoder_norm/scale"))
    out["norm.bias"] = t(take("Transformer/encoder_norm/bias"))
    blocks = sorted({int(m.group(1)) for k in w for m in [_NPZ_BLOCK.match(k)] if m})
    for i in blocks:
        p = f"Transformer/encoderblock_{i}/"
        b = f"blocks.{i}."
        a = p + "MultiHeadDotProductAttention_1/"
        out[b + "norm1.weight"] = t(take(p + "LayerNorm_0/scale"))
        out[b + "norm1.bias"] = t(take(p + "LayerNorm_0/bias"))
        qkv_w = [t(take(a + f"{n}/kernel")).flatten(1).T for n in ("query", "key", "value")]
        qkv_b = [t(take(a + f"{n}/bias")).flatten() for n in ("query", "key", "value")]
        out[b + "attn.qkv.weight"] = torch.cat(qkv_w)
        out[b + "attn.qkv.bias"] = torch.cat(qkv_b)
        out[b + "attn.proj.weight"] = t(take(a + "out/kernel")).flatten(0, 1).T
        out[b + "attn.proj.bias"] = t(take(a + "out/bias"))
        out[b + "norm2.weight"] = t(take(p + "LayerNorm_2/scale"))
        out[b + "norm2.bias"] = t(take(p + "LayerNorm_2/bias"))
        for j, name in ((0, "fc1"), (1, "fc2")):
            out[b + f"mlp.{name}.weight"] = t(take(p + f"MlpBlock_3/Dense_{j}/kernel")).T
            out[b + f"mlp.{name}.bias"] = t(take(p + f"MlpBlock_3/Dense_{j}/bias"))
    extra = [k for k in w if k not in used]
    allowed_extra = [k for k in extra if k.startswith(("pre_logits/", "head/"))]
    stray = sorted(set(extra) - set(allowed_extra))
    if stray:
        raise CheckpointError(f"checkpoint {path}: unexpected .npz keys {stray[:6]}")
    return out, allowed_extra


CONVERTERS: Dict[str, Callable[[object, str], Converted]] = {
    "mae": convert_mae,
    "mocov3": convert_mocov3,
    "mocov3_linear": convert_mocov3_linear,
    "timm": convert_timm,
    "sup_npz": convert_sup_npz,
}


def register_converter(source: str, fn: Callable[[object, str], Converted]) -> None:
    if source in CONVERTERS:
        raise KeyError(f"converter '{source}' registered twice")
    CONVERTERS[source] = fn


def check_and_load(model: nn.Module, sd: Dict[str, torch.Tensor], path: str, source: str,
                   allow_missing: Tuple[str, ...] = ()) -> None:
    """Load ``sd`` into ``model`` requiring exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(k for k in set(expected) - set(sd) if k not in allow_missing)
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {source} layout of this backbone: "
            f"{len(missing)} missing key(s) {missing[:6]}, {len(unexpected)} unexpected key(s) "
            f"{unexpected[:6]}. Is it the right file for this backbone (python -m replicate "
            "backbones lists the expected file per backbone)?")
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in expected.items()
           if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        k, got, want = bad[0]
        raise CheckpointError(f"checkpoint {path}: {len(bad)} tensor(s) of the wrong shape, e.g. "
                              f"'{k}' is {got}, the backbone needs {want} (wrong model size?)")
    model.load_state_dict(sd, strict=not allow_missing)


def _fits(model: nn.Module, sd: Dict[str, torch.Tensor]) -> bool:
    expected = model.state_dict()
    return set(sd) == set(expected) and all(
        tuple(sd[k].shape) == tuple(v.shape) for k, v in expected.items())


def layout_hint(model: nn.Module, obj: object, entry) -> str:
    """Which registered backbones of the same architecture could load ``obj`` (a wrong-source
    file, e.g. MoCo v3's linear-probe file given to the pre-training entry); '' if none."""
    from .entry import get, registered

    names = []
    for name in registered():
        other = get(name)
        if other.source == entry.source or other.build is not entry.build:
            continue
        try:
            sd, _ = CONVERTERS[other.source](obj, "")
        except Exception:
            continue
        if _fits(model, sd):
            names.append(f"'{name}' ({other.source} layout)")
    return f"This file fits backbone {' or '.join(names)}: use that name." if names else ""


def load_object(model: nn.Module, obj: object, path: str, entry) -> List[str]:
    """Convert an already-read checkpoint object with the entry's source converter and load it
    strictly; a wrong-source file gets a hint naming the backbone that fits it.  Returns the
    dropped (documented extra) keys."""
    try:
        convert = CONVERTERS[entry.source]
    except KeyError:
        raise CheckpointError(f"no converter for checkpoint source '{entry.source}'") from None
    try:
        sd, dropped = convert(obj, path)
        check_and_load(model, sd, path, entry.source, tuple(entry.extra.get("allow_missing", ())))
    except CheckpointError as e:
        hint = layout_hint(model, obj, entry)
        if hint:
            raise CheckpointError(f"{e} {hint}") from None
        raise
    return dropped


def load_into(model: nn.Module, path: str, entry) -> List[str]:
    """Read the file at ``path`` and :func:`load_object` it.  Returns the dropped keys."""
    if entry.source not in CONVERTERS:
        raise CheckpointError(f"no converter for checkpoint source '{entry.source}'")
    if not os.path.isfile(path):
        raise CheckpointError(not_found_message(path, entry))
    return load_object(model, _read(path, getattr(entry, "url", "")), path, entry)
