"""Class counts of every task the harness knows (checked by the loaders)."""
from __future__ import annotations

FGVC_CLASSES = {"cub": 200, "nabirds": 555, "flowers": 102, "dogs": 120, "cars": 196}

# VTAB-1k task -> (group, classes); class counts as KMnP/vpt tune_vtab.py DATA2CLS
VTAB_TASKS = {
    "cifar100": ("natural", 100), "caltech101": ("natural", 102), "dtd": ("natural", 47),
    "flowers102": ("natural", 102), "pets": ("natural", 37), "svhn": ("natural", 10),
    "sun397": ("natural", 397),
    "patch_camelyon": ("specialized", 2), "eurosat": ("specialized", 10),
    "resisc45": ("specialized", 45), "retinopathy": ("specialized", 5),
    "clevr_count": ("structured", 8), "clevr_dist": ("structured", 6), "dmlab": ("structured", 6),
    "kitti_dist": ("structured", 4), "dsprites_loc": ("structured", 16),
    "dsprites_ori": ("structured", 16), "smallnorb_azi": ("structured", 18),
    "smallnorb_ele": ("structured", 9),
}

SMOKE_CLASSES = {"digits": {"digits": 10}, "synthetic": {"shapes": 4, "stripes": 6}}


def num_classes(benchmark: str, task: str) -> int:
    if benchmark == "fgvc":
        table = FGVC_CLASSES
    elif benchmark == "vtab1k":
        table = {k: v[1] for k, v in VTAB_TASKS.items()}
    else:
        table = SMOKE_CLASSES.get(benchmark, {})
    if task not in table:
        from ..errors import DataError
        raise DataError(f"unknown task '{task}' for benchmark '{benchmark}'; known: "
                        f"{', '.join(sorted(table))}")
    return table[task]


def vtab_group(task: str) -> str:
    return VTAB_TASKS[task][0]


# Split sizes (canonical split -> images), for plan's cost estimate and verify's counts.
# FGVC: VPT's split files (the gift copy, docs/data.md); VTAB-1k: 800/200/1000 + the test sizes of
# the TFDS versions VPT used (TFDS catalog, docs/data.md).
FGVC_SIZES = {
    "cub": (5394, 600, 5794), "nabirds": (21536, 2393, 24633), "flowers": (1020, 1020, 6149),
    "dogs": (10800, 1200, 8580), "cars": (7329, 815, 8041),
}
VTAB_TEST_SIZES = {
    "caltech101": 6084, "cifar100": 10000, "dtd": 1880, "flowers102": 6149, "pets": 3669,
    "svhn": 26032, "sun397": 21750, "patch_camelyon": 32768, "eurosat": 5400, "resisc45": 6300,
    "retinopathy": 42670, "clevr_count": 15000, "clevr_dist": 15000, "dmlab": 22735,
    "kitti_dist": 711, "dsprites_loc": 73728, "dsprites_ori": 73728, "smallnorb_azi": 12150,
    "smallnorb_ele": 12150,
}


def split_size(benchmark: str, task: str, split: str) -> int:
    """Number of images of a canonical split (0 when unknown)."""
    if benchmark == "fgvc" and task in FGVC_SIZES:
        tr, va, te = FGVC_SIZES[task]
        return {"train": tr, "val": va, "trainval": tr + va, "test": te}[split]
    if benchmark == "vtab1k" and task in VTAB_TEST_SIZES:
        return {"train": 800, "val": 200, "trainval": 1000,
                "test": VTAB_TEST_SIZES[task]}[split]
    if benchmark in ("digits", "synthetic"):
        return {"train": 800, "val": 200, "trainval": 1000, "test": 400}[split]
    return 0
