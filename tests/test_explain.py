"""``python -m replicate explain CONFIG``: every resolved value with its source, on the committed
configs (a stride of them: loading all ~600 takes about a minute on 2 cores)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from replicate import config
from replicate.cli import main
from replicate.explain import explain_rows

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"assumed", "paper", "config", "protocol", "default"}
#: every STRIDE-th config of each paper (sorted), plus each paper's first; ade20k holds mmseg
#: configs, which are not experiments
STRIDE = 15


def _configs():
    out = []
    for paper in sorted(p for p in (REPO / "papers").iterdir() if (p / "configs").is_dir()):
        files = sorted(p for p in (paper / "configs").rglob("*.py")
                       if "_base_" not in p.parts and "ade20k" not in p.parts)
        out += files[::STRIDE] + files[-1:]
    return out


@pytest.mark.parametrize("path", _configs(), ids=lambda p: str(p.relative_to(REPO / "papers")))
def test_explain_names_a_source_for_every_resolved_value(path):
    exp, rows, prow = explain_rows(path)
    flat = {k for k in config._flatten(exp.to_dict())
            if k not in ("source",) and not k.startswith(("assumed", "cell"))}
    keys = {r.key for r in rows}
    assert flat <= keys, flat - keys  # method option defaults come on top
    assert all(r.source in SOURCES and r.detail for r in rows + prow)
    for key, reason in exp.assumed.items():  # each assumed key carries its reason
        explained = [r for r in rows + prow if r.key == key or r.key.startswith(key + ".")
                     or r.key == f"protocol.{key}"]
        assert explained and all(reason in r.detail for r in explained
                                 if not r.key.startswith("protocol.")), key
    assert {r.key for r in prow} >= {"protocol.lr_grid", "protocol.search_eval",
                                      "protocol.final_train", "protocol.seeds",
                                      "protocol.precision", "protocol.measured_by"}


def test_explain_cli_shows_table5_value_and_assumed_reason(capsys):
    cfg = REPO / "papers/gatevpt/configs/pinned/vtab1k/mocov3_vitb16/eurosat.py"
    assert main(["explain", str(cfg)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def row(key: str) -> str:
        i = lines.index(next(x for x in lines if x.startswith(f"{key} = ")))
        return lines[i] + "\n" + lines[i + 1]

    # the Table 5 values of this cell, read from the transcribed table itself
    with open(REPO / "papers/gatevpt/hparams.csv") as f:
        t5 = next(r for r in csv.DictReader(f) if r["backbone"] == "mocov3_vitb16"
                  and r["task"] == "eurosat")
    assert row("method.num_prompts").startswith(f"method.num_prompts = "
                                                f"{int(t5['num_prompt_tokens'])}\n")
    assert "[paper]" in row("method.num_prompts") and "Table 5" in row("method.num_prompts")
    assert row("optim.lr").startswith(f"optim.lr = {float(t5['base_lr'])}\n")
    assert "[paper]" in row("optim.lr")
    # an assumed key with its reason, as the config states it
    reason = config.load(cfg).assumed["method.prompt_dropout"]
    assert "[assumed] " + reason in row("method.prompt_dropout")
    # a dataclass default with its documentation; protocol settings with theirs
    assert "[default] TrainSpec.compile default" in row("train.compile")
    assert "[assumed]" in row("protocol.selection") and "tune_vtab.py" in row("protocol.selection")


def test_search_config_says_the_grid_replaces_the_lr(capsys):
    cfg = next(iter(sorted((REPO / "papers/vptm/configs/search").rglob("*.py"))))
    rows = {r.key: r for r in explain_rows(cfg)[1]}
    for key in ("optim.lr", "optim.weight_decay"):
        assert rows[key].source == "protocol" and "grid" in rows[key].detail


def test_explain_override_and_bad_config(tmp_path, capsys):
    cfg = REPO / "papers/lspt/configs/smoke/digits/lspt.py"
    assert main(["explain", str(cfg), "--set", "method.lstm_hidden=16"]) == 0
    assert "method.lstm_hidden = 16" in capsys.readouterr().out
    assert main(["explain", str(cfg), "--set", "method.coupling='gru'"]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "method.coupling" in err and "gate_then_lstm" in err


def test_search_report_shows_the_papers_lr_beside_the_selected_one():
    import pandas as pd

    from replicate.results.report import _selection_lines
    runs = pd.DataFrame([dict(experiment="e1", backbone="mae_vitb16", method="gatevpt",
                              benchmark="vtab1k", task="dtd", selected_lr=0.25, selected_wd=0.0,
                              selection_val_top1=61.5, paper_lr=2.5, skipped_diverged="")])
    lines = _selection_lines(runs)
    header = next(x for x in lines if x.startswith("| backbone"))
    row = next(x for x in lines if x.startswith("| mae_vitb16"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    vals = [c.strip() for c in row.strip("|").split("|")]
    assert vals[cols.index("selected lr")] == "0.25" and vals[cols.index("paper's lr")] == "2.5"
