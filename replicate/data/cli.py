"""``python -m replicate data {verify,fgvc-splits,export-vtab,cache,manifests}``.

The top-level CLI mounts these with :func:`add_subcommands`; every leaf parser sets
``func(args) -> int`` (exit status).  ``python -m replicate.data.cli ...`` runs them standalone.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..benchmarks import all_benchmarks, get_benchmark
from . import DataError
from .tasks import FGVC_CLASSES, VTAB_TASKS


def _data_benchmarks(cached: bool = False) -> list:
    """Benchmarks with real data (not smoke); ``cached``: those whose loader module builds the
    decoded-image cache (it has ``cache_requests``)."""
    return [b for b in all_benchmarks(published=True) if b.loader or not cached]


def _verify(args: argparse.Namespace) -> int:
    from .verify import report, verify
    vtab_content = not args.fast
    fgvc_content = args.full and not args.fast
    findings = verify(args.root, args.benchmark, args.task, fmt=args.format,
                      vtab_content=vtab_content, fgvc_content=fgvc_content,
                      manifest_dir=args.manifest_dir, write=not args.no_write)
    print(report(findings))
    return 1 if any(f.level == "error" for f in findings) else 0


def _fgvc_splits(args: argparse.Namespace) -> int:
    from .fgvc import GIFT_BASE_URL, fetch_split_files
    fetch_split_files(args.dest, args.dataset or None, base_url=args.base_url or GIFT_BASE_URL,
                      source_dir=args.from_dir, force=args.force)
    return 0


def _export_vtab(args: argparse.Namespace) -> int:
    from .vtab_export import export_many
    export_many(args.task, args.tfds_dir, args.dest, prepare=args.prepare,
                manual_dir=args.manual_dir, allow_version_drift=args.allow_version_drift,
                overwrite=args.overwrite)
    return 0


def _cache(args: argparse.Namespace) -> int:
    """Build (or with --verify, check in full) the decoded-image cache entries of datasets."""
    import warnings

    from ..config import DataSpec
    import importlib

    from . import cache, load
    from .manifests import DataWarning
    bench = get_benchmark(args.benchmark)
    tasks = args.task or sorted(bench.tasks)
    root = cache.cache_root(args.cache_root or "")
    if root is None:
        raise DataError("the image cache is off (data.cache_root / $REPLICATE_CACHE_ROOT = "
                        "'off'): nothing to build or verify")
    bad = 0
    for task in tasks:
        spec = DataSpec(args.benchmark, task, root=args.root, format=args.format,
                        image_size=args.image_size, num_workers=args.workers,
                        cache_root=str(root))
        if args.verify:
            module = importlib.import_module(bench.loader)
            for req in module.cache_requests(spec):
                entry = cache.entry_path(root, req)
                why = cache.stale_reason(req, entry, full=True)
                print(f"{'ok   ' if why is None else 'STALE'} {entry}"
                      + ("" if why is None else f": {why} (rebuilt on next use, or run "
                         f"`python -m replicate data cache` without --verify)"))
                bad += why is not None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # `data verify` reports those
            for split in bench.split_names:  # the splits on disk (not composed ones)
                load(spec, split, train=False)
        print(f"ok    {args.benchmark}/{task}: cached under {root / args.benchmark / task}")
    return 1 if bad else 0


def _manifests(args: argparse.Namespace) -> int:
    from .manifests import regenerate
    for p in regenerate(args.fgvc_splits):
        print(p)
    return 0


def add_subcommands(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` (with verify / fgvc-splits / export-vtab) to a top-level subparsers object."""
    data = subparsers.add_parser("data", help="prepare and verify FGVC / VTAB-1k data",
                                 description="Prepare and verify datasets (docs/data.md).")
    sub = data.add_subparsers(dest="data_command",
                              metavar="{verify,fgvc-splits,export-vtab,cache,manifests}")
    sub.required = True

    p = sub.add_parser("verify", help="check a data root against the split manifests",
                       description="Check datasets under --root against the committed split "
                                   "manifests; report each mismatch with its fix. Exit 1 on "
                                   "errors.")
    p.add_argument("--root", required=True, help="the data root ($DATA_ROOT)")
    p.add_argument("--benchmark", choices=[b.name for b in _data_benchmarks()],
                   help="only this benchmark (then a missing dataset is an error)")
    p.add_argument("--task", choices=sorted(FGVC_CLASSES) + sorted(VTAB_TASKS),
                   help="only this dataset/task")
    p.add_argument("--format", default="auto", choices=("auto", "replicate", "noah"),
                   help="VTAB-1k copy format")
    p.add_argument("--fast", action="store_true",
                   help="do not decode images (no pixel digests, no observed manifest content)")
    p.add_argument("--full", action="store_true", help="also decode every FGVC image")
    p.add_argument("--manifest-dir", help="where observed manifests are kept (default "
                   "$REPLICATE_MANIFEST_DIR or ~/.cache/vpt-replicate/manifests)")
    p.add_argument("--no-write", action="store_true", help="never write observed manifests")
    p.set_defaults(func=_verify)

    p = sub.add_parser("fgvc-splits", help="download the pinned FGVC split files",
                       description="Download VPT-format FGVC split files (savadikarc/gift at the "
                                   "pinned commit) into DEST/<dataset>/{train,val,test}.json and "
                                   "verify their sha256.")
    p.add_argument("--dest", required=True, help="target folder, normally $DATA_ROOT/fgvc_splits")
    p.add_argument("--dataset", action="append", choices=sorted(FGVC_CLASSES),
                   help="only these datasets (repeatable; default all five)")
    p.add_argument("--from", dest="from_dir", help="copy from a local folder with the same "
                   "layout instead of downloading (checksums are still verified)")
    p.add_argument("--base-url", help="alternative base URL (a mirror); checksums still apply")
    p.add_argument("--force", action="store_true", help="re-fetch files that already match")
    p.set_defaults(func=_fgvc_splits)

    p = sub.add_parser("export-vtab", help="export VTAB-1k from TFDS to lossless PNG folders",
                       description="Export VTAB-1k tasks from TensorFlow Datasets (optional "
                                   "extra) at VPT's versions and slicing into DEST/<task>/.")
    p.add_argument("--task", action="append", default=[],
                   choices=sorted(VTAB_TASKS) + ["all"], help="task (repeatable; default all)")
    p.add_argument("--tfds-dir", required=True, help="TFDS data_dir (VPT's DATA.DATAPATH)")
    p.add_argument("--dest", required=True, help="output folder, normally $DATA_ROOT/vtab1k")
    p.add_argument("--prepare", action="store_true",
                   help="run TFDS download_and_prepare first (needs internet)")
    p.add_argument("--manual-dir", help="TFDS manual_dir (resisc45, diabetic_retinopathy)")
    p.add_argument("--allow-version-drift", action="store_true",
                   help="accept a TFDS version other than VPT's (splits may hold other images)")
    p.add_argument("--overwrite", action="store_true", help="redo complete exports")
    p.set_defaults(func=_export_vtab)

    p = sub.add_parser("cache", help="decode datasets once into the image cache (or verify it)",
                       description="Build the decoded-image cache entries of FGVC datasets "
                                   "(resized as VPT, shorter side 256 at image size 224) or "
                                   "VTAB-1k tasks (source resolution) ahead of the runs, which "
                                   "would otherwise build them on first use; --verify re-hashes "
                                   "every source file and cached pixel. Exit 1 on a stale entry.")
    p.add_argument("--root", required=True, help="the data root ($DATA_ROOT)")
    p.add_argument("--benchmark", required=True,
                   choices=[b.name for b in _data_benchmarks(cached=True)])
    p.add_argument("--task", action="append", default=[],
                   choices=[t for b in _data_benchmarks(cached=True) for t in sorted(b.tasks)],
                   help="dataset/task (repeatable; default all of the benchmark)")
    p.add_argument("--format", default="auto", help="on-disk format (data.format)")
    p.add_argument("--image-size", type=int, default=224, help="network input size (FGVC "
                   "caches the resize that goes with it)")
    p.add_argument("--workers", type=int, default=8, help="decoding processes")
    p.add_argument("--cache-root", help="cache folder (default $REPLICATE_CACHE_ROOT or "
                   "~/.cache/vpt-replicate/images)")
    p.add_argument("--verify", action="store_true", help="check existing entries in full "
                   "instead of building")
    p.set_defaults(func=_cache)

    p = sub.add_parser("manifests", help="(maintainers) regenerate the committed manifests",
                       description="Rewrite replicate/data/manifests/: VTAB-1k from the rules, "
                                   "FGVC from --fgvc-splits (the pinned split files).")
    p.add_argument("--fgvc-splits", help="folder with <dataset>/{train,val,test}.json; without "
                   "it only the VTAB-1k manifests are rewritten")
    p.set_defaults(func=_manifests)
    return data


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m replicate")
    add_subcommands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
