"""One trainer per run (engine/lock.py): a second process on the same run waits for the first
and uses its record; unique temporary files; stale ones removed by the next lock holder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from replicate.engine import execute
from replicate.engine.lock import lock_holder, run_lock, temp_path
from tests.helpers import tiny_config_text
from tests.slurm_fixtures import tiny_run, tiny_run_sections

REPO = Path(__file__).resolve().parents[1]

def config_text(task: str, epochs: int, name: str = "lock-probe", checkpoint: str = "") -> str:
    """The config file of :func:`tiny_run`'s experiment, as one cell of paper 'demo'."""
    return tiny_config_text(name, **tiny_run_sections(task, epochs, checkpoint),
                            cell=dict(backbone="micro_mae_test", method="gatevpt",
                                      benchmark="synthetic", task=task, metric="top1"))


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _epoch_lines(log: Path) -> list:
    return [ln.split("] ", 1)[1].split(" loss")[0] for ln in log.read_text().splitlines()
            if "] epoch " in ln]


def test_temp_paths_are_unique_per_writer(tmp_path):
    a, b = temp_path(tmp_path / "last.ckpt"), temp_path(tmp_path / "last.ckpt")
    assert a != b and a.parent == tmp_path and a.name.startswith(f"last.ckpt.{os.getpid()}.")
    assert a.suffix == ".tmp"


def test_second_trainer_waits_then_uses_the_record(tmp_path):
    run = tiny_run(tmp_path / "runs", epochs=2)
    lines, box = [], {}
    with run_lock(run.run_dir):  # "another process" trains this run
        assert "pid" in (lock_holder(run.run_dir) or "")
        stale = run.run_dir / "last.ckpt.999.dead.tmp"  # left by a killed writer
        stale.write_bytes(b"partial")
        t = threading.Thread(target=lambda: box.setdefault("rec", execute(run, echo=lines.append)))
        t.start()
        t0 = time.time()
        while not any("[lock]" in ln for ln in lines):
            assert t.is_alive() and time.time() - t0 < 60, lines
            time.sleep(0.05)
        assert not (run.run_dir / "log.txt").exists()  # it waits; it does not train
        assert stale.exists()
    t.join(120)
    assert not t.is_alive() and box["rec"]["metrics"]["test_n"] > 0
    (said,) = [ln for ln in lines if "[lock]" in ln]  # one line, naming the holder
    assert said.startswith(f"[lock] {run.run_id}: trained by pid {os.getpid()} on ")
    assert "waiting" in said
    assert not stale.exists() and not list(run.run_dir.glob("*.tmp"))
    assert lock_holder(run.run_dir) is None


def test_two_concurrent_runs_of_one_config_train_it_once(tmp_path):
    cfg = tmp_path / "probe.py"
    cfg.write_text(config_text(task="shapes", epochs=25))
    cmd = [sys.executable, "-m", "replicate", "run", str(cfg), "--runs-root",
           str(tmp_path / "runs")]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in out + err and "test_top1" in out
    (run_dir,) = (tmp_path / "runs" / "demo" / "smoke").iterdir()
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "done" and len(rec["history"]) == 25
    # trained once: every epoch logged once (a second trainer would repeat them)
    assert _epoch_lines(run_dir / "log.txt") == [f"epoch {k}/25" for k in range(1, 26)]
    assert not list(run_dir.glob("*.tmp"))


def test_simultaneous_reproduce_starts_train_each_run_once(tmp_path):
    from replicate.results.published import HEADER

    papers = tmp_path / "papers"
    cfg_dir = papers / "demo" / "configs" / "smoke"
    cfg_dir.mkdir(parents=True)
    for task in ("shapes", "stripes"):
        (cfg_dir / f"{task}.py").write_text(config_text(task=task, epochs=8))
    (papers / "demo" / "published.csv").write_text(",".join(HEADER) + "\n")
    env = dict(_env(), REPLICATE_PAPERS=str(papers))
    procs = [subprocess.Popen(
        [sys.executable, "-m", "replicate", "reproduce", "--paper", "demo", "--mode", "smoke",
         "--executor", "inproc", "--runs-root", str(tmp_path / "runs"),
         "--out", str(tmp_path / f"report{i}")], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "Traceback" not in out + err
    run_dirs = sorted((tmp_path / "runs" / "demo" / "smoke").iterdir())
    tasks = {json.loads((d / "record.json").read_text())["task"] for d in run_dirs}
    assert tasks == {"shapes", "stripes"}
    for d in run_dirs:  # every run trained once, by one of the two processes
        assert _epoch_lines(d / "log.txt") == [f"epoch {k}/8" for k in range(1, 9)], d
