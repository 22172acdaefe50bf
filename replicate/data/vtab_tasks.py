"""The 19 VTAB-1k tasks as VPT defines them: TFDS builder and version, split slicing, label
derivation and the image conversion applied before the resize.

Everything here is plain python/numpy (no TensorFlow), so the export tool, the readers, the
manifests and the tests share one definition.  Sources, all in KMnP/vpt (identical in
ryongithub/GatedPromptTuning):

* builders and the exact versions VPT ran: ``VTAB_SETUP.md`` ("TFDS version") and the builder
  strings in ``src/data/vtab_datasets/<task>.py``;
* slicing of train800 / val200 / train800val200 / test: the ``tfds_splits`` dicts of
  ``src/data/vtab_datasets/<task>.py`` (tabulated in docs/data.md, VTAB-1k);
* labels of the structured tasks: ``clevr.py``, ``kitti.py``, ``dsprites.py``, ``smallnorb.py``,
  ``dmlab.py`` in the same folder (docs/data.md, "Labels of the structured tasks");
* task directory names of the NOAH-style folder copies: ZhangYuanhan-AI/NOAH
  ``data/vtab-source/get_vtab1k.py`` (docs/data.md, "Source b").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .tasks import VTAB_TASKS

#: VTAB-1k split names, in the order files are written
VTAB_SPLITS = ("train800", "val200", "train800val200", "test")


# --------------------------------------------------------------------------- labels
def _largest_index_below(thresholds: np.ndarray, value: float, what: str) -> int:
    """max{i : thresholds[i] < value}: VTAB's ``tf.reduce_max(tf.where((thrs - d) < 0))``.

    A value at or below the first threshold has no bin (TF would fail on the empty max): a
    :class:`DataError` naming ``what``; the exporter adds the task and example index."""
    hits = np.nonzero(thresholds - value < 0)[0]
    if hits.size == 0:
        from ..errors import DataError
        raise DataError(f"{what} is {value:g}, not above the first threshold {thresholds[0]:g} "
                        f"of {thresholds.tolist()}: the label rule has no bin for it (a corrupt "
                        "example, or not the TFDS version VPT used)")
    return int(hits.max())


CLEVR_DIST_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])
KITTI_DIST_THRESHOLDS = np.array([-100.0, 8.0, 20.0, 999.0])
#: KMnP/vpt kitti.py appends this depth so that a scene without vehicles falls in the last bin
KITTI_NO_VEHICLE_DEPTH = 1000.0


def clevr_count_label(object_sizes: np.ndarray) -> int:
    """clevr.py ``_count_preprocess_fn``: number of objects - 3 (scenes hold 3..10 objects)."""
    return int(np.asarray(object_sizes).size) - 3


def clevr_dist_label(pixel_coords: np.ndarray) -> int:
    """clevr.py ``_closest_object_preprocess_fn``: bin of the smallest depth
    (``pixel_coords[:, 2]``) with thresholds [0, 8, 8.5, 9, 9.5, 10, 100]."""
    depth = float(np.min(np.asarray(pixel_coords, dtype=np.float32)[:, 2]))
    return _largest_index_below(CLEVR_DIST_THRESHOLDS, depth,
                                "closest object depth (min of objects/pixel_coords[:, 2])")


def kitti_dist_label(object_types: np.ndarray, locations: np.ndarray) -> int:
    """kitti.py ``_closest_vehicle_distance_pp``: vehicles are types < 3 (Car, Van, Truck);
    d = min of their z (``location[:, 2]``, metres) with 1000 appended; bins of
    [-100, 8, 20, 999] -> <8 m, 8-20 m, 20-999 m, no vehicle."""
    types = np.asarray(object_types).reshape(-1)
    z = np.asarray(locations, dtype=np.float32).reshape(-1, 3)[:, 2]
    depths = np.concatenate([z[types < 3], np.array([KITTI_NO_VEHICLE_DEPTH], np.float32)])
    return _largest_index_below(KITTI_DIST_THRESHOLDS, float(depths.min()),
                                "closest vehicle depth (min of objects/location[:, 2])")


def dsprites_label(value: int, num_original: int, num_classes: int = 16) -> int:
    """dsprites.py ``preprocess_fn``: floor(value / (num_original / num_classes)) in float32
    (x position: 32 values -> factor 2; orientation: 40 values -> factor 2.5)."""
    factor = np.float32(float(num_original) / num_classes)
    return int(np.floor_divide(np.float32(value), factor))


def _feature(name: str) -> Callable[[Mapping], int]:
    def get(example: Mapping) -> int:
        return int(np.asarray(example[name]))
    get.__name__ = f"feature_{name}"
    return get


def _dsprites(attr: str, num_original: int) -> Callable[[Mapping], int]:
    return lambda ex: dsprites_label(int(np.asarray(ex[attr])), num_original)


# --------------------------------------------------------------------------- images
def identity_image(image: np.ndarray) -> np.ndarray:
    return image


def tile_gray(image: np.ndarray) -> np.ndarray:
    """smallnorb.py: ``tf.tile(image, [1, 1, 3])``."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.tile(image, (1, 1, 3))


