"""Export VTAB-1k tasks from TFDS to the lossless ``replicate`` format read by :mod:`.vtab`.

Needs ``tensorflow`` and ``tensorflow-datasets`` (an optional extra, imported lazily; the tests
never need it).  For every task it opens the TFDS builder at the exact version VPT ran
(KMnP/vpt ``VTAB_SETUP.md``), checks the split sizes against the TFDS catalog numbers the rules
were derived with, slices train800 / val200 / test exactly as VPT's task files
(:mod:`.vtab_tasks`, cross-checked with TFDS's own ``ReadInstruction``), derives the labels with
the numpy functions of :mod:`.vtab_tasks`, and writes::

    <dest>/<task>/images/<tfds split>/<index:07d>.png   decoded TFDS pixels, PNG (lossless)
    <dest>/<task>/{train800,val200,train800val200,test}.txt   "images/train/0000012.png 3"
    <dest>/<task>/source_ids.json   TFDS id/file-name feature per split, when TFDS has one
    <dest>/<task>/manifest.json     versions, sizes, split strings, counts, digests (last)

The images are the decoded TFDS images after VPT's per-task conversion (grey -> RGB tiling,
dSprites x255), BEFORE the resize, which the reader applies (``vpt-vtab``).
"""
from __future__ import annotations

import datetime as _dt
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import DataError
from .manifests import PixelDigest, digest_lines, id_digests, write_json
from .vtab import EXPORT_FORMAT
from .vtab_tasks import TASKS, VTAB_SPLITS, VtabTask, get_task, parse_split_spec

#: TFDS features that name an example (recorded to cross-check VPT's vtab_trainval_splits.json)
ID_FEATURES = ("id", "file_name", "filename", "image/file_name", "image/filename", "name")
INSTALL_FIX = ("install the export extra: pip install tensorflow tensorflow-datasets "
               "(VPT ran tfds-nightly 4.4.0; see docs/data.md)")

#: (tfds split, start, stop) -> iterator over examples (dicts of numpy arrays) in TFDS order
ExampleSource = Callable[[str, int, int], Iterable[Mapping]]


def _png_write(path: Path, image: np.ndarray) -> None:
    from PIL import Image
    tmp = path.with_name(path.name + ".part")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def _source_id(example: Mapping) -> Optional[str]:
    for key in ID_FEATURES:
        if key in example:
            v = np.asarray(example[key])
            v = v.item() if v.ndim == 0 else v
            return v.decode() if isinstance(v, bytes) else str(v)
    return None


def export_examples(t: VtabTask, dest: Path, sizes: Mapping[str, int], source: ExampleSource,
                    provenance: Mapping, log: Callable[[str], None] = print) -> Path:
    """Write one task from an example source (TFDS, or a fake in the tests)."""
    task_dir = Path(dest) / t.task
    (task_dir / "manifest.json").unlink(missing_ok=True)  # present only when complete
    specs = t.tfds_splits(sizes)
    lists: Dict[str, List[Tuple[str, int]]] = {}
    digests: Dict[str, str] = {}
    pixels: Dict[str, PixelDigest] = {}
    source_ids: Dict[str, List[Optional[str]]] = {}
    for name in ("train800", "val200", "test"):
        entries, pix, sids = [], PixelDigest(), []
        for split, start, stop in parse_split_spec(specs[name], sizes):
            (task_dir / "images" / split).mkdir(parents=True, exist_ok=True)
            index = start
            for ex in source(split, start, stop):
                image = np.asarray(t.image(np.asarray(ex["image"])), dtype=np.uint8)
                if image.ndim != 3 or image.shape[2] != 3:
                    raise DataError(f"{t.task} {split}:{index}: image of shape {image.shape} is "
                                    f"not RGB after the task's conversion ({t.image.__name__})")
                try:
                    label = int(t.label(ex))
                except DataError as e:  # a value the label rule has no bin for
                    raise DataError(f"{t.task} {split}:{index}: {e} ({t.label_rule})") from None
                if not 0 <= label < t.num_classes:
                    raise DataError(f"{t.task} {split}:{index}: derived label {label} outside "
                                    f"0..{t.num_classes - 1} ({t.label_rule})")
                rel = f"images/{split}/{index:07d}.png"
                _png_write(task_dir / rel, image)
                pix.add(image)
                entries.append((rel, label))
                sids.append(_source_id(ex))
                index += 1
            if index != stop:
                raise DataError(f"{t.task}: TFDS gave {index - start} examples for "
                                f"{split}[{start}:{stop}], expected {stop - start}")
        lists[name], digests[name], source_ids[name] = entries, pix.hexdigest(), sids
        pixels[name] = pix
        log(f"{t.task} {name}: {len(entries)} images")
    lists["train800val200"] = lists["train800"] + lists["val200"]
    source_ids["train800val200"] = source_ids["train800"] + source_ids["val200"]
    digests["train800val200"] = digest_lines(pixels["train800"].images + pixels["val200"].images)
    splits = {}
    for name in VTAB_SPLITS:
        entries = lists[name]
        (task_dir / f"{name}.txt").write_text("".join(f"{r} {y}\n" for r, y in entries))
        ids = [f"{r.split('/')[1]}:{int(r.split('/')[2][:-4])}" for r, _ in entries]
        d = id_digests(ids, [y for _, y in entries])
        counts = Counter(y for _, y in entries)
        d.update(tfds_split=specs[name], pixels_sha256=digests[name],
                 label_counts=[counts.get(k, 0) for k in range(t.num_classes)])
        splits[name] = d
    if any(s is not None for v in source_ids.values() for s in v):
        write_json(task_dir / "source_ids.json", source_ids)
    manifest = {
        "format": EXPORT_FORMAT, "task": t.task, "num_classes": t.num_classes,
        "label_rule": t.label_rule, "image_rule": t.image.__name__,
        "tfds": dict(provenance), "splits": splits,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(task_dir / "manifest.json", manifest)
    log(f"{t.task}: wrote {task_dir}")
    return task_dir


# --------------------------------------------------------------------------- TFDS
def _import_tfds():
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"the VTAB-1k export needs TensorFlow Datasets: {INSTALL_FIX}") from None
    try:
        tf.config.set_visible_devices([], "GPU")  # as VPT's tf_dataset.py: TF stays off the GPU
    except Exception:
        pass
    return tfds


