"""Task tables of the built-in benchmarks, as the loaders and older imports know them.

A thin view of :mod:`replicate.benchmarks` (the one benchmark table): the names here keep their
values and are kept for existing imports; new code reads the table itself
(``benchmarks.get_benchmark(name)``).
"""
from __future__ import annotations

from ..benchmarks import get_benchmark, num_classes, split_size  # noqa: F401  (re-exported)
from ..benchmarks import all_benchmarks

_FGVC, _VTAB = get_benchmark("fgvc"), get_benchmark("vtab1k")

#: FGVC dataset -> classes (in the benchmark's own order)
FGVC_CLASSES = {t: v.classes for t, v in _FGVC.tasks.items()}
#: VTAB-1k task -> (group, classes), in VTAB's order (7 natural, 4 specialized, 8 structured)
VTAB_TASKS = {t: (v.group, v.classes) for t, v in _VTAB.tasks.items()}
#: smoke benchmark -> task -> classes
SMOKE_CLASSES = {b.name: {t: v.classes for t, v in b.tasks.items()}
                 for b in all_benchmarks(published=False)}
#: FGVC dataset -> (train, val, test) images (VPT's split files)
FGVC_SIZES = {t: v.sizes for t, v in _FGVC.tasks.items()}
#: VTAB-1k task -> test images (train800 / val200 for every task)
VTAB_TEST_SIZES = {t: v.sizes[2] for t, v in _VTAB.tasks.items()}


def vtab_group(task: str) -> str:
    return VTAB_TASKS[task][0]
