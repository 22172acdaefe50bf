"""``python -m replicate explain CONFIG``: every resolved value with its source, on every
committed experiment config (in one process: explaining all ~600 takes seconds) and, in the
segmentation environment (``seg``), on every ADE20K (mmseg) config."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import List

import pytest

from replicate import config, methods
from replicate import explain as explain_mod
from replicate.cli import main
from replicate.explain import explain_rows

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"assumed", "paper", "config", "protocol", "default"}


def _configs() -> List[Path]:
    """Every committed experiment config: papers/*/configs/**/*.py except the ``_base_``
    fragments (not experiments) and ade20k/ (mmseg configs: the ``seg`` tests below)."""
    return sorted(p for p in (REPO / "papers").glob("*/configs/**/*.py")
                  if "_base_" not in p.parts and "ade20k" not in p.parts)


def _problems(path: Path, monkeypatch) -> List[str]:
    """What is wrong with the explanation of one config ([] when nothing)."""
    seen = {}
    real = explain_mod.explain_rows

    def spy(p, overrides=None):  # the rows the printed text was made from
        seen["rows"] = real(p, overrides)
        return seen["rows"]

    monkeypatch.setattr(explain_mod, "explain_rows", spy)
    text = explain_mod.explain(path)
    exp, rows, prow = seen["rows"]
    out = []
    flat = {k for k in config._flatten(exp.to_dict())
            if k not in ("source",) and not k.startswith(("assumed", "cell"))}
    missing = flat - {r.key for r in rows}  # method option defaults come on top
    if missing:
        out.append(f"keys without a row: {sorted(missing)}")
    out += [f"{r.key}: source {r.source!r}, detail {r.detail!r}" for r in rows + prow
            if r.source not in SOURCES or not r.detail]
    lines = text.splitlines()
    for r in rows + prow:  # printed: the key and its value, then [source] and the detail
        head = f"{r.key} = {r.value!r}"
        if head not in lines:
            out.append(f"not printed: {head}")
            continue
        nxt = lines[lines.index(head) + 1]
        if not nxt.startswith(f"    [{r.source}] {r.detail}"):
            out.append(f"{r.key}: printed source line {nxt!r}")
    for key, reason in exp.assumed.items():  # each assumed key carries its reason
        explained = [r for r in rows + prow if r.key == key or r.key.startswith(key + ".")
                     or r.key == f"protocol.{key}"]
        if not explained or not all(reason in r.detail for r in explained
                                    if not r.key.startswith("protocol.")):
            out.append(f"assumed {key}: reason not shown")
    needed = {"protocol.lr_grid", "protocol.search_eval", "protocol.final_train",
              "protocol.seeds", "protocol.precision", "protocol.measured_by"}
    if not needed <= {r.key for r in prow}:
        out.append(f"protocol rows missing: {sorted(needed - {r.key for r in prow})}")
    return out


def test_explain_names_a_source_for_every_resolved_value_of_every_config(monkeypatch):
    files = _configs()
    papers = {p.relative_to(REPO / "papers").parts[0] for p in files}
    assert {"gatevpt", "lspt", "vptm"} <= papers and len(files) > 500, (papers, len(files))
    _assert_all_explained(files, lambda path: _problems(path, monkeypatch), "configs")


def _assert_all_explained(files: List[Path], problems_of, what: str) -> None:
    """Every file's problems collected (a config that does not load or explain is a finding
    too), then one failure listing the first few."""
    bad = {}
    for path in files:
        try:
            problems = problems_of(path)
        except Exception as e:
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            bad[str(path.relative_to(REPO))] = problems
    assert not bad, f"{len(bad)} of {len(files)} {what}: " + "; ".join(
        f"{k}: {v[:3]}" for k, v in list(bad.items())[:5])


def _seg_configs() -> List[Path]:
    """Every committed ADE20K (mmseg) config, ``_base_`` fragments excluded."""
    return sorted(p for p in (REPO / "papers").glob("*/configs/ade20k/*.py"))


SEG_SOURCES = SOURCES | {"mmseg", "harness"}
#: the ADE20K configs inherit mmseg's own config files: the segmentation environment only
needs_mmseg = pytest.mark.skipif(importlib.util.find_spec("mmseg") is None,
                                 reason="needs mmseg (make install-seg)")


def _seg_problems(path: Path) -> List[str]:
    """What is wrong with the explanation of one ADE20K config ([] when nothing)."""
    from replicate.seg import explain as seg_explain

    cfg, rows, prow = explain_mod.seg_rows(path)
    text = explain_mod.explain(path)
    out = []
    resolved = {k for k in seg_explain._flat(cfg.to_dict())
                if not k.startswith(("assumed.", "cell."))}
    keys = [r.key for r in rows]
    if len(keys) != len(set(keys)):
        out.append(f"keys with two rows: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    if resolved - set(keys):
        out.append(f"keys without a row: {sorted(resolved - set(keys))}")
    # the replayed merge holds exactly the resolved keys
    traced = {k for k in seg_explain.trace(path) if not k.startswith(("assumed.", "cell."))}
    untraced = {k for k in resolved - traced if not k.endswith("_scope_")}
    if untraced or traced - resolved:
        out.append(f"trace differs: missing {sorted(untraced)}, extra {sorted(traced - resolved)}")
    out += [f"{r.key}: source {r.source!r}, detail {r.detail!r}" for r in rows + prow
            if r.source not in SEG_SOURCES or not r.detail]
    out += [f"{r.key}: a file's value without its file:line" for r in rows
            if r.key in traced and r.source in ("config", "mmseg", "paper") and not r.where]
    opts = {f"model.backbone.method.{k}" for k in
            methods.make_options(cfg.model.backbone.method.type, {}).__dataclass_fields__}
    if opts - set(keys):
        out.append(f"method options without a row: {sorted(opts - set(keys))}")
    lines = text.splitlines()
    for r in rows + prow:
        head = f"{r.key} = {r.value!r}"
        if head not in lines:
            out.append(f"not printed: {head[:80]}")
        elif not lines[lines.index(head) + 1].startswith(f"    [{r.source}] {r.detail}"):
            out.append(f"{r.key}: printed source line {lines[lines.index(head) + 1]!r}")
    for key, reason in dict(cfg.get("assumed") or {}).items():
        if not any(reason in r.detail for r in rows if r.key == key or
                   r.key.startswith(key + ".")):
            out.append(f"assumed {key}: reason not shown")
    return out


@pytest.mark.seg
@needs_mmseg
def test_explain_names_a_source_for_every_resolved_value_of_every_ade20k_config():
    files = _seg_configs()
    assert {p.relative_to(REPO / "papers").parts[0] for p in files} == {"gatevpt", "lspt"}, files
    _assert_all_explained(files, _seg_problems, "ADE20K configs")


@pytest.mark.seg
@needs_mmseg
def test_explain_ade20k_traces_each_value_to_the_file_that_sets_it():
    cfg = REPO / "papers/gatevpt/configs/ade20k/mae_vpt_deep.py"
    rows = {r.key: r for r in explain_mod.seg_rows(cfg)[1]}
    base = "papers/gatevpt/configs/ade20k/_base_/setr_pup_vitb16.py"

    def where(key: str) -> str:
        return rows[key].where.rsplit(":", 1)[0]

    # the leaf repeats the base's lr: the leaf (its assumed reason) is the source
    assert where("optim_wrapper.optimizer.lr").endswith("ade20k/mae_vpt_deep.py")
    assert rows["optim_wrapper.optimizer.lr"].source == "assumed"
    assert "baseline lr not given" in rows["optim_wrapper.optimizer.lr"].detail
    # mmseg's own files, each the last to set the key; ours where we replace it
    assert where("train_cfg.max_iters") == "mmseg::_base_/schedules/schedule_160k.py"
    assert where("model.decode_head.num_classes") == \
        "mmseg::setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py"
    assert rows["model.decode_head.num_convs"].source == "mmseg"
    assert where("model.decode_head.in_channels") == base
    # _delete_=True: nothing of mmseg's VisionTransformer survives under model.backbone
    assert not any(r.where.startswith("mmseg::") for k, r in rows.items()
                   if k.startswith("model.backbone."))
    # what the harness fills in or replaces
    assert rows["train_dataloader.batch_size"].source == "harness"
    assert "effective_batch_size" in rows["train_dataloader.batch_size"].detail
    dropout = rows["model.backbone.method.prompt_dropout"]
    assert dropout.source == "assumed" and "VPTOptions.prompt_dropout default" in dropout.detail
    assert rows["model.backbone.attention"].source == "default"
    assert rows["model.backbone.method.num_prompts"].source == "paper"


def test_explain_ade20k_without_mmseg_names_the_segmentation_environment(capsys):
    if importlib.util.find_spec("mmseg") is not None:
        pytest.skip("mmseg is installed here: the seg-marked tests explain these configs")
    cfg = REPO / "papers/gatevpt/configs/ade20k/mae_gatevpt.py"
    assert main(["explain", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "make install-seg" in err and "mmseg::" in err


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
