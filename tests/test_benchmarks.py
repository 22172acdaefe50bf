"""The benchmark table (``replicate/benchmarks.py``): its values agree with the committed split
manifests and the protocols, an unknown name is a clear error, a benchmark registered from a
module outside the package works through the task tables, the published-table checks,
aggregation and comparison, and no module of the package tests a benchmark's name.
"""
from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path
from typing import List

import numpy as np
import pytest

from replicate import benchmarks, protocol
from replicate.benchmarks import get_benchmark
from replicate.data import tasks
from replicate.errors import DataError
from replicate.results import aggregate, collect, compare, load_published
from replicate.results.compare import check_published, tolerance_for
from tests.test_results_pipeline import write_published, write_record

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "replicate" / "data" / "manifests"


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("name", ["fgvc", "vtab1k"])
def test_classes_and_split_sizes_match_the_committed_manifests(name):
    """The manifests record each split's count and the class count from the split files / TFDS
    catalog themselves: an independent source for the table's numbers."""
    bench = get_benchmark(name)
    for task in bench.tasks:
        m = json.loads((MANIFESTS / name / f"{task}.json").read_text())
        assert bench.num_classes(task) == m["num_classes"], task
        for canonical, on_disk in bench.split_names.items():
            assert bench.split_size(task, canonical) == m["splits"][on_disk]["count"], \
                (task, canonical)
    assert sorted(p.stem for p in (MANIFESTS / name).glob("*.json")) == sorted(bench.tasks)


def test_built_in_values():
    fgvc, vtab, ade = (get_benchmark(n) for n in ("fgvc", "vtab1k", "ade20k"))
    assert dict(tasks.FGVC_CLASSES) == {"cub": 200, "nabirds": 555, "flowers": 102,
                                        "dogs": 120, "cars": 196}
    assert fgvc.table_order == ("cub", "flowers", "cars", "dogs", "nabirds")
    assert {g: len(ts) for g, ts in vtab.groups.items()} == {
        "natural": 7, "specialized": 4, "structured": 8}
    assert (fgvc.tolerance, vtab.tolerance, ade.tolerance) == (0.5, 1.0, 1.0)
    assert (fgvc.final_train, vtab.final_train, ade.final_train) == ("train", "trainval", "train")
    assert (fgvc.metric, vtab.metric, ade.metric) == ("top1", "top1", "miou")
    assert vtab.split_name("trainval") == "train800val200" and fgvc.split_name("val") == "val"
    assert fgvc.split_size("cub", "trainval") == 5394 + 600
    assert tasks.split_size("synthetic", "shapes", "test") == 400
    assert tasks.vtab_group("dmlab") == "structured"
    assert [b.name for b in benchmarks.all_benchmarks(published=True)] == [
        "fgvc", "vtab1k", "ade20k"]


def test_protocols_take_final_train_and_tolerance_from_their_benchmark():
    for pid in protocol.registered():
        p = protocol.get(pid)
        bench = get_benchmark(p.benchmark)
        assert (p.final_train, p.tolerance) == (bench.final_train, bench.tolerance), pid
        if "final_train" in p.assumed and bench.final_train_reason:
            assert p.assumed["final_train"] == bench.final_train_reason, pid


def test_unknown_benchmark_and_task_are_clear_errors():
    with pytest.raises(DataError, match=r"unknown benchmark 'imagenet'; known: ade20k, digits, "
                                        r"fgvc, .*register_benchmark"):
        get_benchmark("imagenet")
    with pytest.raises(DataError, match=r"unknown task 'birds' for benchmark 'fgvc'; known: "
                                        r"cars, cub, dogs"):
        benchmarks.num_classes("fgvc", "birds")
    with pytest.raises(ValueError, match="average 'median'"):
        benchmarks.Benchmark("bad", "Bad", {"a": benchmarks.Task(2)}, average="median")


