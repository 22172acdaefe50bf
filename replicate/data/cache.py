"""Decoded-image cache: decode (and resize) each source image once per dataset split, then cut
batches from the uint8 pixels on the training device.

Why: decoding a JPEG and resizing it costs 4-18 ms per image per core, and FGVC training did it
in every epoch (100 epochs: 100 decodes per image).  VTAB-1k test sets (up to 73,728 images)
were decoded and resized in each of a task's runs.  Here the work is done once per dataset
split; every run then memory-maps the result.

What is cached (one *entry* per benchmark / task / split file list / transform):

* FGVC (``vpt-fgvc``): each image after VPT's ``Resize(shorter side -> R)`` exactly as the
  per-epoch path computes it (the same ``torchvision.transforms.Resize`` call on the same PIL
  image), so a random crop + flip cut from the cache equals the per-epoch pipeline's output
  bit for bit (tests/test_data_cache.py).  The images keep their aspect ratios: they are stored
  as a ragged set (one flat uint8 buffer, HxWx3 per image, with an index of offsets and sizes).
* VTAB-1k (``vpt-vtab``): each image at its source resolution (decoded RGB); the TF-v1 bilinear
  resize to ``image_size`` runs per batch on the device (:class:`Tf1Resized`), with the same
  float32 operations as the CPU reference :func:`.transforms.tf1_resize_bilinear`.

Entry layout: ``<root>/<benchmark>/<task>/<split>-<key>/{images.u8, index.npy, meta.json}``
where ``key`` hashes the transform and the ordered list of source files.  ``meta.json`` records
the sha256 (with size and mtime) of every source file and of the cached pixels.  On each load a
file whose size or mtime changed is re-hashed; any content change, a different file list or a
different transform (including the Pillow / torchvision versions that produce the pixels)
rebuilds the entry (a changed file list or transform gets an entry of its own: delete old
ones to reclaim space).  Entries are built in a temporary folder and renamed into place
(atomic), under a lock file so that concurrent runs build an entry once.  ``python -m replicate data
cache`` builds entries ahead of time and verifies them in full (pixels re-hashed).

Root: ``data.cache_root`` in the experiment config, else ``$REPLICATE_CACHE_ROOT``, else
``$XDG_CACHE_HOME/vpt-replicate/images`` (default ``~/.cache/...``).  ``off`` (or ``none``)
decodes once per run into memory and writes nothing.  Sizes: FGVC caches at shorter side 256
take ~0.26 MB per image (CUB 3 GB, NABirds 13 GB, all five ~28 GB).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import DataError
from ..paths import file_sha256

FORMAT = "replicate-image-cache/1"
#: environment variable that moves the cache (the config key ``data.cache_root`` wins)
CACHE_ENV = "REPLICATE_CACHE_ROOT"
OFF = ("off", "none")


# --------------------------------------------------------------------------- root
def cache_root(value: str = "") -> Optional[Path]:
    """The cache folder for ``data.cache_root`` = ``value`` ('' = env var or default), or None
    when caching is off."""
    value = (value or os.environ.get(CACHE_ENV, "")).strip()
    if value.lower() in OFF:
        return None
    if value:
        from ..errors import ConfigError
        from ..paths import expand_path
        try:
            return Path(expand_path(value, "data.cache_root")).expanduser()
        except ConfigError as e:
            raise DataError(str(e)) from None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vpt-replicate" / "images"


# --------------------------------------------------------------------------- ragged images
class RaggedImages:
    """N uint8 ``H x W x 3`` images of different sizes, packed in flat buffers.

    ``parts``: flat uint8 buffers (one per concatenated store: trainval = train + val);
    ``index``: int64 ``[N, 4]`` rows ``(part, byte offset, height, width)``.
    """

    def __init__(self, parts: Sequence[torch.Tensor], index: torch.Tensor):
        self.parts = list(parts)
        self.index = index.to(torch.int64)
        self.rows: List[List[int]] = self.index.tolist()  # python ints: views without syncs

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def device(self) -> torch.device:
        return self.parts[0].device if self.parts else torch.device("cpu")

    @property
    def nbytes(self) -> int:
        return sum(p.numel() for p in self.parts)

    def to(self, device: torch.device) -> "RaggedImages":
        if all(p.device == torch.device(device) for p in self.parts):
            return self
        return RaggedImages([p.to(device) for p in self.parts], self.index)

    def size(self, i: int) -> Tuple[int, int]:
        return self.rows[i][2], self.rows[i][3]

    def view(self, i: int) -> torch.Tensor:
        """Image ``i`` as an ``H x W x 3`` view of the buffer (no copy)."""
        part, off, h, w = self.rows[i]
        return self.parts[part][off:off + h * w * 3].view(h, w, 3)

    def array(self, i: int) -> np.ndarray:
        """Image ``i`` as an ``H x W x 3`` numpy view (host stores only)."""
        if not hasattr(self, "_np"):
            self._np = [p.numpy() for p in self.parts]
        part, off, h, w = self.rows[i]
        return self._np[part][off:off + h * w * 3].reshape(h, w, 3)

    @staticmethod
    def concat(stores: Sequence["RaggedImages"]) -> "RaggedImages":
        parts, rows = [], []
        for s in stores:
            idx = s.index.clone()
            idx[:, 0] += len(parts)
            parts += s.parts
            rows.append(idx)
        return RaggedImages(parts, torch.cat(rows))

    @staticmethod
    def from_arrays(arrays: Sequence[np.ndarray]) -> "RaggedImages":
        """From ``H x W x 3`` uint8 arrays (in memory)."""
        index, off = [], 0
        for a in arrays:
            index.append((0, off, a.shape[0], a.shape[1]))
            off += a.size
        flat = np.concatenate([np.ascontiguousarray(a).reshape(-1) for a in arrays]) \
            if arrays else np.zeros(0, np.uint8)
        return RaggedImages([torch.from_numpy(flat)], torch.tensor(index, dtype=torch.int64)
                            .view(-1, 4))


# --------------------------------------------------------------------------- batch sources
class FgvcCrops:
    """Batches of VPT's FGVC crops cut from resized images: random crop ``S`` + horizontal flip
    (p=0.5) when training, torchvision's ``CenterCrop(S)`` otherwise; uint8 ``[B, 3, S, S]``.

    Training draws, per batch, ``rand(3, B, float64)`` from the epoch generator: crop top =
    ``floor(u0 * (H - S + 1))``, left = ``floor(u1 * (W - S + 1))``, flip = ``u2 < 0.5`` -- the
    distribution of torchvision's RandomCrop / RandomHorizontalFlip, drawn from (seed, epoch)
    only (so a resumed run equals an uninterrupted one, whatever the number of workers).
    """

    def __init__(self, store: RaggedImages, labels: torch.Tensor, size: int, train: bool,
                 resident: bool):
        self.store, self.labels, self.size, self.train = store, labels, size, train
        #: hold the whole store on the training device (``data.in_memory``)
        self.resident = resident
        for i in range(len(store)):
            h, w = store.size(i)
            if h < size or w < size:
                raise DataError(f"cached image {i} is {h}x{w}, smaller than the crop {size}: "
                                f"the cache entry does not fit this image_size; delete it")

    def __len__(self) -> int:
        return len(self.store)

    def place(self, device: torch.device) -> "FgvcCrops":
        """This source with its store on ``device`` when resident (else left in host memory)."""
        if not self.resident:
            return self
        return FgvcCrops(self.store.to(device), self.labels, self.size, self.train, True)

    def draw(self, idx: Sequence[int], g: Optional[torch.Generator]
             ) -> Tuple[List[int], List[int], Optional[torch.Tensor]]:
        """(tops, lefts, flip mask or None) of a batch."""
        s = self.size
        sizes = [self.store.size(i) for i in idx]
        if not self.train:  # torchvision center_crop: int(round((H - S) / 2.0))
            return ([int(round((h - s) / 2.0)) for h, _ in sizes],
                    [int(round((w - s) / 2.0)) for _, w in sizes], None)
        if g is None:
            raise ValueError("training crops need the epoch generator")
        u = torch.rand((3, len(idx)), generator=g, dtype=torch.float64)
        tops = [int(a * (h - s + 1)) for a, (h, _) in zip(u[0].tolist(), sizes)]
        lefts = [int(a * (w - s + 1)) for a, (_, w) in zip(u[1].tolist(), sizes)]
        return tops, lefts, u[2] < 0.5

    def cut(self, idx: Sequence[int], tops: Sequence[int], lefts: Sequence[int],
            flip: Optional[torch.Tensor], device: torch.device,
            use_numpy: Optional[bool] = None) -> torch.Tensor:
        """The crops (on the store's device), moved to ``device``, flipped there.  A host store
        is cut with numpy (``use_numpy``: force either implementation; same result)."""
        s = self.size
        if use_numpy is None:
            use_numpy = self.store.device.type == "cpu"
        if use_numpy:  # numpy copies strided views ~7x faster than torch on a CPU
            x = torch.from_numpy(np.stack([self.store.array(i)[t:t + s, l:l + s].transpose(2, 0, 1)
                                           for i, t, l in zip(idx, tops, lefts)]))
        else:
            x = torch.stack([self.store.view(i)[t:t + s, l:l + s].permute(2, 0, 1)
                             for i, t, l in zip(idx, tops, lefts)])
        x = x.to(device, non_blocking=True)
        if flip is not None and bool(flip.any()):
            if x.device.type == "cpu":  # per image: cheaper than a masked copy on a CPU
                for k in flip.nonzero().flatten().tolist():
                    x[k] = x[k].flip(-1)
            else:  # one kernel, no host sync (boolean indexing would sync)
                m = flip.to(device, non_blocking=True).view(-1, 1, 1, 1)
                x = torch.where(m, x.flip(-1), x)
        return x

    def batch(self, idx: torch.Tensor, g: Optional[torch.Generator],
              device: torch.device) -> torch.Tensor:
        ids = idx.tolist()
        tops, lefts, flip = self.draw(ids, g)
        return self.cut(ids, tops, lefts, flip, device)

    def item(self, i: int) -> torch.Tensor:
        """One crop drawing from torch's global RNG in torchvision's order (RandomCrop's two
        ``randint`` then RandomHorizontalFlip's ``rand``): for DataLoader use and tests."""
        h, w = self.store.size(i)
        s = self.size
        if not self.train:
            t, l, f = int(round((h - s) / 2.0)), int(round((w - s) / 2.0)), False
        else:
            t, l = (0, 0) if (h, w) == (s, s) else (
                int(torch.randint(0, h - s + 1, size=(1,))), int(torch.randint(0, w - s + 1,
                                                                               size=(1,))))
            f = bool(torch.rand(1) < 0.5)
        x = self.store.view(i)[t:t + s, l:l + s].permute(2, 0, 1)
        return (x.flip(-1) if f else x).contiguous()


class Tf1Resized:
    """Batches of source-resolution images resized to ``S x S`` with the TF-v1 bilinear rule
    (``vpt-vtab``): images of one size are stacked and resized together on ``device`` by
    :func:`.transforms.tf1_resize_bilinear_batched`, which applies the CPU reference's float32
    operations to the same inputs, so the result is bit-identical to
    :func:`.transforms.tf1_resize_bilinear` (element-wise ops, no fused multiply-add in eager
    mode; tests/test_data_cache.py)."""

    def __init__(self, store: RaggedImages, labels: torch.Tensor, size: int, resident: bool):
        self.store, self.labels, self.size, self.resident = store, labels, size, resident
        self.train = False

    def __len__(self) -> int:
        return len(self.store)

    def place(self, device: torch.device) -> "Tf1Resized":
        if not self.resident:
            return self
        return Tf1Resized(self.store.to(device), self.labels, self.size, True)

    def batch(self, idx: torch.Tensor, g: Optional[torch.Generator],
              device: torch.device) -> torch.Tensor:
        from . import transforms as T
        ids = idx.tolist()
        s = self.size
        out = torch.empty((len(ids), 3, s, s), dtype=torch.uint8, device=device)
        groups: Dict[Tuple[int, int], List[int]] = {}
        for pos, i in enumerate(ids):
            groups.setdefault(self.store.size(i), []).append(pos)
        # on a CPU a few images at a time keep the float intermediates in cache
        chunk = 2 if device.type == "cpu" else len(ids)
        for same_size in groups.values():
            for k in range(0, len(same_size), chunk):
                positions = same_size[k:k + chunk]
                x = torch.stack([self.store.view(ids[p]) for p in positions])
                x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)
                y = T.to_uint8(T.tf1_resize_bilinear_batched(x, (s, s)))
                if len(positions) == len(ids):
                    return y.contiguous()
                if positions == list(range(positions[0], positions[0] + len(positions))):
                    out[positions[0]:positions[0] + len(positions)] = y
                else:
                    out[torch.tensor(positions, device=device)] = y
        return out

    def all(self, device: torch.device = torch.device("cpu"), chunk: int = 256) -> torch.Tensor:
        """Every image resized, uint8 ``[N, 3, S, S]`` on ``device``."""
        n = len(self.store)
        out = torch.empty((n, 3, self.size, self.size), dtype=torch.uint8, device=device)
        for i in range(0, n, chunk):
            out[i:i + chunk] = self.batch(torch.arange(i, min(n, i + chunk)), None, device)
        return out

    def item(self, i: int) -> torch.Tensor:
        return self.batch(torch.tensor([i]), None, torch.device("cpu"))[0]


class CachedDataset(torch.utils.data.Dataset):
    """Map-style view of a batch source: ``(uint8 [3, S, S], label)`` per index, for code that
    wants a Dataset (DataLoader fallback, tests); the engine cuts whole batches instead."""

    def __init__(self, source, paths: Sequence[str]):
        self.source, self.paths = source, list(paths)
        self.labels = source.labels.tolist()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.source.item(i), self.labels[i]


# --------------------------------------------------------------------------- entries
@dataclass(frozen=True)
class Request:
    """What to cache: ``files`` (absolute paths, in split order) named relative to ``base``,
    decoded by ``decode(bytes, path) -> H x W x 3 uint8`` described by ``transform``."""
    benchmark: str
    task: str
    split: str
    base: Path
    files: Tuple[str, ...]
    transform: Tuple[Tuple[str, object], ...]
    decode: Callable[[bytes, str], np.ndarray]

    def rel(self) -> List[str]:
        return [os.path.relpath(f, self.base) for f in self.files]

    def transform_dict(self) -> dict:
        return dict(self.transform)

    def slot(self) -> str:
        blob = json.dumps({"transform": self.transform_dict(), "files": self.rel()},
                          sort_keys=True).encode()
        return f"{self.split}-{hashlib.sha256(blob).hexdigest()[:16]}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"image '{path}' not found: re-download/extract the dataset "
                        f"(docs/data.md)") from None


