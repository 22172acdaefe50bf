"""Micro pre-trained backbones made on the CPU: one per pre-training family the papers use.

* ``vit_micro_patch8_32.mae_digits`` (source ``mae``): masked-patch pixel reconstruction,
  :mod:`.mae`;
* ``vit_micro_patch8_32.mocov3_digits`` (source ``mocov3``): momentum contrastive learning,
  :mod:`.mocov3`;
* ``beit_micro_patch8_32.beitv2_digits`` (source ``beitv2``): masked visual-token prediction
  with an ``lm_head`` over a 1,024-word k-means codebook of the MoCo v3 micro encoder's features,
  :mod:`.beitv2`.

Each is pre-trained without labels on the 800 digits *training* images (never val or test),
with fixed seeds and one thread, in 25-55 s of CPU time each, and written in its family's official
checkpoint layout into a cache directory (``$REPLICATE_MICRO_CACHE``, default
``~/.cache/vpt-replicate/micro``; not in git).  The backbones then load through their registry
entries and the same converters as the real ViT-B/16 files, so the demo and the learning tests
run the real loading path on trained weights.  File names carry a hash of the recipe: changing
a recipe makes a new file (and new run ids), never a stale one.  With the same recipe, seed and
torch build the files regenerate byte for byte (one thread per pre-training; measured: the same
sha256 from a sequential, a parallel and a background build).  Before saving, each pre-training folds a
standardisation of the probed feature into its final LayerNorm and the layer after it, which
leaves every pre-training output unchanged (:mod:`.standardize` says why).

``ensure(cache_dir)`` builds what is missing and returns the paths; ``python -m replicate
micro-pretrain`` does the same from the shell.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..paths import file_sha256
from ..runs import atomic_write_json

#: environment variable naming the cache directory
CACHE_ENV = "REPLICATE_MICRO_CACHE"
#: bump to invalidate every cached file (the recipe hash covers the recipes themselves)
FORMAT_VERSION = 1
SEED = 0


@dataclass(frozen=True)
class MicroBackbone:
    #: the registry entry that loads the file
    entry: str
    #: pre-training family (also the module name)
    family: str
    #: file name stem and suffix (MoCo v3 releases are ``.pth.tar``)
    stem: str
    suffix: str
    #: families whose checkpoints this pre-training reads (built first)
    needs: tuple = ()


BACKBONES: Dict[str, MicroBackbone] = {
    "mae": MicroBackbone("vit_micro_patch8_32.mae_digits", "mae", "mae_micro_digits", ".pth"),
    "mocov3": MicroBackbone("vit_micro_patch8_32.mocov3_digits", "mocov3",
                            "mocov3_micro_digits", ".pth.tar"),
    # the BEiT v2 tokenizer is a k-means codebook over the MoCo v3 micro encoder's patch
    # features (BEiT v2 distils a teacher's features into its visual tokens)
    "beitv2": MicroBackbone("beit_micro_patch8_32.beitv2_digits", "beitv2",
                            "beitv2_micro_digits", ".pth", needs=("mocov3",)),
}


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "vpt-replicate" / "micro"


def recipe(family: str) -> dict:
    """The full recipe of one family (what its file name hash covers)."""
    mod = _module(family)
    deps = {d: recipe(d) for d in BACKBONES[family].needs}
    return {"format": FORMAT_VERSION, "seed": SEED, "family": family, "recipe": mod.RECIPE,
            "needs": deps}


def recipe_hash(family: str) -> str:
    blob = json.dumps(recipe(family), sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def file_name(family: str) -> str:
    b = BACKBONES[family]
    return f"{b.stem}-{recipe_hash(family)}{b.suffix}"


def checkpoint_path(family: str, cache_dir: Optional[os.PathLike] = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / file_name(family)


def _module(family: str):
    import importlib

    if family not in BACKBONES:
        raise KeyError(f"unknown micro backbone family '{family}'; one of {sorted(BACKBONES)}")
    return importlib.import_module(f"{__name__}.{family}")



def build(family: str, cache_dir: Optional[os.PathLike] = None,
          log: Callable[[str], None] = print) -> dict:
    """Pre-train ``family`` now (dependencies first if missing), write its checkpoint and a
    ``.json`` sidecar (time, k-NN accuracy, sha256); return the sidecar's content."""
    from .common import threads
    from .probe import knn_of_entry

    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    deps = {d: ensure_one(d, cache, log) for d in BACKBONES[family].needs}
    b = BACKBONES[family]
    path = checkpoint_path(family, cache)
    with threads(1):
        t0, c0 = time.time(), time.process_time()
        obj = _module(family).pretrain(SEED, log=log,
                                       deps={k: Path(v["path"]) for k, v in deps.items()})
        wall, cpu = time.time() - t0, time.process_time() - c0
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        torch.save(obj, tmp)
        os.replace(tmp, path)
        knn = knn_of_entry(b.entry, str(path))
    meta = {"family": family, "entry": b.entry, "path": str(path), "file": path.name,
            "sha256": file_sha256(path), "pretrain_wall_s": round(wall, 2),
            "pretrain_cpu_s": round(cpu, 2), "knn_val_top1": round(knn, 2),
            "data": "digits train split (800 images, labels unused)", "seed": SEED,
            "recipe": recipe(family), "smoke": True}
    atomic_write_json(_sidecar(path), meta)
    log(f"SMOKE micro pre-training {family}: {wall:.1f} s wall ({cpu:.1f} s CPU), "
        f"k-NN top-1 on digits val {knn:.1f}% -> {path}")
    return meta