def dsprites_image(image: np.ndarray) -> np.ndarray:
    """dsprites.py: ``tf.tile(image, [1, 1, 3]) * 255`` on uint8 (values 0/1 -> 0/255)."""
    return tile_gray(image).astype(np.uint8) * np.uint8(255)


# --------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class VtabTask:
    task: str
    #: TFDS builder (with config) and the exact version VPT used; ``pattern`` is VPT's request
    builder: str
    version: str
    pattern: str
    #: how val200 (and test) are carved: 'percent' (val200 = train[T:T+200], T = p% of train),
    #: 'validation' (TFDS validation split), 'smallnorb' (val = first 50 % of TFDS test)
    val_rule: str
    #: test split: a TFDS split name, or 'percent' (train[V:], V = (p + q)% of train)
    test_rule: str
    #: TFDS split sizes the rules need, from the TFDS catalog for ``version`` (docs/data.md;
    #: NOT measured here: the export tool compares them with the builder's own numbers)
    catalog_sizes: Mapping[str, int]
    #: example (dict of numpy arrays) -> int label
    label: Callable[[Mapping], int]
    #: human-readable label rule (written into manifests)
    label_rule: str
    #: image conversion applied before the resize
    image: Callable[[np.ndarray], np.ndarray] = identity_image
    #: percentages for val_rule/test_rule 'percent' (train %, val %)
    percents: Tuple[int, int] = (90, 10)
    #: directory name in NOAH-style copies (get_vtab1k.py), then accepted alternatives
    noah_dirs: Tuple[str, ...] = ()
    num_classes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_classes", VTAB_TASKS[self.task][1])

    # ------------------------------------------------------------------ slicing
    def tfds_splits(self, sizes: Optional[Mapping[str, int]] = None) -> Dict[str, str]:
        """VPT's TFDS split strings for train800 / val200 / train800val200 / test, computed
        from the TFDS split sizes (the builder's own, or the catalog's when None)."""
        sizes = dict(self.catalog_sizes if sizes is None else sizes)
        train800 = "train[:800]"
        if self.val_rule == "percent":
            t = sizes["train"] * self.percents[0] // 100
            val200 = f"train[{t}:{t + 200}]"
        elif self.val_rule == "validation":
            val200 = "validation[:200]"
        elif self.val_rule == "smallnorb":
            val200 = "test[:200]"
        else:  # pragma: no cover - table below is fixed
            raise ValueError(self.val_rule)
        if self.test_rule == "percent":
            n = sizes["train"]
            v = n * self.percents[0] // 100 + n * self.percents[1] // 100
            test = f"train[{v}:]"
        elif self.test_rule == "smallnorb":
            test = "test[50%:]"
        else:
            test = self.test_rule
        return {"train800": train800, "val200": val200,
                "train800val200": f"{train800}+{val200}", "test": test}

    def sample_ids(self, split: str, sizes: Optional[Mapping[str, int]] = None) -> list:
        """Ordered sample ids ``<tfds split>:<index in it>`` of a VTAB-1k split."""
        sizes = dict(self.catalog_sizes if sizes is None else sizes)
        ids = []
        for name, start, stop in parse_split_spec(self.tfds_splits(sizes)[split], sizes):
            ids.extend(f"{name}:{i}" for i in range(start, stop))
        return ids


