"""Config files -> a validated, frozen Experiment: every mistake names the key and the file."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from replicate import config
from replicate.config import ConfigError

BASE = """
paper = 'gatevpt'
protocol = 'synthetic-smoke'
backbone = dict(name='vit_micro_patch8_32.mae_test', checkpoint='')
method = dict(type='gatevpt', num_prompts=4, gate_init=10.0, prompt_dropout=0.1)
data = dict(benchmark='synthetic', task='shapes', root='', image_size=32, in_memory=True)
optim = dict(optimizer='sgd', lr=0.1, batch_size=32, epochs=4, warmup_epochs=1)
train = dict(device='cpu', precision='fp32', max_steps_per_epoch=2)
assumed = {'optim.epochs': 'paper silent', 'method.prompt_dropout': 'run.sh 0.1'}
"""

CHILD = """
_base_ = ['base.py']
name = 'child'
method = dict(gate_init=5.0)
optim = dict(lr=0.5)
smoke = True
"""


def write(tmp_path: Path, child: str = CHILD, base: str = BASE, name: str = "exp.py") -> Path:
    (tmp_path / "base.py").write_text(textwrap.dedent(base))
    p = tmp_path / name
    p.write_text(textwrap.dedent(child))
    return p


def raises_naming(path: Path, *words: str, child: str = CHILD, base: str = BASE):
    write(path.parent, child, base, path.name)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ------------------------------------------------------------------ valid files
def test_base_inheritance_merges_sections(tmp_path):
    exp = config.load(write(tmp_path))
    assert exp.name == "child" and exp.paper == "gatevpt" and exp.smoke is True
    assert exp.method.type == "gatevpt"
    assert dict(exp.method.options) == {"num_prompts": 4, "gate_init": 5.0, "prompt_dropout": 0.1}
    assert exp.optim.lr == 0.5 and exp.optim.batch_size == 32 and exp.optim.epochs == 4
    assert exp.optim.momentum == 0.9  # dataclass default, documented in config.py
    assert exp.train.max_steps_per_epoch == 2
    assert exp.source == str(tmp_path / "exp.py")
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.name = "x"  # type: ignore[misc]


def test_int_where_float_is_expected_is_accepted(tmp_path):
    exp = config.load(write(tmp_path, CHILD.replace("lr=0.5", "lr=1")))
    assert exp.optim.lr == 1.0 and isinstance(exp.optim.lr, float)


def test_overrides_at_load(tmp_path):
    exp = config.load(write(tmp_path), overrides={"optim.lr": 0.25, "method.num_prompts": 7})
    assert exp.optim.lr == 0.25 and exp.method.options["num_prompts"] == 7


# ------------------------------------------------------------------ errors name key and file
def test_unknown_top_level_key(tmp_path):
    raises_naming(tmp_path / "exp.py", "optimiser", child=CHILD + "\noptimiser = dict(lr=1)\n")


@pytest.mark.parametrize("section,bad", [("optim", "lrate=0.1"), ("train", "devise='cpu'"),
                                         ("data", "augment=True"), ("backbone", "weights='x'")])
def test_unknown_key_in_a_section(tmp_path, section, bad):
    raises_naming(tmp_path / "exp.py", bad.split("=")[0], section,
                  child=CHILD + f"\n{section} = dict({bad})\n")


def test_unknown_method_option(tmp_path):
    raises_naming(tmp_path / "exp.py", "gate_inti", "gatevpt",
                  child=CHILD.replace("gate_init=5.0", "gate_inti=5.0"))


def test_unknown_method_backbone_protocol(tmp_path):
    raises_naming(tmp_path / "exp.py", "vpt_deeep",
                  child=CHILD.replace("method = dict(gate_init=5.0)",
                                      "method = dict(_delete_=True, type='vpt_deeep')"))
    raises_naming(tmp_path / "exp.py", "vit_nano",
                  child=CHILD + "\nbackbone = dict(name='vit_nano.x')\n")
    raises_naming(tmp_path / "exp.py", "no-such-protocol",
                  child=CHILD + "\nprotocol = 'no-such-protocol'\n")


def test_unknown_benchmark_or_task_fails_at_load(tmp_path):
    """data.benchmark / data.task are checked against the benchmark table when the file loads:
    the message names the file, the key, the value and the known names."""
    raises_naming(tmp_path / "exp.py", "'data.benchmark'", "'synthetc'", "synthetic", "vtab1k",
                  child=CHILD + "\ndata = dict(benchmark='synthetc')\n")
    raises_naming(tmp_path / "exp.py", "'data.task'", "'cubs'", "benchmark 'fgvc'", "nabirds",
                  child=CHILD + "\ndata = dict(benchmark='fgvc', task='cubs')\n")
    raises_naming(tmp_path / "exp.py", "'data.task'", "'digits'", "shapes, stripes",
                  child=CHILD + "\ndata = dict(task='digits')\n")
    raises_naming(tmp_path / "exp.py", "'data.benchmark'", "'ade20k'", "seg-train",
                  child=CHILD + "\ndata = dict(benchmark='ade20k', task='ade20k')\n")


def test_benchmark_registered_by_custom_imports_is_known_at_load(tmp_path, monkeypatch):
    """The check runs after custom_imports: a plug-in benchmark (and its tasks) loads."""
    from replicate import benchmarks

    monkeypatch.setattr(benchmarks, "_BENCHMARKS", dict(benchmarks._BENCHMARKS))  # undone after
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = f"toyloadbench_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        from replicate.benchmarks import Benchmark, Task, register_benchmark
        register_benchmark(Benchmark(name='toyloadbench', title='toy', tasks={'dots': Task(3)},
                                     smoke=True))
        """))
    child = CHILD + ("\ndata = dict(benchmark='toyloadbench', task='dots')\n"
                     f"custom_imports = dict(imports=['{module}'], allow_failed_imports=False)\n")
    exp = config.load(write(tmp_path, child))
    assert (exp.data.benchmark, exp.data.task) == ("toyloadbench", "dots")
    raises_naming(tmp_path / "exp.py", "'data.task'", "'rings'", "dots",
                  child=child.replace("task='dots'", "task='rings'"))


