"""FGVC: CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars with VPT's splits.

Layout under the data root (``data.root``, default ``${DATA_ROOT}``)::

    $DATA_ROOT/fgvc_splits/<split dir>/{train,val,test}.json   # `make data-fgvc-splits`
    $DATA_ROOT/CUB_200_2011/images/<class>/<file>.jpg          # CUB_200_2011.tgz
    $DATA_ROOT/nabirds/images/<class>/<file>.jpg               # nabirds.tar.gz
    $DATA_ROOT/Flowers/jpg/image_XXXXX.jpg                      # 102flowers.tgz
    $DATA_ROOT/Dogs/Images/<wnid-name>/<file>.jpg               # images.tar
    $DATA_ROOT/Cars/cars_{train,test}/cars_{train,test}/<file>.jpg  # Kaggle copy

Split files are VPT's format (KMnP/vpt ``src/data/datasets/json_dataset.py``): one JSON dict
``image path (relative to the image root) -> class id``.  VPT's own files are no longer
downloadable; we use the public copy in savadikarc/gift (MIT) at a pinned commit, whose
checksums and counts are pinned in ``manifests/fgvc/<task>.json``.  Image roots per dataset
follow json_dataset.py (docs/data.md, FGVC table).

Labels: ONE map per dataset, class_ids (sorted union over train/val/test) -> 0..K-1.  VPT maps
each split file separately, which shifts NABirds' val labels (its val file lacks 2 classes);
that is a deliberate deviation, see docs/data.md.  trainval = train followed by val.

Images: decoded and resized (VPT's Resize(shorter side -> 256)) once per split file into the
image cache (:mod:`.cache`); the split's ``source`` (:class:`.cache.FgvcCrops`) cuts each batch's
random crops and flips (train) or center crops (eval) from it on the training device.
:class:`ImageFiles` + :mod:`.transforms` is the per-item reference path (and serves recipes
other than ``vpt-fgvc``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from ..config import DataSpec
from ..errors import DataError
from ..paths import expand_path
from .split import Split, in_memory_split, register_loader
from . import cache
from . import transforms as T
from .tasks import FGVC_CLASSES

# split files and the dataset table live in fgvc_splits (torch-free, shared with manifests);
# image-file helpers in files (shared with vtab); both re-exported here
from .fgvc_splits import (  # noqa: E402,F401
    DATASETS, FILE_SPLITS, GIFT_BASE_URL, GIFT_COMMIT, GIFT_REPO, SPLIT_FIX, SPLITS_DIRNAME,
    FgvcDataset, _reject_duplicates, class_ids, class_key, file_sha256, get_dataset, image_dir,
    label_map, read_split_file, read_split_files, split_entries, splits_dir)
from .files import ImageFiles, check_files_exist, data_root, read_image  # noqa: E402,F401


def pin_problems(task: str, split_dir: Path) -> List[str]:
    """Differences between the split files and the pinned checksums (empty: all match)."""
    from .manifests import load_committed
    pins = load_committed("fgvc", task)["split_files"]
    out = []
    for s in FILE_SPLITS:
        path = split_dir / f"{s}.json"
        if path.is_file() and file_sha256(path) != pins[s]["sha256"]:
            out.append(f"'{path}' differs from the pinned {GIFT_REPO}@{GIFT_COMMIT[:7]} file "
                       f"(sha256 {pins[s]['sha256'][:12]}...)")
    return out


def materialize(dataset: Dataset) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a (deterministic) dataset once into uint8 images and int64 labels."""
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([x for x, _ in items])
    labels = torch.as_tensor([y for _, y in items], dtype=torch.int64)
    return images, labels


# --------------------------------------------------------------------------- loader
@register_loader("fgvc")
def load_fgvc(spec: DataSpec, split: str, train: bool) -> Split:
    ds = get_dataset(spec.task)
    if spec.format not in ("auto", "vpt-json"):
        raise DataError(f"FGVC data.format '{spec.format}' is not supported; use 'auto' or "
                        f"'vpt-json'")
    recipe = "vpt-fgvc" if spec.transform == "auto" else spec.transform
    if recipe not in T.RECIPES:
        T.build(recipe, spec.image_size, train)  # raises the unknown-recipe error
    root = data_root(spec.root)
    images = image_dir(root, ds)
    sdir = splits_dir(root, ds)
    files = read_split_files(sdir)
    for problem in pin_problems(ds.task, sdir):
        from .manifests import DataWarning
        warnings.warn(f"{problem}: results are not comparable with the protocol's splits; "
                      f"{SPLIT_FIX}", DataWarning, stacklevel=2)
    labels = label_map(ds.task, files, sdir)
    entries = split_entries(files, split, labels)
    paths = [str(images / key) for key, _ in entries]
    check_files_exist(paths, f"{ds.title} {split} (image root '{images}')",
                      f"Download {ds.download}; `python -m replicate data verify --root {root} "
                      f"--benchmark fgvc --task {ds.task}` lists every missing file")
    name = f"fgvc:{ds.task}:{split}"
    k = FGVC_CLASSES[ds.task]
    labels_t = torch.as_tensor([y for _, y in entries], dtype=torch.int64)
    if recipe != "vpt-fgvc":  # another recipe: decoded per access through its PIL transform
        dataset = ImageFiles(paths, labels_t.tolist(), T.build(recipe, spec.image_size, train))
        if spec.in_memory and not train:
            return in_memory_split(*materialize(dataset), k, split, name)
        return Split(dataset, k, split, name)
    resize, crop = T.fgvc_sizes(spec.image_size)
    parts = [(p, [str(images / key) for key in files[p]])
             for p in (("train", "val") if split == "trainval" else (split,))]
    store = cached_resized(spec, ds, images, parts, resize)
    source = cache.FgvcCrops(store, labels_t, crop, train, resident=spec.in_memory)
    if spec.in_memory and not train:  # center crops as one uint8 tensor (smaller than the store)
        return in_memory_split(source.batch(torch.arange(len(source)), None, torch.device("cpu")),
                               labels_t, k, split, name)
    return Split(cache.CachedDataset(source, paths), k, split, name, source=source)


