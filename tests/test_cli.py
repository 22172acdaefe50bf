"""The CLI a user types: plan, run, status, compare, doctor, backbones, demo."""
import json
import subprocess
import sys
from pathlib import Path


from replicate.cli import main
from tests.helpers import TINY_GATEVPT, tiny_config_text

ROOT = Path(__file__).resolve().parents[1]

TINY = tiny_config_text("cli-tiny", TINY_GATEVPT)


def test_plan_prints_runs_and_estimate(capsys, tmp_path):
    assert main(["plan", "--paper", "gatevpt", "--select", "fgvc/*/cub.py",
                 "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stage pinned :    10 runs" in out  # 2 backbones x 5 seeds
    assert "GPU-h" in out and "trainable parameters per run" in out


def test_plan_search_reports_pending_final(capsys, tmp_path):
    main(["plan", "--paper", "gatevpt", "--mode", "search", "--select",
          "vtab1k/mae_vitb16/gatevpt/dtd.py", "--runs-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "stage search :     7 runs" in out  # App. A.2 grid: 7 lrs x wd 0
    assert "configs wait for their search grid" in out


def test_run_then_status_and_rerun_is_a_noop(capsys, tmp_path):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY)
    root = tmp_path / "runs"
    assert main(["run", str(cfg), "--seed", "3", "--runs-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "test_top1" in out
    recs = list(root.glob("demo/smoke/*/record.json"))  # smoke config: the planned stage
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["seed"] == 3 and rec["smoke"] is True
    mtime = recs[0].stat().st_mtime
    assert main(["run", str(cfg), "--seed", "3", "--runs-root", str(root)]) == 0
    assert recs[0].stat().st_mtime == mtime  # finished runs are not trained again


def test_config_error_exit_code(capsys, tmp_path):
    cfg = tmp_path / "bad.py"
    cfg.write_text(TINY + "\nfoo = 1\n")
    assert main(["run", str(cfg), "--runs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'foo'" in err and str(cfg) in err


def test_backbones_lists_registry(capsys):
    main(["backbones"])
    out = capsys.readouterr().out
    for name in ("vit_base_patch16_224.mae", "vit_base_patch16_224.mocov3",
                 "vit_base_patch16_224.orig_in21k"):
        assert name in out


def test_doctor_names_fixes(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    monkeypatch.setenv("CKPT_ROOT", str(tmp_path))
    rc = main(["doctor"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "DATA_ROOT" in out and "export DATA_ROOT" in out
    assert "mae_pretrain_vit_base.pth missing: download" in out


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "replicate", "--help"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0 and "reproduce" in r.stdout
