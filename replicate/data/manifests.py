"""Split manifests: what each split of each dataset must contain, in which order.

Committed manifests live in ``replicate/data/manifests/<benchmark>/<task>.json``:

* ``fgvc/<task>.json`` -- derived from the REAL split files (savadikarc/gift at the pinned
  commit): sha256 of each file, and per split the count, the digest of the ordered image paths
  (``ids_sha256``), of the sorted paths (``ids_sorted_sha256``: tells a reordering from a
  different sample set), of the ordered ``path<TAB>label`` lines (``entries_sha256``), and the
  class list = the label map.  No image content (no images here).
* ``vtab1k/<task>.json`` -- derived from the RULE only (VPT's slicing with the TFDS catalog
  sizes; no data here): per split the TFDS split string, the count and the digest of the ordered
  sample ids ``<tfds split>:<index>``.  ``content`` is null.

``verify`` writes an *observed* manifest of a user's copy (counts, ordered ids, labels, file and
pixel digests) to :func:`observed_dir` on first use and compares later runs with it, and with
``manifests/<benchmark>/observed/`` files committed from other users' copies when present.

Regenerate the committed files (after changing a rule or the pinned split files)::

    python -m replicate data manifests --fgvc-splits $DATA_ROOT/fgvc_splits
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from ..errors import DataError

SCHEMA = "replicate-manifest/1"
MANIFEST_DIR = Path(__file__).resolve().with_name("manifests")
#: env var that moves the user-writable observed-manifest folder
OBSERVED_ENV = "REPLICATE_MANIFEST_DIR"


class DataWarning(UserWarning):
    """The data loads but differs from the protocol's (e.g. unpinned split files, lossy JPEGs)."""