@pytest.mark.parametrize("bad,key", [("optim = dict(lr='0.1')", "lr"),
                                     ("optim = dict(epochs=2.5)", "epochs"),
                                     ("optim = dict(batch_size=True)", "batch_size"),
                                     ("train = dict(compile='yes')", "compile"),
                                     ("train = dict(max_steps_per_epoch='2')", "max_steps_per_epoch"),
                                     ("data = dict(image_size=None)", "image_size"),
                                     ("seeds = [1, 'two']", "seeds"),
                                     ("smoke = 'no'", "smoke"),
                                     ("name = 3", "name"),
                                     ("assumed = ['optim.lr']", "assumed")])
def test_wrong_types(tmp_path, bad, key):
    raises_naming(tmp_path / "exp.py", key, child=CHILD + "\n" + bad + "\n")


@pytest.mark.parametrize("drop,key", [("data", "data"), ("method", "method"),
                                      ("backbone", "backbone")])
def test_missing_required_section(tmp_path, drop, key):
    base = "\n".join(l for l in BASE.splitlines() if not l.startswith(drop + " ="))
    raises_naming(tmp_path / "exp.py", key, "required", base=base)


def test_missing_required_key_in_a_section(tmp_path):
    base = BASE.replace("task='shapes', ", "")
    raises_naming(tmp_path / "exp.py", "task", "required", base=base)


def test_assumed_keys_must_exist(tmp_path):
    raises_naming(tmp_path / "exp.py", "optim.epochz",
                  child=CHILD + "\nassumed = {'optim.epochz': 'typo'}\n")


def test_lr_scaling_must_match_the_protocol(tmp_path):
    msg = raises_naming(tmp_path / "exp.py", "lr_scaling", "synthetic-smoke",
                        child=CHILD + "\noptim = dict(lr_scaling='linear256')\n")
    assert "linear256" in msg


def test_unreadable_and_absent_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "absent.py")
    raises_naming(tmp_path / "exp.py", child="name = 'x'\nthis is not python\n")
    raises_naming(tmp_path / "exp.py", "missing_base.py",
                  child="_base_ = ['missing_base.py']\nname = 'x'\n")


def test_unset_variable_is_named(monkeypatch):
    monkeypatch.delenv("CKPT_ROOT", raising=False)
    with pytest.raises(ConfigError) as e:
        config.expand_path("${CKPT_ROOT}/mae_pretrain_vit_base.pth", "checkpoint")
    assert "CKPT_ROOT" in str(e.value) and "export CKPT_ROOT" in str(e.value)
    monkeypatch.setenv("CKPT_ROOT", "/ckpts")
    assert config.expand_path("${CKPT_ROOT}/a.pth") == "/ckpts/a.pth"


# ------------------------------------------------------------------ replace / hash
def test_replace_returns_a_validated_copy(tmp_path):
    exp = config.load(write(tmp_path))
    new = exp.replace(**{"optim.lr": 2.5, "method.gate_init": 1.0, "method.type": "gatevpt"})
    assert new.optim.lr == 2.5 and new.method.options["gate_init"] == 1.0
    assert exp.optim.lr == 0.5 and exp.method.options["gate_init"] == 5.0  # original unchanged
    assert new.source == exp.source
    with pytest.raises(ConfigError, match="gate_inti"):
        exp.replace(**{"method.gate_inti": 1.0})
    with pytest.raises(ConfigError, match="lrate"):
        exp.replace(**{"optim.lrate": 1.0})


def test_config_hash_is_stable_and_covers_what_changes_numbers(tmp_path):
    exp = config.load(write(tmp_path))
    h = exp.config_hash()
    assert h == config.load(write(tmp_path)).config_hash()
    assert h == config.from_dict(json.loads(json.dumps(exp.to_dict()))).config_hash()
    # documentation-only fields do not change it ...
    assert exp.replace(name="other", assumed={}, seeds=[1, 2]).config_hash() == h
    # ... anything that changes a number does
    for change in ({"optim.lr": 0.51}, {"method.gate_init": 4.0}, {"data.task": "stripes"},
                   {"train.attention": "eager"}, {"backbone.checkpoint": "/x.pth"}):
        assert exp.replace(**change).config_hash() != h, change
    # and it does not depend on the process (hash seed, dict order)
    # (registry checks are skipped there: they import torch and were done above)
    code = ("import json, sys; from replicate import config; "
            "config._validate_semantics = lambda exp: None; "
            "print(config.from_dict(json.loads(sys.argv[1])).config_hash())")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(exp.to_dict())], env=env,
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == h


def test_to_dict_roundtrip(tmp_path):
    exp = config.load(write(tmp_path))
    again = config.from_dict(exp.to_dict(), source=exp.source)
    assert again == exp
