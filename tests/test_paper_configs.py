"""The committed paper configs load, match their generator and the paper's Table 5."""
import csv
import importlib.util
from pathlib import Path

import pytest

from replicate import config, sweep

ROOT = Path(__file__).resolve().parents[1]


def _load_generator(paper: str):
    path = ROOT / "papers" / paper / "make_configs.py"
    spec = importlib.util.spec_from_file_location(f"make_configs_{paper}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gatevpt_generated_configs_are_up_to_date():
    gen = _load_generator("gatevpt").generate()
    base = ROOT / "papers/gatevpt/configs"
    on_disk = {str(p.relative_to(base)): p.read_text()
               for sub in ("pinned", "search") for p in (base / sub).rglob("*.py")}
    assert on_disk == gen, "run: python papers/gatevpt/make_configs.py"


def test_pinned_configs_carry_table5_values():
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


def test_baseline_configs_are_vpt_without_gates():
    exp = config.load(ROOT / "papers/gatevpt/configs/search/fgvc/mae_vitb16/vpt_deep/cub.py")
    assert exp.method.type == "vpt_deep"
    assert exp.method.options["num_prompts"] == 10  # 10 per block (Table 1)
    assert "gate_init" not in exp.method.options
    assert not any(k.startswith("method.temp") for k in exp.assumed)
    exp = config.load(ROOT / "papers/gatevpt/configs/search/fgvc/mocov3_vitb16/vpt_shallow/dogs.py")
    assert exp.method.options["num_prompts"] == 100


def test_plan_counts(tmp_path):
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
