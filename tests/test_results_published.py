"""papers/*/published.csv: the schema check (malformed files rejected with their line number)
and the real tables (load, transcription rules, consistency of printed aggregates)."""
from __future__ import annotations

from pathlib import Path

import pytest

from replicate.results import check_published, load_published
from replicate.results.compare import vtab_mean_rule
from replicate.results.published import COLUMNS, PublishedError, cells, fgvc_tasks, vtab_groups

ROOT = Path(__file__).resolve().parents[1]
HEADER = ",".join(COLUMNS)
GOOD = "gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,70.56,src,"


def _write(tmp_path, *lines) -> Path:
    p = tmp_path / "published.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("bad,line,match", [
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,seventy,src,", 3,
     "value 'seventy' is not a number"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,nan,src,", 3, "not finite"),
    ("gatevpt,,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,70.56,src,", 3,
     "empty required field 'table'"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,70.56,,", 3,
     "empty required field 'source'"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,imagenet,,cub,top1,70.56,src,", 3,
     "unknown benchmark 'imagenet'"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top5,70.56,src,", 3,
     "unknown metric 'top5'"),
    ("gatevpt,Table 3,unknown,mae_vitb16,gatevpt,ade20k,,miou_ss,top1,38.44,src,", 3,
     "unknown metric 'top1' for ade20k"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,birds,top1,70.56,src,", 3,
     "unknown FGVC task 'birds'"),
    ("gatevpt,Table 2,unknown,mae_vitb16,gatevpt,vtab1k,natural,dmlab,top1,5,src,", 3,
     "belongs to group 'structured'"),
    ("gatevpt,Table 2,unknown,mae_vitb16,gatevpt,vtab1k,,group_mean,top1,5,src,", 3,
     "group_mean needs group"),
    ("gatevpt,Table 1,p. 6,mae_vitb16,gatevpt,fgvc,,cub,top1,70.56,src,", 3, "page 'p. 6'"),
    ("gatevpt,Table 1,unknown,MAE,gatevpt,fgvc,,cub,top1,70.56,src,", 3, "backbone 'MAE'"),
    ("gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,cub,top1,70.56,src", 3, "11 fields"),
    (GOOD.replace("70.56", "70.60"), 3, r"duplicate cell .* \(first on line 2\)"),
])
def test_schema_rejects_with_line_number(tmp_path, bad, line, match):
    p = _write(tmp_path, HEADER, GOOD, bad)
    with pytest.raises(PublishedError, match=rf"published\.csv line {line}: .*{match}"):
        load_published(p)


def test_schema_header_missing_file_and_paper(tmp_path):
    p = _write(tmp_path, HEADER.replace("page,", ""), GOOD)
    with pytest.raises(PublishedError, match=r"line 1: wrong columns \(missing: \['page'\]"):
        load_published(p)
    with pytest.raises(PublishedError, match="nope.csv: published table not found"):
        load_published(tmp_path / "nope.csv")
    with pytest.raises(PublishedError,
                       match="line 2: paper 'gatevpt' in the table of paper 'lspt'"):
        load_published(_write(tmp_path, HEADER, GOOD), paper="lspt")


def test_line_numbers_count_quoted_multiline_fields_and_blank_lines(tmp_path):
    multi = GOOD.replace(",src,", ',src,"a note\nover two lines"')
    bad = "gatevpt,Table 1,unknown,mae_vitb16,gatevpt,fgvc,,dogs,top1,x,src,"
    p = _write(tmp_path, HEADER, multi, "", bad)  # header 1, note on 2-3, blank 4, bad on 5
    with pytest.raises(PublishedError, match="line 5: value 'x'"):
        load_published(p)


def test_valid_file_loads_and_same_cell_in_two_tables(tmp_path):
    t4 = GOOD.replace("Table 1", "Table 4")
    df = load_published(_write(tmp_path, HEADER, GOOD, t4, ""))
    assert list(df["line"]) == [2, 3] and df["value"].tolist() == [70.56, 70.56]
    c = cells(df)
    assert len(c) == 1 and c.iloc[0]["tables"] == "Table 1; Table 4" and c.iloc[0]["values_agree"]
    header_only = load_published(_write(tmp_path, HEADER))
    assert header_only.empty and list(header_only.columns)[:12] == list(COLUMNS)


