"""Every method's enumerated and ranged options are refused when the config loads (not when the
model is built), and the error names the file, the key and what is allowed."""
from __future__ import annotations

from pathlib import Path

import pytest

from replicate import config, methods
from tests.helpers import tiny_dict

REPO = Path(__file__).resolve().parents[1]

TINY = tiny_dict("opts", optim=dict(batch_size=10, epochs=1))

# (method, bad options, the key named, a fragment of what is allowed)
BAD = [
    ("linear", dict(pool="max"), "pool", "'mean_norm'"),
    ("finetune", dict(head_init="xavier"), "head_init", "'vpt', 'zeros'"),
    ("vpt_shallow", dict(num_prompts=0), "num_prompts", ">= 1"),
    ("vpt_deep", dict(prompt_dropout=1.0), "prompt_dropout", "[0, 1)"),
    ("vpt_deep", dict(num_prompts="10"), "num_prompts", "an integer"),
    ("gatevpt", dict(num_gates=-2), "num_gates", "-1"),
    ("gatevpt", dict(temp_min=2.0), "temp_init", "temp_min <= temp_init"),
    ("gatevpt", dict(gate="yes"), "gate", "True/False"),
    ("lspt", dict(coupling="gru"), "coupling", "'gate_then_lstm', 'lstm_replaces_gate'"),
    ("lspt", dict(spatial_tokens="cls"), "spatial_tokens", "'patches'"),
    ("lspt", dict(lstm_hidden=0), "lstm_hidden", "-1 (= D) or >= 1"),
    ("lspt", dict(coupling="lstm_replaces_gate", gate=True), "gate", "False with coupling"),
    ("vptm", dict(token_order="random"), "token_order", "prompts_mask"),
    ("vptm", dict(proto_dim=0), "proto_dim", ">= 1"),
]


@pytest.mark.parametrize("method,opts,key,allowed", BAD,
                         ids=[f"{m}-{k}" for m, _, k, _ in BAD])
def test_bad_option_fails_at_load(method, opts, key, allowed):
    raw = dict(TINY, method=dict(type=method, **opts))
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw, source="cfgs/bad.py")
    msg = str(e.value)
    assert msg.startswith("cfgs/bad.py [method]:") and key in msg and allowed in msg, msg


@pytest.mark.parametrize("method", methods.registered())
def test_defaults_are_valid(method):
    config.from_dict(dict(TINY, method=dict(type=method)), source="ok.py")


def test_lspt_config_file_with_gru_coupling_fails_when_loaded(tmp_path):
    base = REPO / "papers/lspt/configs/smoke/digits/lspt.py"
    cfg = tmp_path / "gru.py"
    cfg.write_text(f"_base_ = [{str(base)!r}]\nmethod = dict(coupling='gru')\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(cfg)
    msg = str(e.value)
    assert str(cfg) in msg and "'method.coupling' = 'gru'" in msg
    assert "gate_then_lstm" in msg and "lstm_replaces_gate" in msg
