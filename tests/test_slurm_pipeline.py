"""The whole protocol on the real one-node SLURM: plan -> search array -> select on val ->
final array -> collect -> compare, through the same CLI `make reproduce-*` calls."""
import json
import pytest

from replicate.cli import main
from tests.helpers import TINY_GATEVPT, demo_paper, tiny_config_text

pytestmark = pytest.mark.slurm

def config_text(task: str) -> str:
    """The tiny GateVPT experiment (tests/helpers.py) on ``task``, 2 steps per epoch, as one cell
    of paper 'demo'."""
    return tiny_config_text(f"slurm-e2e-{task}", TINY_GATEVPT, data=dict(task=task),
                            train=dict(max_steps_per_epoch=2),
                            cell=dict(backbone="micro_mae_test", method="gatevpt",
                                      benchmark="synthetic", task=task, metric="top1"))


def test_reproduce_search_mode_on_slurm(slurm_cluster, tmp_path, monkeypatch, capsys):
    # 2 tasks x grid (2 lrs) x 2 final seeds
    demo_paper(tmp_path, monkeypatch, {t: config_text(t) for t in ("shapes", "stripes")},
               mode="search")
    runs = tmp_path / "runs"
    out = tmp_path / "results" / "demo"
    args = ["reproduce", "--paper", "demo", "--mode", "search", "--executor", "slurm",
            "--cluster", "local-test", "--runs-root", str(runs), "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().out
    search = list((runs / "demo" / "search").glob("*/record.json"))
    final = [json.loads(p.read_text()) for p in (runs / "demo" / "final").glob("*/record.json")]
    assert len(search) == 4 and len(final) == 4
    assert {r["seed"] for r in final} == {0, 1}
    for r in final:  # the selected lr came from the val metric of the search stage
        assert r["tags"]["selected_lr"] == r["lr"] and "val_top1" in r["tags"]
        assert r["train_split"] == "trainval" and "test_top1" in r["metrics"]
    table = (out / "comparison.md").read_text()
    assert "smoke" in table and "shapes" in table and "stripes" in table
    # re-entrant: running the target again submits nothing and rewrites the same report
    capsys.readouterr()
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "submitted" not in again and "comparison" in again