def test_consistency_check_flags_a_wrong_printed_mean(tmp_path):
    rows = [GOOD.replace("cub", t).replace("70.56", v) for t, v in
            zip(("cub", "flowers", "cars", "dogs", "nabirds", "mean"),
                ("10", "20", "30", "40", "50", "30.01"))]
    checks = check_published(load_published(_write(tmp_path, HEADER, *rows)))
    assert len(checks) == 1
    # printed with 2 decimals: allowed slack 0.005; 30.01 - 30 is outside it (approx: float64
    # 30.00 - 30.01 is -0.01 up to binary rounding, 1e-13 relative)
    assert not checks.iloc[0]["ok"] and checks.iloc[0]["diff"] == pytest.approx(-0.01)
    rows[-1] = rows[-1].replace("30.01", "30.00")
    assert check_published(load_published(_write(tmp_path, HEADER, *rows))).iloc[0]["ok"]


# ------------------------------------------------------------------ the real tables
def _real(paper):
    return load_published(ROOT / "papers" / paper / "published.csv", paper=paper)


def test_task_lists_match_the_harness():
    assert fgvc_tasks() == ("cub", "flowers", "cars", "dogs", "nabirds")
    assert {g: len(ts) for g, ts in vtab_groups().items()} == {
        "natural": 7, "specialized": 4, "structured": 8}


def test_gatevpt_table_is_complete_and_consistent():
    df = _real("gatevpt")
    assert len(df) == 114
    assert set(df["table"]) == {"Table 1", "Table 2", "Table 3", "Table 4", "Table 7"}
    assert (df["source"].str.contains("2306.05067")).all() and (df["page"] != "").all()
    assert (df[df["page"] == "unknown"]["note"].str.contains("page unknown")).all()
    assert "finetune" not in set(df["method"])  # DA-VPT re-reports are not GateVPT values
    t1 = df[df["table"] == "Table 1"]
    assert len(t1) == 2 * 3 * 6  # 2 backbones x 3 methods x (5 datasets + AVG)
    t2 = df[df["table"] == "Table 2"]
    assert len(t2) == 2 * 3 * 4 and set(t2["task"]) == {"group_mean", "mean"}
    assert t2[t2["method"].str.startswith("vpt_")]["note"].str.contains("VPT paper").all()
    assert len(df[df["benchmark"] == "ade20k"]) == 12
    headline = df.set_index(["table", "backbone", "method", "group", "task"])["value"]
    assert headline[("Table 1", "mae_vitb16", "gatevpt", "", "mean")] == 73.39
    assert headline[("Table 2", "mocov3_vitb16", "gatevpt", "", "mean")] == 65.80
    assert headline[("Table 3", "mae_vitb16", "gatevpt", "", "miou_ss")] == 38.44
    checks = check_published(df)
    hard = checks[~checks["informational"]]
    assert len(hard) == 6 + 6 + 6 + 4  # Table 1 and 7 AVGs, Table 2 AVGs, Table 4 = Table 1
    assert hard["ok"].all(), hard[~hard["ok"]]
    assert not checks[checks["informational"]]["ok"].any()  # AVG is not the mean of groups
    assert "matches 6 of 6" in vtab_mean_rule(checks)


def test_lspt_table_holds_only_shared_baselines():
    l, g = _real("lspt"), _real("gatevpt")
    assert len(l) == 60 and set(l["table"]) == {"Table 1", "Table 2"}
    assert not l["method"].str.startswith("lspt").any()
    assert l["source"].str.contains("reviewer 3").all()
    key = ["table", "backbone", "method", "group", "task"]
    merged = l.merge(g, on=key, suffixes=("_l", "_g"))
    assert len(merged) == len(l) and (merged["value_l"] == merged["value_g"]).all()
    assert check_published(l)[lambda c: ~c["informational"]]["ok"].all()


def test_vptm_table_is_valid_and_empty():
    df = _real("vptm")
    assert df.empty and check_published(df).empty
