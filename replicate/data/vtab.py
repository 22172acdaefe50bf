"""VTAB-1k reader: the lossless export (``replicate`` format) and NOAH-style JPEG folders.

Where a task is looked for under the data root (``data.root``, default ``${DATA_ROOT}``)::

    replicate format (python -m replicate data export-vtab, PNG, lossless):
        $DATA_ROOT/vtab1k/<task>/manifest.json, {train800,val200,train800val200,test}.txt,
        images/<tfds split>/<index>.png        lines: images/train/0000123.png <label>
    NOAH format (ZhangYuanhan-AI/NOAH data/vtab-source/get_vtab1k.py, JPEG, lossy):
        $DATA_ROOT/vtab-1k/<noah dir>/{train800,...}.txt, images/<split>/<i>.jpg
        lines: images/train800/000123.jpg <label>    (noah dir: cifar, oxford_iiit_pet, ...)

``data.format``: auto (replicate if present, else noah) | replicate | noah.

Preprocessing (``vpt-vtab``, KMnP/vpt ``src/data/datasets/tf_dataset.py`` ``preprocess_fn``):
a plain TF-v1 bilinear resize to ``image_size`` x ``image_size``, no crop, no augmentation
(:mod:`.transforms`).  Images are decoded once per task and split into the image cache at
their source resolution (:mod:`.cache`).  train800 / val200 / train800val200 are resized from
it once per run and held in memory (uint8); the test split is resized per batch on the
training device (:class:`.cache.Tf1Resized`, bit-identical to the CPU reference; with
``data.in_memory`` the source pixels are held on the device, else copied per batch).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch

from ..config import DataSpec
from ..protocol import split_name
from ..errors import DataError
from .split import Split, in_memory_split, register_loader
from . import cache
from . import transforms as T
from .files import ImageFiles, check_files_exist, data_root, read_image
from .manifests import DataWarning, load_committed
from .vtab_tasks import VtabTask, get_task

EXPORT_FORMAT = "replicate-vtab1k/1"
FORMATS = ("auto", "replicate", "noah")


def export_fix(task: str) -> str:
    return (f"export it with `python -m replicate data export-vtab --task {task} --tfds-dir "
            f"<tensorflow_datasets dir> --dest $DATA_ROOT/vtab1k` (docs/data.md)")


# --------------------------------------------------------------------------- locate
def candidates(root: Path, t: VtabTask, fmt: str) -> List[Tuple[Path, str]]:
    out = []
    if fmt in ("auto", "replicate"):
        out += [(root / "vtab1k" / t.task, "replicate"), (root / t.task, "replicate")]
    if fmt in ("auto", "noah"):
        for d in t.noah_dirs:
            out += [(root / "vtab-1k" / d, "noah"), (root / d, "noah")]
    return out


def _is_format(path: Path, fmt: str) -> bool:
    if fmt == "replicate":
        return (path / "manifest.json").is_file()
    return (path / "train800.txt").is_file() and not (path / "manifest.json").is_file()


def locate(root: Path, task: str, fmt: str = "auto") -> Tuple[Path, str]:
    """The task folder and its format; a DataError listing what was tried otherwise."""
    t = get_task(task)
    if fmt not in FORMATS:
        raise DataError(f"VTAB-1k data.format '{fmt}' is not supported; use one of "
                        f"{', '.join(FORMATS)}")
    tried = candidates(root, t, fmt)
    for path, kind in tried:
        if _is_format(path, kind):
            return path, kind
    listing = "\n  ".join(f"{p} ({k})" for p, k in tried)
    raise DataError(f"VTAB-1k task '{task}' not found under '{root}'; looked for:\n  {listing}\n"
                    f"Fix: {export_fix(task)}, or put a NOAH-style copy in {root}/vtab-1k/"
                    f"{t.noah_dirs[0]}")


# --------------------------------------------------------------------------- lists
def read_list(task_dir: Path, name: str, num_classes: int) -> List[Tuple[str, int]]:
    """Lines ``<relative image path> <label>`` of ``<task_dir>/<name>.txt``."""
    path = task_dir / f"{name}.txt"
    if not path.is_file():
        raise DataError(f"split list '{path}' not found: the copy of this task is incomplete; "
                        f"re-export or re-download it (docs/data.md)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{n}: expected '<image path> <integer label>', got {line!r}; "
                            f"re-export or re-download the task")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise DataError(f"{path}:{n}: label {label} outside 0..{num_classes - 1}; the copy "
                            f"was made with a different label rule: re-export the task")
        out.append((parts[0], label))
    if not out:
        raise DataError(f"split list '{path}' is empty: re-export or re-download the task")
    return out


def sample_id(rel_path: str, fmt: str) -> str:
    """replicate: ``images/<tfds split>/<index>.png`` -> ``<tfds split>:<index>``;
    noah: the relative path itself (NOAH numbers images per VTAB split)."""
    if fmt == "replicate":
        parts = rel_path.split("/")
        if len(parts) == 3 and parts[0] == "images" and parts[2].split(".")[0].isdigit():
            return f"{parts[1]}:{int(parts[2].split('.')[0])}"
    return rel_path


def read_export_manifest(task_dir: Path, task: str) -> dict:
    path = task_dir / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"'{path}' is not valid JSON ({e}): {export_fix(task)}") from None
    if m.get("format") != EXPORT_FORMAT or m.get("task") != task:
        raise DataError(f"'{path}' is not a {EXPORT_FORMAT} export of '{task}' (format "
                        f"{m.get('format')!r}, task {m.get('task')!r}): {export_fix(task)}")
    return m


# --------------------------------------------------------------------------- images
def load_resized(paths: Sequence[str], image_size: int, chunk: int = 256) -> torch.Tensor:
    """Decode images and apply the ``vpt-vtab`` resize, batching consecutive same-size images:
    the CPU reference of the cached path (:class:`.cache.Tf1Resized`; tests, benchmarks)."""
    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    batch: List[torch.Tensor] = []
    start = 0

    def flush() -> None:
        nonlocal batch, start
        if batch:
            out[start:start + len(batch)] = T.vtab_resize(torch.stack(batch), image_size)
            start += len(batch)
            batch = []

    for p in paths:
        x = T.hwc_to_chw(np.asarray(read_image(p), dtype=np.uint8))
        if batch and (x.shape != batch[0].shape or len(batch) == chunk):
            flush()
        batch.append(x)
    flush()
    return out


# --------------------------------------------------------------------------- cache
def cache_request(task: str, task_dir: Path, fmt: str, name: str,
                  paths: Sequence[str]) -> "cache.Request":
    """The cache entry of one split: decoded RGB at source resolution."""
    return cache.Request("vtab1k", task, f"{fmt}-{name}", task_dir, tuple(paths),
                         cache.rgb_transform(), cache.decode_rgb)


def cache_requests(spec: DataSpec) -> List["cache.Request"]:
    """The cache entries of a task (one per split) for ``data cache --verify``."""
    from .vtab_tasks import VTAB_SPLITS
    t = get_task(spec.task)
    task_dir, fmt = locate(data_root(spec.root), t.task, spec.format)
    out = []
    for name in VTAB_SPLITS:
        entries = read_list(task_dir, name, t.num_classes)
        out.append(cache_request(t.task, task_dir, fmt, name,
                                 [str(task_dir / rel) for rel, _ in entries]))
    return out


# --------------------------------------------------------------------------- loader
@register_loader("vtab1k")
def load_vtab(spec: DataSpec, split: str, train: bool) -> Split:
    t = get_task(spec.task)
    name = split_name("vtab1k", split)
    recipe = "vpt-vtab" if spec.transform == "auto" else spec.transform
    if recipe not in T.RECIPES:
        T.build(recipe, spec.image_size, train)  # raises the unknown-recipe error
    root = data_root(spec.root)
    task_dir, fmt = locate(root, t.task, spec.format)
    entries = read_list(task_dir, name, t.num_classes)
    expected = load_committed("vtab1k", t.task)["splits"][name]["count"]
    if len(entries) != expected:
        raise DataError(f"'{task_dir / (name + '.txt')}' lists {len(entries)} images, VTAB-1k "
                        f"{t.task} {name} has {expected}: the copy differs from the protocol; "
                        f"run `python -m replicate data verify --root {root} --benchmark vtab1k "
                        f"--task {t.task}` and {export_fix(t.task)}")
    if fmt == "replicate":
        m = read_export_manifest(task_dir, t.task)
        if m.get("tfds", {}).get("version") != t.version:
            warnings.warn(f"{task_dir}: exported from {t.builder} "
                          f"{m.get('tfds', {}).get('version')}, VPT used {t.version}; splits may "
                          f"hold other images", DataWarning, stacklevel=2)
    else:
        warnings.warn(f"{task_dir}: NOAH-style VTAB-1k copy: its JPEGs were re-encoded (lossy), "
                      f"so pixels differ from TFDS's; for exact inputs {export_fix(t.task)}",
                      DataWarning, stacklevel=2)
    paths = [str(task_dir / rel) for rel, _ in entries]
    check_files_exist(paths, f"VTAB-1k {t.task} {name} ('{task_dir}')",
                      f"Fix: {export_fix(t.task)} (or re-download the NOAH copy)")
    labels = torch.as_tensor([y for _, y in entries], dtype=torch.int64)
    source = f"vtab1k:{t.task}:{name}"
    if recipe != "vpt-vtab":  # another recipe: decoded per access through its PIL transform
        dataset = ImageFiles(paths, labels.tolist(), T.build(recipe, spec.image_size, train))
        return Split(dataset, t.num_classes, split, source)
    store = cache.load_or_build(cache_request(t.task, task_dir, fmt, name, paths),
                                cache.cache_root(spec.cache_root), spec.num_workers,
                                log=lambda m: print(m, file=sys.stderr, flush=True))
    resized = cache.Tf1Resized(store, labels, spec.image_size, resident=spec.in_memory)
    if name != "test":  # 1,000 images at most: resized once per run, held as uint8
        return in_memory_split(resized.all(), labels, t.num_classes, split, source)
    return Split(cache.CachedDataset(resized, paths), t.num_classes, split, source,
                 source=resized)