def cached_resized(spec: DataSpec, ds: FgvcDataset, images: Path,
                   parts: Sequence[Tuple[str, List[str]]], resize: int) -> "cache.RaggedImages":
    """The images of the split files ``parts`` (in order) after VPT's Resize(shorter -> resize),
    from the decoded-image cache (built on first use: :mod:`.cache`)."""
    import sys
    root = cache.cache_root(spec.cache_root)
    stores = [cache.load_or_build(cache_request(ds, images, part, paths, resize), root,
                                  spec.num_workers,
                                  log=lambda m: print(m, file=sys.stderr, flush=True))
              for part, paths in parts]
    return stores[0] if len(stores) == 1 else cache.RaggedImages.concat(stores)


def cache_request(ds: FgvcDataset, images: Path, part: str, paths: Sequence[str],
                  resize: int) -> "cache.Request":
    decode = cache.FgvcResize(resize)
    return cache.Request("fgvc", ds.task, part, images, tuple(paths), decode.transform(), decode)


def cache_requests(spec: DataSpec) -> List["cache.Request"]:
    """The cache entries of a dataset (one per split file) for ``data cache --verify``."""
    ds = get_dataset(spec.task)
    root = data_root(spec.root)
    images = image_dir(root, ds)
    files = read_split_files(splits_dir(root, ds))
    resize, _ = T.fgvc_sizes(spec.image_size)
    return [cache_request(ds, images, p, [str(images / k) for k in files[p]], resize)
            for p in FILE_SPLITS]


# --------------------------------------------------------------------------- split download
def fetch_split_files(dest: str, tasks: Optional[Sequence[str]] = None,
                      base_url: str = GIFT_BASE_URL, source_dir: Optional[str] = None,
                      force: bool = False, log: Callable[[str], None] = print) -> List[Path]:
    """Download (or copy from ``source_dir``) the pinned split files into
    ``dest/<split dir>/<split>.json`` and verify their sha256; a mismatch removes the file and
    raises.  Files already present with the right checksum are kept unless ``force``."""
    from .manifests import load_committed
    dest_path = Path(expand_path(dest, "--dest"))
    written = []
    for task in tasks or sorted(DATASETS):
        ds = get_dataset(task)
        pins = load_committed("fgvc", task)["split_files"]
        out_dir = dest_path / ds.split_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for s in FILE_SPLITS:
            target = out_dir / f"{s}.json"
            want = pins[s]["sha256"]
            if target.is_file() and not force and file_sha256(target) == want:
                log(f"ok       {target} (checksum matches)")
                written.append(target)
                continue
            if source_dir:
                src = Path(source_dir) / ds.split_dir / f"{s}.json"
                what = str(src)
            else:
                src = None
                what = f"{base_url}/{ds.split_dir}/{s}.json"
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{s}.", suffix=".part")
            os.close(fd)
            try:
                if src is not None:
                    if not src.is_file():
                        raise DataError(f"'{src}' not found (--from must hold "
                                        f"<dataset>/{{train,val,test}}.json as in {GIFT_REPO})")
                    shutil.copyfile(src, tmp)
                else:
                    try:
                        with urllib.request.urlopen(what, timeout=60) as r, open(tmp, "wb") as f:
                            shutil.copyfileobj(r, f)
                    except OSError as e:
                        raise DataError(f"cannot download '{what}' ({e}); copy the files from "
                                        f"another machine and pass --from DIR") from None
                got = file_sha256(Path(tmp))
                if got != want:
                    raise DataError(f"'{what}' has sha256 {got}, pinned {want} "
                                    f"({GIFT_REPO}@{GIFT_COMMIT}); not installed")
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            log(f"fetched  {target} <- {what}")
            written.append(target)
    return written