class _Decode(torch.utils.data.Dataset):
    """Worker side of a build: read, hash, stat and decode one file."""

    def __init__(self, req: Request):
        self.req = req

    def __len__(self) -> int:
        return len(self.req.files)

    def __getitem__(self, i: int):
        path = self.req.files[i]
        st = os.stat(path) if os.path.exists(path) else None
        data = _read(path)
        array = np.array(self.req.decode(data, path), dtype=np.uint8, order="C")  # writable
        if array.ndim != 3 or array.shape[2] != 3:
            raise DataError(f"image '{path}' decoded to shape {array.shape}, expected HxWx3")
        return (torch.from_numpy(array), sha256_bytes(data), st.st_size, st.st_mtime_ns)


def _identity(x):
    return x


def _decoded(req: Request, workers: int) -> Iterator[tuple]:
    ds = _Decode(req)
    workers = min(workers, os.cpu_count() or 1)
    if workers < 2 or len(ds) < 256:  # starting workers costs more than it saves
        for i in range(len(ds)):
            yield ds[i]
        return
    from ..errors import unwrap_worker_error
    loader = iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                              collate_fn=_identity, prefetch_factor=4))
    while True:
        try:
            item = next(loader)
        except StopIteration:
            return
        except Exception as e:  # a worker's DataError, without the worker's traceback
            raise unwrap_worker_error(e) from None
        yield item


