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

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from ..config import ConfigError, DataSpec, expand_path
from . import DataError, Split, in_memory_split, register_loader
from . import cache
from . import transforms as T
from .tasks import FGVC_CLASSES

GIFT_REPO = "savadikarc/gift"
GIFT_COMMIT = "f0cb80cb4db413ecd108dd7e74fef27105eb6b97"
GIFT_BASE_URL = f"https://raw.githubusercontent.com/{GIFT_REPO}/{GIFT_COMMIT}/data"
#: folder under the data root that holds the split files
SPLITS_DIRNAME = "fgvc_splits"
FILE_SPLITS = ("train", "val", "test")
SPLIT_FIX = ("run `make data-fgvc-splits` (= python -m replicate data fgvc-splits "
             "--dest $DATA_ROOT/fgvc_splits)")


@dataclass(frozen=True)
class FgvcDataset:
    task: str
    title: str
    #: folder under the data root (GateVPT run.sh names) and the image root inside it
    folder: str
    image_root: str
    #: folder name of the split files (savadikarc/gift data/<split_dir>/)
    split_dir: str
    #: where to download it and what to extract
    download: str


DATASETS: Dict[str, FgvcDataset] = {d.task: d for d in [
    FgvcDataset("cub", "CUB-200-2011", "CUB_200_2011", "images", "cub",
                "CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 "
                "(extract into $DATA_ROOT: it creates CUB_200_2011/images/)"),
    FgvcDataset("nabirds", "NABirds", "nabirds", "images", "nabirds",
                "nabirds.tar.gz from http://info.allaboutbirds.org/nabirds/ (extract into "
                "$DATA_ROOT: it creates nabirds/images/)"),
    FgvcDataset("flowers", "Oxford Flowers 102", "Flowers", "", "oxfordflowers",
                "102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ "
                "(extract into $DATA_ROOT/Flowers: it creates jpg/)"),
    FgvcDataset("dogs", "Stanford Dogs", "Dogs", "Images", "stanforddogs",
                "images.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/ (extract "
                "into $DATA_ROOT/Dogs: it creates Images/)"),
    FgvcDataset("cars", "Stanford Cars", "Cars", "", "stanfordcars",
                "the Kaggle copy jessicali9530/stanford-cars-dataset (extract into "
                "$DATA_ROOT/Cars: it creates cars_train/cars_train/ and cars_test/cars_test/)"),
]}


def get_dataset(task: str) -> FgvcDataset:
    if task not in DATASETS:
        raise DataError(f"unknown FGVC task '{task}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[task]


# --------------------------------------------------------------------------- paths
def data_root(root: str) -> Path:
    """Expand ``${DATA_ROOT}`` and check the folder exists."""
    try:
        path = Path(expand_path(root, "data.root"))
    except ConfigError as e:
        raise DataError(str(e)) from None
    if not path.is_dir():
        raise DataError(f"data root '{path}' does not exist: create it, or set DATA_ROOT / "
                        f"data.root to the folder that holds the datasets (docs/data.md)")
    return path


def splits_dir(root: Path, ds: FgvcDataset) -> Path:
    return root / SPLITS_DIRNAME / ds.split_dir


def image_dir(root: Path, ds: FgvcDataset) -> Path:
    """The image root of a dataset; a clear error when it is missing."""
    folder = root / ds.folder
    if not folder.is_dir():
        raise DataError(f"{ds.title} not found: '{folder}' does not exist. Download {ds.download}; "
                        f"then check with `python -m replicate data verify --root {root} "
                        f"--benchmark fgvc --task {ds.task}`")
    images = folder / ds.image_root if ds.image_root else folder
    if not images.is_dir():
        raise DataError(f"{ds.title}: image folder '{images}' does not exist (the dataset's own "
                        f"layout has it); re-extract {ds.download}")
    return images


# --------------------------------------------------------------------------- split files
def read_split_file(path: Path) -> Dict[str, object]:
    """One VPT split file: ordered dict image path -> class id."""
    if not path.is_file():
        raise DataError(f"split file '{path}' not found: {SPLIT_FIX}")
    try:
        data = json.loads(path.read_bytes(), object_pairs_hook=_reject_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"split file '{path}' is not valid JSON ({e}): {SPLIT_FIX}") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"split file '{path}' must be a non-empty JSON object "
                        f"{{image path: class id}}: {SPLIT_FIX}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise DataError(f"split file '{path}': class id of '{key}' is {value!r}, expected "
                            f"an integer or a string: {SPLIT_FIX}")
    return data


def _reject_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate image path '{dup}'")
    return dict(pairs)


def read_split_files(split_dir: Path) -> Dict[str, Dict[str, object]]:
    files = {s: read_split_file(split_dir / f"{s}.json") for s in FILE_SPLITS}
    seen: Dict[str, str] = {}
    for s in FILE_SPLITS:
        for key in files[s]:
            if key in seen:
                raise DataError(f"split files in '{split_dir}': '{key}' is in both "
                                f"{seen[key]}.json and {s}.json (splits must be disjoint): "
                                f"{SPLIT_FIX}")
            seen[key] = s
    return files


def class_key(class_id: object) -> Tuple[int, object]:
    """Sort class ids numerically when they are numbers or digit strings (CUB: '001')."""
    if isinstance(class_id, int) or (isinstance(class_id, str) and class_id.isdigit()):
        return (0, int(class_id))
    return (1, str(class_id))


def class_ids(files: Dict[str, Dict[str, object]]) -> List[object]:
    """The dataset's class list: sorted set of class ids over train/val/test."""
    return sorted({v for f in files.values() for v in f.values()}, key=class_key)


def label_map(task: str, files: Dict[str, Dict[str, object]], where: Path) -> Dict[object, int]:
    ids = class_ids(files)
    expected = FGVC_CLASSES[task]
    if len(ids) != expected:
        raise DataError(f"split files in '{where}' list {len(ids)} classes, {task} has {expected}: "
                        f"{SPLIT_FIX}")
    return {c: i for i, c in enumerate(ids)}


def split_entries(files: Dict[str, Dict[str, object]], split: str,
                  labels: Dict[object, int]) -> List[Tuple[str, int]]:
    """Ordered (image path, label) of a canonical split; trainval = train then val."""
    parts = ("train", "val") if split == "trainval" else (split,)
    return [(k, labels[v]) for p in parts for k, v in files[p].items()]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


# --------------------------------------------------------------------------- images
def read_image(path: str):
    """Open an image as RGB PIL (torchvision default_loader); DataError names bad files."""
    from PIL import Image
    try:
        if os.path.getsize(path) == 0:
            raise DataError(f"image '{path}' is empty (0 bytes): re-download/extract the dataset "
                            f"(docs/data.md), then run `python -m replicate data verify`")
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # decodes fully: truncated files raise here
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image '{path}' not found: re-download/extract the dataset "
                        f"(docs/data.md)") from None
    except Exception as e:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ...
        raise DataError(f"image '{path}' cannot be decoded ({type(e).__name__}: {e}): the file is "
                        f"corrupted; re-download/extract the dataset (docs/data.md)") from None


class ImageFiles(Dataset):
    """(uint8 [3, S, S], label) from image files through a PIL transform; streams from disk."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int],
                 transform: Callable[[object], torch.Tensor]):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(read_image(self.paths[i])), self.labels[i]


def check_files_exist(paths: Sequence[str], what: str, fix: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise DataError(f"{what}: {len(missing)} of {len(paths)} image files are missing, e.g.\n  "
                        f"{shown}\n{fix}")


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