def export_from_tfds(task: str, tfds_dir: str, dest: str, *, prepare: bool = False,
                     manual_dir: Optional[str] = None, allow_version_drift: bool = False,
                     overwrite: bool = False, log: Callable[[str], None] = print) -> Path:
    """Export one VTAB-1k task from a TFDS data dir to ``dest/<task>``."""
    t = get_task(task)
    out = Path(dest).expanduser() / t.task
    if (out / "manifest.json").is_file() and not overwrite:
        raise DataError(f"'{out}' is already a complete export; pass --overwrite to redo it")
    tfds = _import_tfds()
    exact = f"{t.builder}:{t.version}"
    try:
        builder = tfds.builder(exact, data_dir=tfds_dir)
    except Exception as e:
        if not allow_version_drift:
            raise DataError(f"TFDS cannot open {exact} in '{tfds_dir}' ({e}); VPT used exactly "
                            f"this version. Prepare it (--prepare), or pass "
                            f"--allow-version-drift to take {t.builder}:{t.pattern}") from None
        builder = tfds.builder(f"{t.builder}:{t.pattern}", data_dir=tfds_dir)
    if prepare:
        cfg = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=cfg)
    elif not os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json")):
        raise DataError(f"{exact} is not prepared in '{tfds_dir}' (no {builder.data_dir}/"
                        f"dataset_info.json): pass --prepare (resisc45 and diabetic_retinopathy "
                        f"need --manual-dir with the downloaded archives, docs/data.md)")
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    drift = {k: (sizes.get(k), n) for k, n in t.catalog_sizes.items() if sizes.get(k) != n}
    if drift:
        msg = ", ".join(f"{k}: {a} (catalog {b})" for k, (a, b) in drift.items())
        if not allow_version_drift:
            raise DataError(f"{t.builder} {builder.info.version} split sizes differ from the TFDS "
                            f"catalog of {t.version} that VPT's slicing assumes ({msg}); "
                            f"the VTAB-1k splits would hold other images. Use {exact}, or pass "
                            f"--allow-version-drift")
        log(f"WARNING {t.task}: {msg}")
    for name, spec in t.tfds_splits(sizes).items():  # our parser must agree with TFDS's
        ours = parse_split_spec(spec, sizes)
        try:
            theirs = [(a.splitname, a.from_, a.to) for a in
                      tfds.core.ReadInstruction.from_spec(spec).to_absolute(sizes)]
        except Exception as e:  # API moved in this TFDS version: say so, keep our parse
            log(f"WARNING {t.task}: could not cross-check '{spec}' with TFDS ({e})")
            continue
        if ours != theirs:
            raise DataError(f"{t.task} {name}: '{spec}' resolves to {theirs} in TFDS but {ours} "
                            f"here; please report this")

    def source(split: str, start: int, stop: int):
        ds = builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
        return tfds.as_numpy(ds)

    provenance = {"builder": t.builder, "version": str(builder.info.version),
                  "vpt_version": t.version, "tfds_version": tfds.__version__, "sizes": sizes}
    return export_examples(t, Path(dest).expanduser(), sizes, source, provenance, log)


def export_many(tasks: Sequence[str], tfds_dir: str, dest: str, **kw) -> List[Path]:
    names = list(TASKS) if list(tasks) in ([], ["all"]) else list(tasks)
    for n in names:
        get_task(n)
    return [export_from_tfds(n, tfds_dir, dest, **kw) for n in names]
