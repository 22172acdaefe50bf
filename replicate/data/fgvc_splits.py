"""FGVC split files: the dataset table and the readers of the savadikarc/gift split JSONs.

Torch-free, so that the manifest builders (``manifests.py``) and the FGVC loader (``fgvc.py``)
both use it without importing each other; ``fgvc`` re-exports every name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import DataError
from ..paths import file_sha256
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