# --------------------------------------------------------------------------- digests
def digest_lines(lines: Iterable[str]) -> str:
    """sha256 over ``line + '\\n'`` for each line, in order."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def id_digests(ids: Sequence[str], labels: Optional[Sequence[int]] = None) -> Dict[str, object]:
    out: Dict[str, object] = {"count": len(ids), "ids_sha256": digest_lines(ids),
                              "ids_sorted_sha256": digest_lines(sorted(ids))}
    if labels is not None:
        out["entries_sha256"] = digest_lines(f"{i}\t{y}" for i, y in zip(ids, labels))
    return out


# --------------------------------------------------------------------------- files
def committed_path(benchmark: str, task: str) -> Path:
    return MANIFEST_DIR / benchmark / f"{task}.json"


def load_committed(benchmark: str, task: str) -> dict:
    path = committed_path(benchmark, task)
    if not path.is_file():
        raise DataError(f"no committed manifest '{path}' for {benchmark}/{task}: the package is "
                        f"incomplete; reinstall it (git checkout replicate/data/manifests)")
    return json.loads(path.read_text())


def committed_observed(benchmark: str, task: str, fmt: str) -> Optional[dict]:
    path = MANIFEST_DIR / benchmark / "observed" / f"{task}.{fmt}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def observed_dir(override: Optional[str] = None) -> Path:
    """User-writable folder for observed manifests: ``override``, else $REPLICATE_MANIFEST_DIR,
    else ``$XDG_CACHE_HOME/vpt-replicate/manifests`` (default ``~/.cache/...``)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(OBSERVED_ENV):
        return Path(os.environ[OBSERVED_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vpt-replicate" / "manifests"


def observed_path(benchmark: str, task: str, fmt: str, override: Optional[str] = None) -> Path:
    return observed_dir(override) / benchmark / f"{task}.{fmt}.json"


def write_json(path: Path, obj: dict) -> None:
    """Atomic JSON write (sorted keys, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
    os.replace(tmp, path)


def image_digest(array) -> str:
    """sha256 of one decoded image: ``HxWxC`` header then the raw uint8 bytes.  Independent of
    the file encoding (PNG compression level, zlib version)."""
    import numpy as np
    a = np.ascontiguousarray(array, dtype=np.uint8)
    shape = a.shape if a.ndim == 3 else (*a.shape, 1)
    h = hashlib.sha256(("x".join(map(str, shape)) + "\n").encode())
    h.update(a.tobytes())
    return h.hexdigest()


class PixelDigest:
    """Digest of a split's pixels: :func:`digest_lines` over the per-image digests, in order
    (so per-image digests can be cached and combined)."""

    def __init__(self) -> None:
        self.images: List[str] = []

    def add(self, array) -> None:
        self.images.append(image_digest(array))

    def hexdigest(self) -> str:
        return digest_lines(self.images)


# --------------------------------------------------------------------------- builders
def build_fgvc(task: str, split_root: Path) -> dict:
    """Committed manifest of one FGVC dataset from the split files in ``split_root/<dir>/``."""
    from . import fgvc_splits as fgvc
    ds = fgvc.get_dataset(task)
    sdir = Path(split_root) / ds.split_dir
    files = fgvc.read_split_files(sdir)
    labels = fgvc.label_map(task, files, sdir)
    classes = fgvc.class_ids(files)
    splits = {}
    for split in ("train", "val", "test", "trainval"):
        entries = fgvc.split_entries(files, split, labels)
        d = id_digests([k for k, _ in entries], [y for _, y in entries])
        present = {y for _, y in entries}
        d["classes_present"] = len(present)
        d["missing_class_ids"] = [c for c in classes if labels[c] not in present]
        splits[split] = d
    return {
        "schema": SCHEMA, "benchmark": "fgvc", "task": task, "title": ds.title,
        "derived_from": f"real split files {fgvc.GIFT_REPO}@{fgvc.GIFT_COMMIT} "
                        f"data/{ds.split_dir}/{{train,val,test}}.json (no images)",
        "num_classes": len(classes),
        "class_ids": classes,
        "label_rule": "label = index of the class id in class_ids (sorted union of the ids in "
                      "train/val/test); trainval = train then val",
        "split_files": {s: {"path": f"{ds.split_dir}/{s}.json",
                            "url": f"{fgvc.GIFT_BASE_URL}/{ds.split_dir}/{s}.json",
                            "sha256": fgvc.file_sha256(sdir / f"{s}.json"),
                            "count": len(files[s])} for s in fgvc.FILE_SPLITS},
        "layout": {"folder": ds.folder, "image_root": ds.image_root},
        "splits": splits,
        "content": None,
    }


def build_vtab(task: str) -> dict:
    """Committed (rule-derived) manifest of one VTAB-1k task."""
    from .vtab_tasks import VTAB_SPLITS, get_task
    t = get_task(task)
    image_rule = {"identity_image": "decoded TFDS image, unchanged",
                  "tile_gray": "grey image tiled to 3 channels",
                  "dsprites_image": "grey image tiled to 3 channels, times 255 (uint8)"}
    splits = {}
    for split in VTAB_SPLITS:
        ids = t.sample_ids(split)
        d = id_digests(ids)
        d.update(tfds_split=t.tfds_splits()[split], first_id=ids[0], last_id=ids[-1])
        splits[split] = d
    return {
        "schema": SCHEMA, "benchmark": "vtab1k", "task": task,
        "derived_from": "rule only (no data): KMnP/vpt src/data/vtab_datasets slicing with the "
                        f"TFDS catalog sizes of {t.builder} {t.version}",
        "num_classes": t.num_classes,
        "tfds": {"builder": t.builder, "version": t.version, "vpt_request": t.pattern,
                 "catalog_sizes": dict(t.catalog_sizes)},
        "label_rule": t.label_rule,
        "image_rule": image_rule[t.image.__name__],
        "splits": splits,
        "content": None,
    }


def regenerate(fgvc_splits: Optional[str]) -> List[Path]:
    from .tasks import FGVC_CLASSES, VTAB_TASKS
    written = []
    for task in VTAB_TASKS:
        path = committed_path("vtab1k", task)
        write_json(path, build_vtab(task))
        written.append(path)
    if fgvc_splits:
        for task in FGVC_CLASSES:
            path = committed_path("fgvc", task)
            write_json(path, build_fgvc(task, Path(fgvc_splits)))
            written.append(path)
    return written
