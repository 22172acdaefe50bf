"""The committed paper configs, for every discovered paper folder: generated files match their
generator (``papers/<p>/make_configs.py``), configs load and are labelled as their paper's, and
each paper's own invariants (GateVPT's Table 5, LSPT's and VPTM's config trees).

One check per property, parametrised over the paper folders (replicate/papers.py discovers them):
a new paper with a ``make_configs.py`` is covered without editing this file; its own invariants
go in ``TREE_CHECKS`` / ``CONFIG_CHECKS`` below."""
from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch

from replicate import backbones, config, sweep
from replicate import data as rdata
from replicate import methods as rmethods
from tests.helpers import REPO, experiment_configs, generator_papers, load_generator

ROOT = REPO
PAPERS = generator_papers()


# ------------------------------------------------------------------ generated == committed
def generated_tree(paper: str):
    """``({path relative to configs/: text}, generated top-level dirs)`` of a paper's generator.
    ``generate()`` may key files by relative or absolute path; the dirs are the generator's
    ``GENERATED_DIRS`` when it names them (it owns every file there), else the top-level dirs
    of what it generates."""
    mod = load_generator(paper)
    base = Path(mod.CONFIGS)
    files = {str(Path(k).relative_to(base)) if Path(k).is_absolute() else str(k): v
             for k, v in mod.generate().items()}
    dirs = tuple(getattr(mod, "GENERATED_DIRS", ())) or tuple(sorted({Path(r).parts[0]
                                                                     for r in files}))
    return base, files, dirs


def _lspt_tree(files: Dict[str, str]) -> None:
    mc = load_generator("lspt")
    rel = [r for r in files if r.endswith(".py") and not r.startswith("_base_/")]
    n_cells = sum(len(t) for t in mc.BENCHMARKS.values()) * len(mc.BACKBONES)
    assert sum(r.startswith("pinned/") for r in rel) == n_cells
    assert sum(r.startswith("param_matched/") for r in rel) == n_cells
    assert sum(r.startswith("ablation/") for r in rel) == n_cells * len(mc.VARIANTS)
    assert sum(r.startswith("smoke/") for r in rel) == len(mc.SMOKE_VARIANTS)


def _vptm_tree(files: Dict[str, str]) -> None:
    n_tasks = 5 + 19  # FGVC + VTAB-1k tasks, 5 methods each
    assert sum(r.startswith(("search/fgvc/", "search/vtab1k/")) for r in files) == n_tasks * 5
    for axis in ("location", "length", "protodim"):
        assert any(r.startswith(f"search/ablation/{axis}/") for r in files)


#: paper -> check of the set of generated files (counts a generator bug could silently change)
TREE_CHECKS: Dict[str, Callable[[Dict[str, str]], None]] = {"lspt": _lspt_tree,
                                                            "vptm": _vptm_tree}


@pytest.mark.parametrize("paper", PAPERS)
def test_generated_configs_are_up_to_date(paper):
    base, files, dirs = generated_tree(paper)
    fix = f"run: python papers/{paper}/make_configs.py"
    assert files and dirs, f"papers/{paper}/make_configs.py generate() returned no files"
    suffixes = {Path(r).suffix for r in files}
    on_disk = {str(p.relative_to(base)) for d in dirs if (base / d).is_dir()
               for p in (base / d).rglob("*") if p.is_file() and p.suffix in suffixes}
    assert sorted(set(files) - on_disk) == [], f"missing: {fix}"
    assert sorted(on_disk - set(files)) == [], f"not generated (remove them): {fix}"
    stale = [r for r, text in files.items() if (base / r).read_text() != text]
    assert stale == [], f"out of date: {fix}"
    TREE_CHECKS.get(paper, lambda files: None)(files)


# ------------------------------------------------------------------ configs load, labelled
@functools.lru_cache(maxsize=None)
def _tiny_adapter():
    torch.manual_seed(0)
    return backbones.create("vit_micro_patch8_32.mae_test", "")


def _lspt_config(rel: str, exp: config.Experiment) -> None:
    assert exp.method.type == "lspt"
    entry = backbones.get(exp.backbone.name)
    if not entry.tiny:
        assert entry.paper_key == rel.split("/")[-2]
    # the resolved options (GateVPT's inherited + LSPT's) build an LSPT model; ViT-B cells are
    # built on the tiny ViT (same options, width 64)
    model = rmethods.build_model(_tiny_adapter(), "lspt", exp.method.options,
                                 rdata.num_classes(exp.data), entry.default_pool)
    assert isinstance(model.method, rmethods.LSPT)
    if exp.smoke:
        with torch.no_grad():
            assert torch.isfinite(model(torch.rand(2, 3, 32, 32))).all()


def _vptm_config(rel: str, exp: config.Experiment) -> None:
    if exp.smoke:
        assert exp.backbone.name == "beit_micro_patch8_32.beitv2_test"
        assert exp.protocol == "digits-smoke"
        return
    assert exp.backbone.name == "beitv2_base_patch16_224.pt1k"
    assert exp.protocol in ("fgvc-vpt", "vtab1k-vpt", "fgvc-vpt-finetune", "vtab1k-vpt-finetune")
    assert "benchmark choice assumed" in exp.assumed["protocol"]
    assert exp.cell["method"] == exp.method.type


