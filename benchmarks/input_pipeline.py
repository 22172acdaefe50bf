#!/usr/bin/env python
"""Input-pipeline benchmark: images/s per core from image files to the network's input tensor.

Rows (``pipeline`` / ``variant``), all at the protocols' sizes (input 224; FGVC resize 256):

``fgvc / per_epoch``     what FGVC training did in every epoch before the image cache: JPEG
                         decode, RGB, VPT's ``Resize(256)`` (PIL bilinear), ``RandomCrop(224)``,
                         ``RandomHorizontalFlip``, to uint8 (``transforms.FgvcTransform``);
``fgvc / cache_build``   the one-time cost of the cache (``data/cache.py``): read, sha256,
                         decode and resize each image, write it (once per dataset split);
``fgvc / cached``        an epoch's batches from the cache: random crop + flip cut per batch
                         (``cache.FgvcCrops``), here on the CPU (on a GPU they run on the
                         device when ``data.in_memory``);
``vtab_<size> / per_image``  VTAB-1k test preparation before the cache: PNG decode and TF-v1
                         resize to 224 image by image (``transforms.VtabTransform``) in every run;
``vtab_<size> / cache_build``  decode once per task (source resolution);
``vtab_<size> / cached``  per batch of 256 from the cache: images of one size stacked and
                         resized together (``cache.Tf1Resized``), here on the CPU.

Synthetic images made in a temporary folder: FGVC-like JPEGs (quality 90, 500x375 .. 800x600,
random aspect ratios, smooth content plus noise); VTAB-like PNGs at 32x32 (CIFAR/SVHN) and at
300..500 px (Pets/DTD/SUN397-like, sizes mixed).  One process, one torch thread: images/s per
core (CPU time of the process; wall time for rows cut on a GPU).  Median of ``--repeats``
interleaved rounds.  Every row stops at the uint8 batch: normalisation (``/255``, mean/std) runs
on the training device in the engine before and after the cache alike.  Writes
``results/bench/<device>_input.csv``.

    python benchmarks/input_pipeline.py                 # CPU, writes results/bench/cpu_input.csv
    python benchmarks/input_pipeline.py --device cuda   # cached rows on the GPU (h100_input.csv)
"""
from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from replicate.data import cache  # noqa: E402
from replicate.data import transforms as T  # noqa: E402
from replicate.data.fgvc import read_image  # noqa: E402

FIELDS = ["device", "device_name", "torch", "pipeline", "variant", "image_size", "source_sizes",
          "batch", "images", "images_per_s", "ms_per_image", "speedup_vs_before", "threads",
          "repeats", "measured", "note"]


