"""reproduce checks its inputs first and writes reports atomically (issue 17.6); GateVPT has
the smoke configs the README promises and they run end to end (issue 17.7)."""
import json

import pytest

from replicate import sweep
from replicate.cli import main
from replicate.results import report as report_mod
from replicate.results.published import COLUMNS
from tests.helpers import demo_paper as make_demo_paper, tiny_config_text

TINY = tiny_config_text('rep-tiny')


@pytest.fixture
def demo_paper(tmp_path, monkeypatch):
    return make_demo_paper(tmp_path, monkeypatch, {"tiny": TINY})


def reproduce(tmp_path, *extra):
    return main(["reproduce", "--paper", "demo", "--mode", "smoke", "--executor", "inproc",
                 "--runs-root", str(tmp_path / "runs"), "--out", str(tmp_path / "out" / "demo"),
                 *extra])


@pytest.mark.parametrize("damage", ["missing", "bad row", "bad config"])
def test_inputs_are_checked_before_the_first_stage(demo_paper, tmp_path, capsys, damage):
    if damage == "missing":
        (demo_paper / "published.csv").unlink()
    elif damage == "bad row":
        with open(demo_paper / "published.csv", "a") as f:
            f.write(",".join(["demo"] + ["x"] * (len(COLUMNS) - 1)) + "\n")
    else:
        (demo_paper / "configs" / "smoke" / "broken.py").write_text(TINY + "optim = dict(lr=0)\n")
    assert reproduce(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and str(demo_paper) in err[-1]
    assert not list((tmp_path / "runs").rglob("config.json"))  # no run was started


def test_report_is_never_written_piecemeal(demo_paper, tmp_path, monkeypatch, capsys):
    assert reproduce(tmp_path) == 0
    out = tmp_path / "out" / "demo"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"reproduced.csv", "runs.csv", "comparison.md", "records.csv"} <= set(before)
    # one more run changes every table; the report then fails half-way through writing
    assert main(["run", str(demo_paper / "configs/smoke/tiny.py"), "--seed", "7",
                 "--runs-root", str(tmp_path / "runs")]) == 0

    def boom(*a, **k):
        raise OSError(28, "No space left on device", str(out / "comparison.md"))

    with monkeypatch.context() as m:
        m.setattr(report_mod, "_cost_lines", boom)  # after the CSVs were produced
        assert main(["compare", "--paper", "demo", "--mode", "smoke", "--out", str(out),
                     "--runs-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: No space left on device") and "free space" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # the old report, whole
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left
    assert main(["compare", "--paper", "demo", "--mode", "smoke", "--out", str(out),
                 "--runs-root", str(tmp_path / "runs")]) == 0
    assert (out / "runs.csv").read_bytes() != before["runs.csv"]  # now the new report


def test_gatevpt_has_smoke_configs_for_each_method():
    exps = sweep.load_experiments(sweep.config_files("gatevpt", "smoke"))
    assert sorted(e.method.type for e in exps) == ["gatevpt", "linear", "vpt_deep", "vpt_shallow"]
    assert all(e.smoke and e.protocol == "digits-smoke" and e.paper == "gatevpt" for e in exps)


def test_reproduce_gatevpt_smoke_on_local_executor(tmp_path, capsys):
    out = tmp_path / "report" / "gatevpt"
    args = ["reproduce", "--paper", "gatevpt", "--mode", "smoke", "--executor", "local",
            "--select", "digits/gatevpt.py", "--runs-root", str(tmp_path / "runs"),
            "--out", str(out)]
    assert main(args) == 0
    recs = [json.loads(p.read_text())
            for p in (tmp_path / "runs" / "gatevpt" / "smoke").glob("*/record.json")]
    assert sorted(r["seed"] for r in recs) == [0, 1]  # the smoke protocol's seeds
    assert all(r["smoke"] and r["method"] == "gatevpt" for r in recs)
    text = (out / "comparison.md").read_text()
    assert "SMOKE" in text and "gatevpt" in text
