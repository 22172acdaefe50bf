"""Geometric preprocessing of the protocols; outputs are uint8 ``[3, S, S]`` tensors.

Normalisation (``/255``, ImageNet mean/std) is NOT done here: the engine does it on the device,
so every recipe below stops at uint8.  Recipes are named so a paper can pick another one with
``data.transform`` in its config:

* ``vpt-fgvc`` -- KMnP/vpt ``src/data/transforms.py`` ``get_transforms``: train =
  Resize(shorter side -> R) -> RandomCrop(S) -> RandomHorizontalFlip(0.5); eval =
  Resize(R) -> CenterCrop(S), with (S, R) in {(224, 256), (384, 438), (448, 512)}; torchvision
  on PIL images, bilinear, exactly as VPT.  Other sizes use R = S * 256 // 224 (which
  reproduces the three pairs; VPT itself supports only those three).
* ``vpt-vtab`` -- KMnP/vpt ``src/data/datasets/tf_dataset.py`` ``preprocess_fn``:
  ``tf.image.resize(image, [S, S])`` with ``tensorflow.compat.v1`` imported as ``tf``, i.e. the
  v1 ``resize_images``: bilinear, ``align_corners=False`` and NO half-pixel centres (TF's
  legacy sampling, source x = dst x * in/out), no antialiasing, aspect ratio not preserved,
  no crop, no augmentation.  :func:`tf1_resize_bilinear` re-implements that sampling (TF's
  ``resize_bilinear_op.cc``: float32 scale and lerp weights, x then y interpolation).  VPT feeds
  the float result to the network; we round it to uint8 (deviation <= 0.5/255 per pixel).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np
import torch

#: crop size -> resize size of KMnP/vpt src/data/transforms.py
VPT_FGVC_SIZES: Dict[int, int] = {224: 256, 384: 438, 448: 512}

RECIPES = ("vpt-fgvc", "vpt-vtab")


def fgvc_sizes(image_size: int) -> Tuple[int, int]:
    """(resize of the shorter side, crop) of the VPT FGVC recipe for a network input size."""
    return VPT_FGVC_SIZES.get(image_size, image_size * 256 // 224), image_size


# --------------------------------------------------------------------------- TF v1 resize
def _tf1_axis(in_size: int, out_size: int):
    """Indices and weights of TF's legacy bilinear sampling along one axis."""
    scale = torch.tensor(float(in_size), dtype=torch.float32) / torch.tensor(
        float(out_size), dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    floor = torch.floor(src)
    lower = floor.long().clamp(min=0)
    upper = torch.ceil(src).long().clamp(max=in_size - 1)
    return lower, upper, src - floor


def tf1_resize_bilinear(images: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``tf.compat.v1.image.resize(images, size)`` (bilinear, legacy sampling) in float32.

    ``images``: ``[N, C, H, W]`` or ``[C, H, W]``, any real dtype; returns float32.
    """
    squeeze = images.ndim == 3
    x = images[None] if squeeze else images
    x = x.to(torch.float32)
    out_h, out_w = size
    y0, y1, wy = _tf1_axis(x.shape[-2], out_h)
    x0, x1, wx = _tf1_axis(x.shape[-1], out_w)
    top, bottom = x.index_select(-2, y0), x.index_select(-2, y1)
    tl, tr = top.index_select(-1, x0), top.index_select(-1, x1)
    bl, br = bottom.index_select(-1, x0), bottom.index_select(-1, x1)
    top = tl + (tr - tl) * wx
    bottom = bl + (br - bl) * wx
    out = top + (bottom - top) * wy[:, None]
    return out[0] if squeeze else out


def tf1_resize_bilinear_batched(images: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """:func:`tf1_resize_bilinear` for ``[N, C, H, W]`` batches on any device, bit-identical to
    it: every output element goes through the same float32 operations on the same inputs
    (``top = tl + (tr - tl) * wx``, likewise ``bottom``, then ``top + (bottom - top) * wy``).
    Less work: when upsampling rows, each source row is interpolated along x once and the rows
    are then picked; pixels are gathered as uint8 before the float conversion."""
    out_h, out_w = size
    y0, y1, wy = (t.to(images.device) for t in _tf1_axis(images.shape[-2], out_h))
    x0, x1, wx = (t.to(images.device) for t in _tf1_axis(images.shape[-1], out_w))
    if images.shape[-2] <= out_h:  # x-interpolate every source row once, then pick rows
        left = images.index_select(-1, x0).to(torch.float32)
        rows = left + (images.index_select(-1, x1).to(torch.float32) - left) * wx
        top, bottom = rows.index_select(-2, y0), rows.index_select(-2, y1)
    else:  # pick rows first (downsampling: fewer rows to interpolate)
        halves = []
        for ys in (y0, y1):
            r = images.index_select(-2, ys)
            left = r.index_select(-1, x0).to(torch.float32)
            halves.append(left + (r.index_select(-1, x1).to(torch.float32) - left) * wx)
        top, bottom = halves
    return top + (bottom - top) * wy[:, None]


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def vtab_resize(images: torch.Tensor, image_size: int, chunk: int = 256) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` (one size) -> uint8 ``[N, 3, S, S]`` with the ``vpt-vtab`` recipe,
    in chunks so that the float intermediate stays small."""
    out = torch.empty((images.shape[0], images.shape[1], image_size, image_size), dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        out[i:i + chunk] = to_uint8(tf1_resize_bilinear(images[i:i + chunk],
                                                        (image_size, image_size)))
    return out


def hwc_to_chw(array: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 (or HxW, tiled) numpy -> uint8 [3, H, W] tensor."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


# --------------------------------------------------------------------------- recipes on PIL
class VtabTransform:
    """PIL image -> uint8 [3, S, S]: the ``vpt-vtab`` plain resize (deterministic)."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def __call__(self, img) -> torch.Tensor:
        x = hwc_to_chw(np.asarray(img.convert("RGB"), dtype=np.uint8))
        return to_uint8(tf1_resize_bilinear(x, (self.image_size, self.image_size)))


class FgvcTransform:
    """PIL image -> uint8 [3, S, S]: the ``vpt-fgvc`` recipe (random crop + flip when train).

    torchvision's RandomCrop/RandomHorizontalFlip draw from torch's global RNG, which the
    engine seeds per epoch (and the DataLoader per worker), as in VPT.
    """

    def __init__(self, image_size: int, train: bool):
        import torchvision.transforms as T
        resize, crop = fgvc_sizes(image_size)
        steps = [T.Resize(resize)]  # PIL bilinear, shorter side -> resize (VPT: tv Resize(int))
        if train:
            steps += [T.RandomCrop(crop), T.RandomHorizontalFlip(0.5)]
        else:
            steps += [T.CenterCrop(crop)]
        steps += [T.PILToTensor()]  # uint8; VPT's ToTensor()/Normalize happen on the device
        self.pipeline = T.Compose(steps)
        self.image_size, self.train = image_size, train

    def __call__(self, img) -> torch.Tensor:
        return self.pipeline(img.convert("RGB"))


def build(recipe: str, image_size: int, train: bool) -> Callable:
    """A PIL-image transform for a recipe name (see module docstring)."""
    from ..errors import DataError
    if recipe == "vpt-fgvc":
        return FgvcTransform(image_size, train)
    if recipe == "vpt-vtab":
        return VtabTransform(image_size)
    raise DataError(f"unknown transform recipe '{recipe}'; known: {', '.join(RECIPES)} "
                    f"(set data.transform in the experiment config)")