def photo_like(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """Smooth colour fields plus texture and noise: JPEG sizes of real photos at q90."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(1, 12, 2).tolist() + [rng.uniform(0, 6.3)]
        out[..., c] = 128 + 60 * np.sin(xx / w * fx + ph) * np.cos(yy / h * fy) \
            + 25 * np.sin(xx / 7.0 + yy / 11.0 + c)
    out += rng.normal(0, 12, (h, w, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def make_images(folder: Path, n: int, sizes: Callable[[np.random.RandomState], tuple], fmt: str,
                seed: int) -> List[str]:
    from PIL import Image
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = sizes(rng)
        p = folder / f"{i:04d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(photo_like(rng, h, w)).save(p, format=fmt,
                                                    **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(str(p))
    return paths


def fgvc_size(rng):  # (h, w): 500x375 .. 800x600 landscape, some portrait
    w = int(rng.randint(500, 801))
    h = int(w * rng.uniform(0.7, 0.78))
    return (h, w) if rng.rand() < 0.8 else (w, h)


def timed(fn: Callable[[], int], clock: Callable[[], float] = time.process_time) -> float:
    """Images per second of one call of ``fn`` (which returns how many images it made), by
    default per second of this process's CPU time: per core, and not slowed down by other
    processes sharing the machine (one torch thread, no workers)."""
    t = clock()
    n = fn()
    return n / (clock() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="where the cached rows cut batches")
    ap.add_argument("--fgvc-images", type=int, default=48)
    ap.add_argument("--vtab-images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64, help="FGVC batch (GateVPT: 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="CSV path (default results/bench/<device>_input.csv)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    from benchmarks.common import cpu_name, short_device_name
    dev_key = short_device_name(device)
    dev_name = cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    # CPU rows: CPU time of this process; device rows: wall time (the device's work included)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    rows: List[Dict[str, object]] = []
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")

    def row(pipeline, variant, size, sizes, batch, n, ips, before, note=""):
        rows.append({"device": dev_key, "device_name": dev_name, "torch": torch.__version__,
                     "pipeline": pipeline, "variant": variant, "image_size": size,
                     "source_sizes": sizes, "batch": batch, "images": n,
                     "images_per_s": f"{ips:.4g}", "ms_per_image": f"{1000 / ips:.4g}",
                     "speedup_vs_before": f"{ips / before:.4g}" if before else "",
                     "threads": torch.get_num_threads(), "repeats": args.repeats,
                     "measured": now, "note": note})
        print(f"{pipeline:>10} {variant:>12}  {ips:10.1f} img/s  {1000 / ips:8.3f} ms/img"
              + (f"  x{ips / before:.1f}" if before else ""), flush=True)

    with tempfile.TemporaryDirectory(prefix="input-bench-") as tmp:
        tmp = Path(tmp)
        # ---------------------------------------------------------------- FGVC
        size = 224
        resize, crop = T.fgvc_sizes(size)
        paths = make_images(tmp / "fgvc", args.fgvc_images, fgvc_size, "JPEG", 0)
        kb = np.mean([Path(p).stat().st_size for p in paths]) / 1024
        per_epoch = T.FgvcTransform(size, train=True)
        dec = cache.FgvcResize(resize)
        req = cache.Request("fgvc", "bench", "train", tmp / "fgvc", tuple(paths),
                            dec.transform(), dec)

        def before() -> int:
            for p in paths:
                per_epoch(read_image(p))
            return len(paths)

        builds, befores, afters = [], [], []
        store = None
        for r in range(args.repeats):
            befores.append(timed(before))
            root = tmp / f"cache{r}"
            builds.append(timed(lambda: len(cache.load_or_build(req, root))))
            store = cache.open_entry(cache.entry_path(root, req))
        src = cache.FgvcCrops(store, torch.zeros(len(paths), dtype=torch.long), crop, True,
                              resident=True).place(device)
        reps = max(1, 512 // len(paths))

        def after() -> int:
            g = torch.Generator().manual_seed(0)
            n = 0
            for _ in range(reps):
                order = torch.randperm(len(paths), generator=g)
                for i in range(0, len(order), args.batch):
                    n += src.batch(order[i:i + args.batch], g, device).shape[0]
            sync()
            return n

        after()  # warm-up
        for _ in range(args.repeats):
            afters.append(timed(after, clock))
        b = statistics.median(befores)
        sizes = f"JPEG q90 500x375..800x600 ({kb:.0f} KiB avg)"
        row("fgvc", "per_epoch", size, sizes, 1, len(paths), b, 0,
            "decode + Resize(256) + RandomCrop(224) + flip to uint8, per image per epoch")
        row("fgvc", "cache_build", size, sizes, 1, len(paths), statistics.median(builds), b,
            "once per dataset split: read + sha256 + decode + Resize(256) + write")
        row("fgvc", "cached", size, sizes, args.batch, reps * len(paths),
            statistics.median(afters), b,
            f"crop + flip cut per batch from the cache to uint8, on {device.type}")

        # ---------------------------------------------------------------- VTAB test
        for label, n, sizer in (
                ("vtab_32px", args.vtab_images, lambda rng: (32, 32)),
                ("vtab_var", max(16, args.vtab_images // 8),
                 lambda rng: (int(rng.randint(300, 501)), int(rng.randint(300, 501))))):
            paths = make_images(tmp / label, n, sizer, "PNG", 1)
            ref = T.VtabTransform(size)
            req = cache.Request("vtab1k", "bench", label, tmp / label, tuple(paths),
                                cache.rgb_transform(), cache.decode_rgb)

            def before_v() -> int:
                for p in paths:
                    ref(read_image(p))
                return len(paths)

            befores, builds, afters = [], [], []
            for r in range(args.repeats):
                befores.append(timed(before_v))
                root = tmp / f"vcache{label}{r}"
                builds.append(timed(lambda: len(cache.load_or_build(req, root))))
                store = cache.open_entry(cache.entry_path(root, req))
            src_v = cache.Tf1Resized(store, torch.zeros(n, dtype=torch.long), size,
                                     resident=True).place(device)

            def after_v() -> int:
                for i in range(0, n, 256):
                    src_v.batch(torch.arange(i, min(n, i + 256)), None, device)
                sync()
                return n

            after_v()
            for _ in range(args.repeats):
                afters.append(timed(after_v, clock))
            b = statistics.median(befores)
            sizes = "PNG 32x32" if label == "vtab_32px" else "PNG 300..500 px, mixed sizes"
            row(label, "per_image", size, sizes, 1, n, b, 0,
                "decode + TF-v1 resize image by image to uint8, in every run")
            row(label, "cache_build", size, sizes, 1, n, statistics.median(builds), b,
                "once per task: read + sha256 + decode + write (source resolution)")
            row(label, "cached", size, sizes, 256, n, statistics.median(afters), b,
                f"batched TF-v1 resize from the cache to uint8, on {device.type}")

    out = Path(args.out) if args.out else REPO / "results" / "bench" / f"{dev_key}_input.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