def parse_split_spec(spec: str, sizes: Mapping[str, int]) -> list:
    """``'train[:800]+validation[:200]'`` -> [(split, start, stop)] in absolute indices.

    Handles the forms VPT's task files use: ``name``, ``name[a:b]`` with integers, and
    ``name[p%:]`` / ``name[:p%]`` (TFDS rounds percent boundaries to the closest integer; all
    VPT percent slices fall on integers: smallnorb ``test[50%:]`` of 24,300).  The export tool
    asks TFDS itself (``ReadInstruction.to_absolute``) and checks it agrees with this.
    """
    out = []
    for part in spec.split("+"):
        part = part.strip()
        if "[" not in part:
            out.append((part, 0, sizes[part]))
            continue
        name, rng = part[:-1].split("[", 1)
        n = sizes.get(name)  # only needed for open ends, percents and negative indices
        a, b = rng.split(":")

        def bound(s: str, default: Optional[int]) -> int:
            if s == "" and default is not None:
                return default
            if n is None and (s == "" or s.endswith("%") or s.startswith("-")):
                raise KeyError(f"size of TFDS split '{name}' is needed to resolve '{part}'")
            if s.endswith("%"):
                return int(round(n * int(s[:-1]) / 100))
            v = int(s)
            return v + n if v < 0 else v
        start, stop = bound(a, 0), bound(b, n)
        out.append((name, start, stop if n is None else min(stop, n)))
    return out


_NATURAL_LABEL = "TFDS feature 'label', unchanged"