#: paper -> its own assertions on one loaded config (relative path under configs/, experiment)
CONFIG_CHECKS: Dict[str, Callable[[str, config.Experiment], None]] = {
    "lspt": _lspt_config, "vptm": _vptm_config}

#: every 4th config of each paper (sorted, so every tree and method is hit) and every smoke
#: config; tests/test_config_snapshot.py resolves all of them
STRIDE = 4


def _sample(paper: str) -> list:
    base = REPO / "papers" / paper / "configs"
    files = experiment_configs(paper)
    smoke = [p for p in files if p.relative_to(base).parts[0] == "smoke"]
    return sorted(set(files[::STRIDE]) | set(smoke))


CONFIGS = [(paper, p) for paper in PAPERS for p in _sample(paper)]


@pytest.mark.parametrize("paper,path", CONFIGS,
                         ids=[f"{k}/{p.relative_to(REPO / 'papers' / k / 'configs')}"
                              for k, p in CONFIGS])
def test_config_loads_and_is_labelled(paper, path):
    rel = str(path.relative_to(REPO / "papers" / paper / "configs"))
    exp = config.load(path)
    assert exp.paper == paper
    assert exp.smoke == rel.startswith("smoke/")
    if not exp.smoke:  # a paper cell runs a real backbone
        assert not backbones.get(exp.backbone.name).tiny
    CONFIG_CHECKS.get(paper, lambda rel, exp: None)(rel, exp)


# ------------------------------------------------------------------ GateVPT
def test_gatevpt_pinned_configs_carry_table5_values():
    with open(ROOT / "papers/gatevpt/hparams.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["benchmark"] != "ade20k"]
    assert len(rows) == 48
    for r in rows[::7]:  # a spread of cells; loading all 48 is covered by the plan test
        exp = config.load(ROOT / f"papers/gatevpt/configs/pinned/{r['benchmark']}/"
                                 f"{r['backbone']}/{r['task']}.py")
        assert exp.method.type == "gatevpt"
        assert exp.method.options["num_prompts"] == int(r["num_prompt_tokens"])
        assert exp.method.options["gate_init"] == float(r["gate_init"])
        assert exp.optim.lr == float(r["base_lr"])
        assert exp.optim.batch_size == int(r["batch_size"])
        assert exp.optim.lr_scaling == "none" and exp.optim.weight_decay == 0.0
        assert exp.cell["task"] == r["task"] and exp.cell["backbone"] == r["backbone"]
        assert "optim.epochs" in exp.assumed  # the paper does not state epochs


def test_gatevpt_baseline_configs_are_vpt_without_gates():
    exp = config.load(ROOT / "papers/gatevpt/configs/search/fgvc/mae_vitb16/vpt_deep/cub.py")
    assert exp.method.type == "vpt_deep"
    assert exp.method.options["num_prompts"] == 10  # 10 per block (Table 1)
    assert "gate_init" not in exp.method.options
    assert not any(k.startswith("method.temp") for k in exp.assumed)
    exp = config.load(ROOT / "papers/gatevpt/configs/search/fgvc/mocov3_vitb16/vpt_shallow/dogs.py")
    assert exp.method.options["num_prompts"] == 100


def test_gatevpt_plan_counts(tmp_path):
    files = sweep.config_files("gatevpt", "pinned", select=["fgvc/*/*"])
    exps = sweep.load_experiments(files)
    runs = sweep.plan_pinned(exps, str(tmp_path))
    assert len(exps) == 10 and len(runs) == 50  # 5 datasets x 2 backbones x 5 seeds
    # official train.py merges train+val only for vtab- datasets: FGVC final runs read train
    assert {r.train_split for r in runs} == {"train"}
    assert {r.eval_splits for r in runs} == {("test",)}


def test_unknown_option_in_a_paper_config_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.py"
    src = ROOT / "papers/gatevpt/configs/pinned/fgvc/mae_vitb16/cub.py"
    bad.write_text(src.read_text().replace("../../../_base_/", str(src.parents[3] / "_base_") + "/")
                   + "method = dict(gate_intt=3)\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(bad)
    assert "gate_intt" in str(e.value) and str(bad) in str(e.value)


# ------------------------------------------------------------------ VPTM
def test_vptm_every_method_and_ablation_is_labelled():
    """Each method of VPTM's tables on one FGVC and one VTAB-1k task, and every ablation setting
    on one task (the stride above may miss one)."""
    base = ROOT / "papers/vptm/configs"
    picks = [base / "search" / b / "beitv2_vitb16" / m / f"{t}.py"
             for b, t in (("fgvc", "cub"), ("vtab1k", "clevr_count"))
             for m in ("vptm", "linear", "finetune", "vpt_shallow", "vpt_deep")]
    picks += sorted((base / "search" / "ablation").rglob("cifar100.py"))
    for path in picks:
        exp = config.load(path)
        assert exp.paper == "vptm" and not exp.smoke
        _vptm_config(str(path.relative_to(base)), exp)


def test_vptm_ablation_length_cell():
    abl = config.load(ROOT / "papers/vptm/configs/search/ablation/length/m50/eurosat.py")
    assert abl.method.options["num_prompts"] == 50 and abl.method.options["proto_dim"] == 64