def ensure_one(family: str, cache_dir: Optional[os.PathLike] = None,
               log: Callable[[str], None] = print) -> dict:
    """The sidecar of ``family``'s cached checkpoint, pre-training it first when missing."""
    if is_cached(family, cache_dir):
        meta = json.loads(_sidecar(checkpoint_path(family, cache_dir)).read_text())
        meta["cached"] = True
        return meta
    meta = build(family, cache_dir, log)
    meta["cached"] = False
    return meta


def is_cached(family: str, cache_dir: Optional[os.PathLike] = None) -> bool:
    """``family``'s checkpoint and its sidecar are in the cache."""
    path = checkpoint_path(family, cache_dir)
    return path.is_file() and _sidecar(path).is_file()


def _sidecar(checkpoint: Path) -> Path:
    """The ``.json`` beside a cached checkpoint (time, k-NN accuracy, sha256, recipe)."""
    return checkpoint.with_name(checkpoint.name + ".json")


def _build_child(family: str, cache_dir: str, quiet: bool = False) -> dict:
    return build(family, cache_dir,
                 log=(lambda s: None) if quiet else (lambda s: print("   ", s, flush=True)))


def _spawn_pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # a fresh interpreter: no forked torch state
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def build_in_background(families: List[str], cache_dir: Optional[os.PathLike] = None
                        ) -> Callable[[], Dict[str, dict]]:
    """Start pre-training the missing ``families`` (one after the other, their dependencies
    already cached) in one background process of one thread -- the same files as in the
    foreground -- so that the caller can train on the other backbones meanwhile.  Returns a
    function that waits and gives family -> sidecar; its log is quiet (the sidecar says it all)."""
    cache = str(cache_dir or default_cache_dir())
    missing = [f for f in families if not is_cached(f, cache)]
    pool = _spawn_pool(1) if missing else None
    futures = {f: pool.submit(_build_child, f, cache, True) for f in missing} if pool else {}

    def wait() -> Dict[str, dict]:
        try:
            built = {f: dict(fut.result(), cached=False) for f, fut in futures.items()}
        finally:
            if pool is not None:
                pool.shutdown()
        return {f: built.get(f) or ensure_one(f, cache) for f in families}

    return wait


def ensure(cache_dir: Optional[os.PathLike] = None, families: Optional[List[str]] = None,
           log: Callable[[str], None] = print, jobs: int = 1) -> Dict[str, dict]:
    """Every micro backbone (or ``families``) cached in ``cache_dir``; family -> sidecar.

    ``jobs`` > 1 pre-trains the missing families that depend on nothing (MAE, MoCo v3) in
    parallel processes, one thread each (the same files as one after the other: each process
    seeds itself and uses one thread)."""
    fams = families or list(BACKBONES)
    cache = str(cache_dir or default_cache_dir())
    built: Dict[str, dict] = {}
    free = [f for f in fams if not BACKBONES[f].needs and not is_cached(f, cache)]
    if jobs > 1 and len(free) > 1:
        with _spawn_pool(min(jobs, len(free))) as pool:
            for f, meta in zip(free, pool.map(_build_child, free, [cache] * len(free))):
                built[f] = dict(meta, cached=False)
    return {f: built.get(f) or ensure_one(f, cache, log) for f in fams}


def cached_checkpoint(family: str, cache_dir: Optional[os.PathLike] = None) -> str:
    """Path of ``family``'s cached file for a config with ``checkpoint=None``; a clear error
    when it has not been built."""
    from ..errors import ConfigError

    path = checkpoint_path(family, cache_dir)
    if not path.is_file():
        raise ConfigError(
            f"micro backbone '{BACKBONES[family].entry}': {path} does not exist; build it with "
            f"`python -m replicate micro-pretrain` (or `make demo`), or set {CACHE_ENV} to the "
            "directory that holds it")
    return str(path)