# --------------------------------------------------------------------------- a plug-in benchmark
TOY_MODULE = '''
from replicate.benchmarks import Benchmark, Task, register_benchmark

register_benchmark(Benchmark(
    name="toybench", title="Toy", tolerance=2.0, report_order=5,
    tasks={"a": Task(3, "left", (30, 10, 20)), "b": Task(5, "left", (40, 10, 20)),
           "c": Task(7, "right", (50, 10, 20))},
    average="groups", final_train="train"))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A benchmark registered by a module in a temporary folder (as a plug-in named in a
    config's custom_imports would be); removed from the table afterwards."""
    (tmp_path / "toy_bench_plugin.py").write_text(textwrap.dedent(TOY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.import_module("toy_bench_plugin")
    yield get_benchmark("toybench")
    benchmarks._BENCHMARKS.pop("toybench", None)
    sys.modules.pop("toy_bench_plugin", None)


def test_a_registered_benchmark_works_without_editing_the_package(toy, tmp_path):
    assert tasks.num_classes("toybench", "b") == 5
    assert tasks.split_size("toybench", "a", "trainval") == 40
    assert toy.groups == {"left": ("a", "b"), "right": ("c",)}

    runs_root = tmp_path / "runs"
    values = {"a": (60.0, 62.0), "b": (70.0, 72.0), "c": (80.0, 84.0)}
    for task, vals in values.items():
        for seed, v in enumerate(vals):
            write_record(runs_root, "toy", "final", f"{task}-{seed}", backbone="mae_vitb16",
                         method="m", benchmark="toybench", task=task, seed=seed, value=v,
                         protocol="toy-protocol", group=toy.group_of(task))
    cells = aggregate(collect(runs_root, "toy"))
    by_task = {(r["group"], r["task"]): r for _, r in cells.iterrows()}
    assert by_task[("left", "group_mean")]["mean"] == pytest.approx(66.0)
    assert by_task[("right", "group_mean")]["mean"] == pytest.approx(82.0)
    assert by_task[("", "mean")]["mean"] == pytest.approx(np.mean([61.0, 71.0, 82.0]))
    assert by_task[("", "mean_of_group_means")]["mean"] == pytest.approx(74.0)
    assert list(cells["task"]) == ["a", "b", "group_mean", "c", "group_mean", "mean",
                                   "mean_of_group_means"]

    pub = write_published(tmp_path / "published.csv", [
        ("toy", "Table 1", "mae_vitb16", "m", "toybench", "left", "group_mean", "top1", "67.5"),
        ("toy", "Table 1", "mae_vitb16", "m", "toybench", "right", "group_mean", "top1", "82.0"),
        ("toy", "Table 1", "mae_vitb16", "m", "toybench", "", "mean", "top1", "72.33"),
    ])
    published = load_published(pub, "toy")
    comp = compare(cells, published, "toy")
    left = comp[(comp["group"] == "left") & (comp["task"] == "group_mean")].iloc[0]
    # the records' protocol is not registered: the benchmark's own tolerance applies
    assert left["tolerance"] == 2.0 and left["status"] == "reproduced"
    assert tolerance_for("", "toybench") == (2.0, "benchmark default (no protocol in records)")
    checks = check_published(published)
    assert "Toy AVG = (2·Left + 1·Right)/3 (3-task mean)" in set(checks["check"])


def test_published_rows_of_a_registered_benchmark_are_validated(toy, tmp_path):
    bad = write_published(tmp_path / "published.csv", [
        ("toy", "Table 1", "mae_vitb16", "m", "toybench", "right", "a", "top1", "60.0")])
    with pytest.raises(Exception, match="Toy task 'a' belongs to group 'left', got 'right'"):
        load_published(bad)


# --------------------------------------------------------------------------- no name tests
#: files that may compare with a benchmark's name: each benchmark's own loader and data files
#: (the name is theirs), relative to the repository
ALLOWED = {"replicate/data/fgvc.py", "replicate/data/fgvc_splits.py", "replicate/data/vtab.py",
           "replicate/data/vtab_tasks.py", "replicate/data/vtab_export.py",
           "replicate/data/builtin.py", "replicate/data/ade20k.py"}
NAMES = ("fgvc", "vtab1k", "ade20k", "digits", "synthetic")


def name_tests(source: str, names=NAMES) -> List[int]:
    """Lines comparing with a benchmark's name: ``x == "fgvc"``, ``"fgvc" != x``,
    ``x in ("fgvc", ...)`` / ``not in [...]`` / ``{...}``."""
    def literal(node) -> bool:
        return isinstance(node, ast.Constant) and node.value in names

    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left] + list(node.comparators)
        for op, left, right in zip(node.ops, operands, operands[1:]):
            if isinstance(op, (ast.Eq, ast.NotEq)) and (literal(left) or literal(right)):
                out.append(node.lineno)
            elif isinstance(op, (ast.In, ast.NotIn)) and \
                    isinstance(right, (ast.Tuple, ast.List, ast.Set)) and \
                    any(literal(e) for e in right.elts):
                out.append(node.lineno)
    return out


def test_the_name_test_finder_finds_each_form():
    src = ('a = bench == "fgvc"\nb = "vtab1k" != bench\nc = bench in ("digits", "synthetic")\n'
           'd = bench not in [None, "ade20k"]\ne = get_benchmark("fgvc")\n'
           'f = task in benchmarks.get_benchmark("vtab1k").tasks\ng = bench == "cub"\n')
    assert name_tests(src) == [1, 2, 3, 4]


def test_no_module_tests_a_benchmark_name():
    files = sorted((REPO / "replicate").rglob("*.py")) + \
        sorted((REPO / "papers").glob("*/make_configs.py"))
    assert len(files) > 50
    found = []
    for path in files:
        rel = str(path.relative_to(REPO))
        if rel in ALLOWED:
            continue
        found += [f"{rel}:{n}" for n in name_tests(path.read_text())]
    assert not found, ("benchmark knowledge as a name test (read it from replicate/benchmarks.py "
                       "instead, e.g. bench.groups, bench.final_train, bench.metric): "
                       + ", ".join(found))


def test_the_table_sits_at_the_bottom_layer():
    """benchmarks.py imports only the error classes (L0) and nothing heavy, so every layer,
    planning and results included, can read it (tests/test_layers.py checks the rest)."""
    from tests.test_layers import imports_of, modules

    mods = modules()
    path = mods["replicate.benchmarks"]
    assert imports_of("replicate.benchmarks", path, mods) == {"replicate.errors"}
    top = {a.name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
           if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert top <= {"__future__", "dataclasses", "types", "typing"}, top
