"""Image-file helpers shared by the FGVC and VTAB-1k loaders: the data root, decoding one image
with errors that name the file, a streaming dataset over image files, and a missing-files check.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..paths import expand_path


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