TASKS: Dict[str, VtabTask] = {t.task: t for t in [
    VtabTask("cifar100", "cifar100", "3.0.2", "3.*.*", "percent", "test",
             {"train": 50_000, "test": 10_000}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("cifar", "cifar100")),
    VtabTask("caltech101", "caltech101", "3.0.1", "3.*.*", "percent", "test",
             {"train": 3_060, "test": 6_084}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("caltech101",)),
    VtabTask("dtd", "dtd", "3.0.1", "3.*.*", "validation", "test",
             {"test": 1_880}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("dtd",)),
    VtabTask("flowers102", "oxford_flowers102", "2.1.1", "2.*.*", "validation", "test",
             {"test": 6_149}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("oxford_flowers102",)),
    VtabTask("pets", "oxford_iiit_pet", "3.2.0", "3.*.*", "percent", "test",
             {"train": 3_680, "test": 3_669}, _feature("label"), _NATURAL_LABEL,
             percents=(80, 20), noah_dirs=("oxford_iiit_pet", "oxford_pet")),
    VtabTask("svhn", "svhn_cropped", "3.0.0", "3.*.*", "percent", "test",
             {"train": 73_257, "test": 26_032}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("svhn",)),
    VtabTask("sun397", "sun397/tfds", "4.0.0", "4.*.*", "validation", "test",
             {"test": 21_750}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("sun397",)),
    VtabTask("patch_camelyon", "patch_camelyon", "2.0.0", "2.*.*", "validation", "test",
             {"test": 32_768}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("patch_camelyon",)),
    VtabTask("eurosat", "eurosat/rgb", "2.0.0", "2.*.*", "percent", "percent",
             {"train": 27_000}, _feature("label"), _NATURAL_LABEL,
             percents=(60, 20), noah_dirs=("eurosat",)),
    VtabTask("resisc45", "resisc45", "3.0.0", "3.*.*", "percent", "percent",
             {"train": 31_500}, _feature("label"), _NATURAL_LABEL,
             percents=(60, 20), noah_dirs=("resisc45",)),
    VtabTask("retinopathy", "diabetic_retinopathy_detection/btgraham-300", "3.0.0", "3.*.*",
             "validation", "test", {"test": 42_670}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("diabetic_retinopathy",)),
    VtabTask("clevr_count", "clevr", "3.1.0", "3.*.*", "percent", "validation",
             {"train": 70_000, "validation": 15_000},
             lambda ex: clevr_count_label(ex["objects"]["size"]),
             "number of objects (len(objects/size)) - 3",
             noah_dirs=("clevr_count",)),
    VtabTask("clevr_dist", "clevr", "3.1.0", "3.*.*", "percent", "validation",
             {"train": 70_000, "validation": 15_000},
             lambda ex: clevr_dist_label(ex["objects"]["pixel_coords"]),
             "max{i: t_i < min(objects/pixel_coords[:, 2])}, t = [0, 8, 8.5, 9, 9.5, 10, 100]",
             noah_dirs=("clevr_dist",)),
    VtabTask("dmlab", "dmlab", "2.0.1", "2.0.1", "validation", "test",
             {"test": 22_735}, _feature("label"), _NATURAL_LABEL,
             noah_dirs=("dmlab",)),
    VtabTask("kitti_dist", "kitti", "3.2.0", "3.2.0", "validation", "test",
             {"test": 711},
             lambda ex: kitti_dist_label(ex["objects"]["type"], ex["objects"]["location"]),
             "vehicles = objects/type < 3; d = min(objects/location[vehicles, 2] + [1000]); "
             "max{i: t_i < d}, t = [-100, 8, 20, 999]",
             noah_dirs=("kitti",)),
    VtabTask("dsprites_loc", "dsprites", "2.0.0", "2.*.*", "percent", "percent",
             {"train": 737_280}, _dsprites("label_x_position", 32),
             "floor(label_x_position / (32 / 16)) in float32", image=dsprites_image,
             percents=(80, 10), noah_dirs=("dsprites_loc",)),
    VtabTask("dsprites_ori", "dsprites", "2.0.0", "2.*.*", "percent", "percent",
             {"train": 737_280}, _dsprites("label_orientation", 40),
             "floor(label_orientation / (40 / 16)) in float32", image=dsprites_image,
             percents=(80, 10), noah_dirs=("dsprites_ori",)),
    VtabTask("smallnorb_azi", "smallnorb", "2.0.0", "2.*.*", "smallnorb", "smallnorb",
             {"test": 24_300}, _feature("label_azimuth"),
             "TFDS feature 'label_azimuth', unchanged", image=tile_gray,
             noah_dirs=("smallnorb_azi",)),
    VtabTask("smallnorb_ele", "smallnorb", "2.0.0", "2.*.*", "smallnorb", "smallnorb",
             {"test": 24_300}, _feature("label_elevation"),
             "TFDS feature 'label_elevation', unchanged", image=tile_gray,
             noah_dirs=("smallnorb_ele",)),
]}

assert set(TASKS) == set(VTAB_TASKS), "vtab_tasks.TASKS must cover tasks.VTAB_TASKS"


def get_task(task: str) -> VtabTask:
    from ..errors import DataError
    try:
        return TASKS[task]
    except KeyError:
        raise DataError(f"unknown VTAB-1k task '{task}'; known: "
                        f"{', '.join(sorted(TASKS))}") from None


def expected_count(task: str, split: str) -> int:
    """Number of examples of a VTAB-1k split (from the slicing rule and the catalog sizes)."""
    return len(get_task(task).sample_ids(split))