def _digest_rows(rel: Sequence[str], shas: Sequence[str]) -> str:
    h = hashlib.sha256()
    for r, s in zip(rel, shas):
        h.update(f"{r}\t{s}\n".encode())
    return h.hexdigest()


def build_in_memory(req: Request, workers: int = 0) -> RaggedImages:
    """Decode every file of ``req`` into memory (cache off)."""
    return RaggedImages.from_arrays([a.numpy() for a, *_ in _decoded(req, workers)])


def _build_entry(req: Request, final: Path, workers: int, log: Callable[[str], None]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.build-"))
    log(f"cache: decoding {len(req.files)} images of {req.benchmark}/{req.task}/{req.split} "
        f"into {final} (once)")
    try:
        index, files, off = [], [], 0
        data_hash = hashlib.sha256()
        rel = req.rel()
        with open(tmp / "images.u8", "wb") as f:
            for n, (array, sha, size, mtime) in enumerate(_decoded(req, workers)):
                raw = array.numpy().tobytes()
                f.write(raw)
                data_hash.update(raw)
                index.append((0, off, array.shape[0], array.shape[1]))
                off += len(raw)
                files.append([rel[n], size, mtime, sha])
            f.flush()
            os.fsync(f.fileno())
        index_arr = np.asarray(index, dtype=np.int64).reshape(-1, 4)
        np.save(tmp / "index.npy", index_arr)
        meta = {"format": FORMAT, "benchmark": req.benchmark, "task": req.task,
                "split": req.split, "transform": req.transform_dict(), "count": len(files),
                "base": str(req.base), "files": files,
                "sources_sha256": _digest_rows(rel, [r[3] for r in files]),
                "data_bytes": off, "data_sha256": data_hash.hexdigest(),
                "index_sha256": sha256_bytes(index_arr.tobytes())}
        from .manifests import write_json
        write_json(tmp / "meta.json", meta)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log(f"cache: wrote {final} ({len(files)} images, {off / 2**20:.0f} MiB)")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def stale_reason(req: Request, entry: Path, full: bool = False) -> Optional[str]:
    """Why ``entry`` cannot serve ``req`` (None: it can).  Files whose size/mtime changed are
    re-hashed; ``full`` re-hashes every source file and the cached pixels."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return "no entry"
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        return f"unreadable meta.json ({e})"
    if meta.get("format") != FORMAT:
        return f"format {meta.get('format')!r} (this code writes {FORMAT})"
    if meta.get("transform") != json.loads(json.dumps(req.transform_dict())):
        return f"transform changed: cached {meta.get('transform')}, wanted {req.transform_dict()}"
    rel = req.rel()
    files = meta.get("files", [])
    if [r[0] for r in files] != rel:
        return "the list of source files changed"
    for path, (name, size, mtime, sha) in zip(req.files, files):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f"source file '{path}' is missing"
        if full or st.st_size != size or st.st_mtime_ns != mtime:
            if file_sha256(Path(path)) != sha:
                return f"source file '{path}' changed (sha256 differs from the cached one)"
    data = entry / "images.u8"
    if not data.is_file() or data.stat().st_size != meta.get("data_bytes"):
        return f"'{data}' is missing or has the wrong size"
    try:
        index = np.load(entry / "index.npy")
    except (OSError, ValueError) as e:
        return f"unreadable index.npy ({e})"
    if sha256_bytes(np.ascontiguousarray(index, dtype=np.int64).tobytes()) != \
            meta.get("index_sha256"):
        return "index.npy differs from meta.json"
    if full and file_sha256(data) != meta.get("data_sha256"):
        return f"'{data}' is corrupted (sha256 differs from meta.json)"
    return None


def open_entry(entry: Path) -> RaggedImages:
    """Memory-map an entry (copy-on-write: the file is never modified)."""
    index = torch.from_numpy(np.load(entry / "index.npy"))
    path = entry / "images.u8"
    size = path.stat().st_size
    flat = np.memmap(path, dtype=np.uint8, mode="c", shape=(size,)) if size else \
        np.zeros(0, np.uint8)
    return RaggedImages([torch.from_numpy(flat)], index)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (flock; concurrent runs build an entry once)."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def entry_path(root: Path, req: Request) -> Path:
    return root / req.benchmark / req.task / req.slot()


def load_or_build(req: Request, root: Optional[Path], workers: int = 0,
                  log: Callable[[str], None] = lambda s: None) -> RaggedImages:
    """The cached images of ``req``: the entry under ``root`` (built or rebuilt when missing
    or stale), or decoded into memory when ``root`` is None (cache off)."""
    if root is None:
        return build_in_memory(req, workers)
    entry = entry_path(root, req)
    try:
        with _locked(entry.with_name(f".{entry.name}.lock")):
            why = stale_reason(req, entry)
            if why is not None:
                if why != "no entry":
                    log(f"cache: rebuilding {entry}: {why}")
                _build_entry(req, entry, workers, log)
    except OSError as e:
        if e.filename and not str(e.filename).startswith(str(root)):
            raise
        raise DataError(f"cannot write the image cache under '{root}' ({e}): set "
                        f"data.cache_root or ${CACHE_ENV} to a writable folder, or 'off' to "
                        f"decode in memory for each run") from None
    return open_entry(entry)


# --------------------------------------------------------------------------- decoders
def pil_rgb(data: bytes, path: str):
    """Decode bytes to an RGB PIL image exactly as ``fgvc.read_image`` does (same errors)."""
    from PIL import Image
    if not data:
        raise DataError(f"image '{path}' is empty (0 bytes): re-download/extract the dataset "
                        f"(docs/data.md), then run `python -m replicate data verify`")
    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as e:  # PIL raises OSError, UnidentifiedImageError, SyntaxError, ...
        raise DataError(f"image '{path}' cannot be decoded ({type(e).__name__}: {e}): the file "
                        f"is corrupted; re-download/extract the dataset (docs/data.md)") from None


def versions() -> Tuple[Tuple[str, object], ...]:
    import PIL
    import torchvision
    return (("pillow", PIL.__version__), ("torchvision", torchvision.__version__))


class FgvcResize:
    """Decoder of FGVC entries: RGB, then ``torchvision.transforms.Resize(R)`` (shorter side ->
    R, PIL bilinear) -- the per-epoch path's first step (``transforms.FgvcTransform``)."""

    def __init__(self, resize: int):
        import torchvision.transforms as tv
        self.resize = resize
        self.op = tv.Resize(resize)

    def __call__(self, data: bytes, path: str) -> np.ndarray:
        return np.asarray(self.op(pil_rgb(data, path)), dtype=np.uint8)

    def transform(self) -> Tuple[Tuple[str, object], ...]:
        return (("op", "torchvision.Resize(shorter side, PIL bilinear) of RGB"),
                ("resize", self.resize)) + versions()


def decode_rgb(data: bytes, path: str) -> np.ndarray:
    """Decoder of VTAB entries: the RGB pixels at source resolution (``fgvc.read_image``)."""
    return np.asarray(pil_rgb(data, path), dtype=np.uint8)


def rgb_transform() -> Tuple[Tuple[str, object], ...]:
    return (("op", "decode RGB, source resolution"),) + versions()[:1]
