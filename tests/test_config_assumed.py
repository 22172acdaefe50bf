"""``assumed`` reasons inherited from a ``_base_`` file for options the cell's method lacks are
dropped at load (``replicate.config.drop_inherited_assumed``), so a baseline cell on a base
written for GateVPT says only the reasons that differ; reasons the cell itself writes for a
key that does not exist are still refused, naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from replicate import config
from replicate.errors import ConfigError

SMOKE_BASE = (Path(__file__).resolve().parents[1] / "papers" / "gatevpt" / "configs" / "smoke"
              / "_base_" / "smoke.py")


def _cell(tmp_path: Path, assumed: str = "") -> Path:
    p = tmp_path / "cell.py"
    p.write_text(f"_base_ = [{str(SMOKE_BASE)!r}]\nname = 'toy-vpt-deep'\n"
                 "method = dict(_delete_=True, type='vpt_deep', num_prompts=4, prompt_dropout=0.1, "
                 "pool='auto', head_init='vpt')\n" + assumed)
    return p


def test_base_reasons_for_absent_options_are_dropped(tmp_path):
    base = config.load(SMOKE_BASE.parent.parent / "digits" / "gatevpt.py").assumed
    assert "method.temp_init" in base  # the GateVPT base explains its temperature option
    exp = config.load(_cell(tmp_path, "assumed = {'optim.lr': 'searched'}\n"))
    assert "method.temp_init" not in exp.assumed  # vpt_deep has no temperatures
    assert exp.assumed["optim.epochs"] == base["optim.epochs"]  # other reasons inherited
    assert exp.assumed["method.prompt_dropout"] == base["method.prompt_dropout"]
    assert exp.assumed["optim.lr"] == "searched"


def test_own_reason_for_absent_option_is_refused(tmp_path):
    path = _cell(tmp_path, "assumed = dict(**{'method.temp_init': 'mine'})\n")
    with pytest.raises(ConfigError, match=r"cell\.py.*method\.temp_init"):
        config.load(path)


def test_own_assumed_keys_are_read_without_running_the_file(tmp_path):
    p = tmp_path / "c.py"
    p.write_text("assumed = dict(_delete_=True, **{'a.b': 'x'}, c='y')\n")
    assert config._own_assumed_keys(p) == {"a.b", "c"}
    p.write_text("method, assumed = 1, {k: 'x' for k in 'ab'}\n")
    assert config._own_assumed_keys(p) is None  # unreadable: nothing is dropped
