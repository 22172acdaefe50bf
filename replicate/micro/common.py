"""What the three micro pre-trainings share: their images, augmentation, schedule, the thread
setting, and the k-NN / linear-probe check of a backbone.

Pre-training images: the 800 *training* images of scikit-learn's digits split as
:mod:`replicate.data.builtin` cuts it (upsampled to 32x32), without labels.  The validation
(200) and test (797) images are never seen by a pre-training; the k-NN check below uses train
labels as its memory and reports accuracy on *val*, so the test split stays untouched.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Tuple

import torch
import torch.nn.functional as F

from ..config import DataSpec

#: ImageNet mean/std in 0..255 units, as the engine normalises (BackboneEntry defaults)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 32


def digits_split(split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and labels of one split of the demo's digits task."""
    from .. import data

    s = data.load(DataSpec(benchmark="digits", task="digits", image_size=IMAGE_SIZE), split,
                  train=False)
    return s.images, s.labels


def pretraining_images() -> torch.Tensor:
    """The unlabeled pre-training set: digits *train* images only (never val or test)."""
    return digits_split("train")[0]


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return (x.float() - mean) / std


def augment(x: torch.Tensor, g: torch.Generator, scale: Tuple[float, float] = (0.85, 1.1),
            shift: float = 0.12, rotate: float = 0.2, jitter: float = 0.0) -> torch.Tensor:
    """Random affine (zoom, shift, rotation) of normalised images, black background, plus
    optional brightness/contrast jitter.  Digits have no meaningful flips, so none."""
    B = x.shape[0]
    s = torch.empty(B).uniform_(*scale, generator=g)
    a = torch.empty(B).uniform_(-rotate, rotate, generator=g)
    t = torch.empty(B, 2).uniform_(-shift, shift, generator=g)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
    theta[:, :, 2] = t
    bg = normalize(torch.zeros(1, 3, 1, 1))
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - bg, grid, align_corners=False, padding_mode="zeros") + bg
    if jitter:
        c = torch.empty(B, 1, 1, 1).uniform_(1 - jitter, 1 + jitter, generator=g)
        b = torch.empty(B, 1, 1, 1).uniform_(-jitter, jitter, generator=g)
        out = out * c + b
    return out


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup then half-cosine to 0, per step (MAE / MoCo v3 / BEiT v2 all use it)."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def batches(n: int, batch_size: int, g: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches of one epoch, the last (short) one dropped so BatchNorm and the
    contrastive loss always see a full batch."""
    order = torch.randperm(n, generator=g)
    for i in range(0, n - batch_size + 1, batch_size):
        yield order[i:i + batch_size]


def train_epochs(opt: torch.optim.Optimizer, n_images: int, r: dict, g: torch.Generator,
                 loss_fn: Callable[[torch.Tensor, int, int], Tuple[torch.Tensor, float]],
                 log: Callable[[str], None], describe: Callable[[int, float, float], str]) -> None:
    """The pre-trainings' shared loop: ``r['epochs']`` epochs of shuffled full batches, the lr
    set per step by :func:`cosine_lr`, one optimizer step per batch.  ``loss_fn(indices, step,
    total_steps)`` returns the loss and an extra per-batch figure (0.0 if none);
    ``describe(epoch, mean loss, mean extra)`` is logged every 10 epochs, first and last."""
    per_epoch = n_images // r["batch_size"]
    total, step = r["epochs"] * per_epoch, 0
    for epoch in range(r["epochs"]):
        loss_sum = extra_sum = 0.0
        for idx in batches(n_images, r["batch_size"], g):
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, total, r["lr"], r["warmup_epochs"] * per_epoch)
            loss, extra = loss_fn(idx, step, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            extra_sum += extra
            step += 1
        if epoch in (0, r["epochs"] - 1) or (epoch + 1) % 10 == 0:
            log(describe(epoch, loss_sum / per_epoch, extra_sum / per_epoch))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (restored after).  The pre-trainings use one:
    these models are too small to gain from more on a shared 2-core machine, and a fixed
    count keeps float reductions, hence the cached bytes, the same from run to run."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def knn_accuracy(features: Callable[[torch.Tensor], torch.Tensor], k: int = 10,
                 t: float = 0.07) -> float:
    """Weighted k-NN top-1 (%) on digits *val* with the train images as memory (the usual SSL
    check, e.g. DINO's eval_knn: cosine similarity, exp(s / t) votes)."""
    xtr, ytr = digits_split("train")
    xva, yva = digits_split("val")
    ftr = F.normalize(features(normalize(xtr)), dim=-1)
    fva = F.normalize(features(normalize(xva)), dim=-1)
    sim, idx = (fva @ ftr.T).topk(k, dim=1)
    votes = torch.zeros(len(xva), int(ytr.max()) + 1).scatter_add_(1, ytr[idx], (sim / t).exp())
    return 100.0 * (votes.argmax(1) == yva).float().mean().item()
