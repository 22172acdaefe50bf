"""Graceful stop: SIGTERM/SIGINT finish the epoch, save its checkpoint, stop with a log line;
a re-run resumes to a bitwise-equal result (``run`` in-process and local jobs)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from replicate import launch
from replicate.engine.stop import GracefulStop
from replicate.launch import RunJob
from tests.slurm_fixtures import tiny_run
from tests.test_launch_lock import REPO, _env, config_text

EPOCHS = 40


def _wait_for_text(path: Path, text: str, proc=None, timeout: float = 300.0) -> None:
    t0 = time.time()
    while not (path.is_file() and text in path.read_text()):
        assert proc is None or proc.poll() is None, "process ended early"
        if time.time() - t0 > timeout:
            raise TimeoutError(f"'{text}' not in {path} after {timeout:.0f} s")
        time.sleep(0.05)


def _assert_same_training(a: Path, b: Path) -> None:
    """Two run directories hold the same result, bit for bit: metrics, per-epoch losses, and
    the final trainable tensors and optimizer state."""
    ra = json.loads((a / "record.json").read_text())
    rb = json.loads((b / "record.json").read_text())
    assert ra["metrics"] == rb["metrics"]
    assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]
    ca, cb = (torch.load(d / "last.ckpt", map_location="cpu") for d in (a, b))
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name, v in sa[k].items():
            assert torch.equal(v, sb[k][name]) if torch.is_tensor(v) else v == sb[k][name]


def test_first_signal_requests_a_stop_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        assert stop() is False
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # handlers run between bytecodes of the main thread
        assert stop() == "SIGINT" and stop.exit_code == 128 + signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_checkpoints_and_a_rerun_resumes_bitwise_equal(tmp_path):
    cfg = tmp_path / "probe.py"
    cfg.write_text(config_text(task="shapes", epochs=EPOCHS))

    def cmd(root):
        return [sys.executable, "-m", "replicate", "run", str(cfg), "--runs-root", str(root)]

    popen = dict(cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ref = subprocess.Popen(cmd(tmp_path / "ref"), **popen)  # uninterrupted, alongside
    p = subprocess.Popen(cmd(tmp_path / "runs"), **popen)
    stage = tmp_path / "runs" / "demo" / "smoke"
    t0 = time.time()
    while not (stage.is_dir() and any(stage.iterdir())):
        assert p.poll() is None and time.time() - t0 < 300
        time.sleep(0.05)
    (run_dir,) = stage.iterdir()
    _wait_for_text(run_dir / "log.txt", "epoch 2/", p)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 128 + signal.SIGTERM, out + err
    assert "Traceback" not in out + err
    assert "received SIGTERM: stopping after the current epoch" in err  # at once, one line
    assert "stopped by SIGTERM" in out
    log = (run_dir / "log.txt").read_text()
    assert "(SIGTERM); checkpoint saved" in log
    stopped_at = int(log.split("stopping after epoch ")[1].split()[0])
    assert 2 <= stopped_at < EPOCHS
    assert (run_dir / "last.ckpt").is_file()
    assert not (run_dir / "record.json").exists() and not (run_dir / "failed.json").exists()

    again = subprocess.run(cmd(tmp_path / "runs"), **{k: v for k, v in popen.items()
                                                      if k not in ("stdout", "stderr")},
                           capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {run_dir / 'last.ckpt'} at epoch {stopped_at}/{EPOCHS}" in \
        (run_dir / "log.txt").read_text()
    ref.communicate(timeout=600)
    assert ref.returncode == 0
    (ref_dir,) = (tmp_path / "ref" / "demo" / "smoke").iterdir()
    assert ref_dir.name == run_dir.name
    _assert_same_training(run_dir, ref_dir)


def test_sigterm_stops_a_local_job_at_a_checkpoint_and_resubmitting_resumes(tmp_path):
    ref = tiny_run(tmp_path / "ref", epochs=EPOCHS)
    run = tiny_run(tmp_path / "runs", epochs=EPOCHS)
    logs = tmp_path / "logs"
    (job,) = launch.submit_runs([run], "local", None, logs, snapshot=False)
    _wait_for_text(run.run_dir / "log.txt", "epoch 2/")
    os.kill(int(job.job_id), signal.SIGTERM)  # the local controller forwards it to the job
    (out,) = launch.wait([job], poll_s=0.2, timeout_s=300)
    assert out["state"] == "INTERRUPTED" and "stopped by SIGTERM" in out["error"], repr(out)
    log = (run.run_dir / "log.txt").read_text()
    stopped_at = int(log.split("stopping after epoch ")[1].split()[0])
    assert "(SIGTERM); checkpoint saved" in log and stopped_at < EPOCHS
    assert not (run.run_dir / "failed.json").exists()
    (row,) = launch.job_states(logs)
    assert row["state"] == "INTERRUPTED", row
    assert row["error"].endswith(f"resumable from epoch {stopped_at}: re-submit the stage")
    (job2,) = launch.submit_runs([run], "local", None, logs, snapshot=False)
    assert launch.wait([job2], poll_s=0.2, timeout_s=300)[0]["state"] == "DONE"
    assert f"at epoch {stopped_at}/{EPOCHS}" in (run.run_dir / "log.txt").read_text()
    RunJob()([ref.to_dict()])  # the same run, uninterrupted, in this process
    _assert_same_training(run.run_dir, ref.run_dir)
