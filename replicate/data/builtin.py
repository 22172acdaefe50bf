"""Built-in smoke datasets that need no download: scikit-learn's digits and a synthetic set.

Split like VTAB-1k: train 800 / val 200 / trainval = both / test = the rest (digits: 797).
Images are upscaled to ``spec.image_size`` (the demo's tiny ViT takes 32x32).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataSpec
from ..errors import DataError
from .split import in_memory_split, register_loader
from .tasks import num_classes


def _slices(n_total: int, split: str) -> slice:
    if n_total < 1001:
        raise DataError(f"smoke dataset has {n_total} images, needs > 1000")
    return {"train": slice(0, 800), "val": slice(800, 1000), "trainval": slice(0, 1000),
            "test": slice(1000, n_total)}[split]


def _to_uint8_rgb(gray: np.ndarray, size: int) -> torch.Tensor:
    """(N, h, w) floats in [0, 1] -> (N, 3, size, size) uint8."""
    x = torch.from_numpy(gray.astype(np.float32))[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


@register_loader("digits")
def load_digits(spec: DataSpec, split: str, train: bool):
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    rng = np.random.RandomState(0)  # fixed shuffle: sklearn orders digits by writer
    order = rng.permutation(len(d.target))
    images = d.images[order] / 16.0
    labels = d.target[order]
    sl = _slices(len(labels), split)
    return in_memory_split(_to_uint8_rgb(images[sl], spec.image_size),
                           torch.as_tensor(labels[sl], dtype=torch.int64),
                           num_classes("digits", spec.task), split, f"digits:{split}")


def synthetic_images(task: str, n: int, size: int = 16, seed: int = 0):
    """Class-dependent patterns with noise: 'shapes' (4 quadrant blobs), 'stripes' (6 angles)."""
    rng = np.random.RandomState(seed)
    k = num_classes("synthetic", task)
    labels = rng.randint(0, k, size=n)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    imgs = np.empty((n, size, size), np.float32)
    for i, c in enumerate(labels):
        if task == "shapes":
            cy, cx = (0.3 if c < 2 else 0.7), (0.3 if c % 2 == 0 else 0.7)
            base = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        else:
            ang = np.pi * c / k
            base = 0.5 + 0.5 * np.sin(12 * (xx * np.cos(ang) + yy * np.sin(ang)))
        imgs[i] = np.clip(base + 0.35 * rng.randn(size, size), 0, 1)
    return imgs, labels


@register_loader("synthetic")
def load_synthetic(spec: DataSpec, split: str, train: bool):
    imgs, labels = synthetic_images(spec.task, 1400)
    sl = _slices(len(labels), split)
    return in_memory_split(_to_uint8_rgb(imgs[sl], spec.image_size),
                           torch.as_tensor(labels[sl], dtype=torch.int64),
                           num_classes("synthetic", spec.task), split, f"synthetic:{spec.task}:{split}")
