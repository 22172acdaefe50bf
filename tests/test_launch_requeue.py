"""Requeue rules of RunJob without SLURM: USR2 blocked from the job's first instant, no requeue
of finished runs, a cap on allocations without progress, "requeued" only when SLURM accepted,
sbatch --requeue by default, profiles whose time limit leaves no room refused."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from replicate import launch
from replicate.launch import ProfileError, RunJob
from replicate.launch.executors import blocked_python
from replicate.launch.job import RequeueRefused, RunsStalled, _AlreadyFinished, _checked_requeue
from tests.slurm_fixtures import tiny_run


def test_usr2_stays_pending_from_the_first_instant_of_the_job_python(tmp_path):
    """The mask set before exec survives into the job's python: a USR2 sent once it runs is
    pending (not fatal) until unblocked, then handled."""
    ready = tmp_path / "ready"
    code = (f"import signal, time, pathlib\n"
            f"got = []\n"
            f"signal.signal(signal.SIGUSR2, lambda s, f: got.append(s))\n"
            f"pathlib.Path({str(ready)!r}).write_text('x')\n"
            f"time.sleep(3)\n"
            f"print('pending', signal.SIGUSR2 in signal.sigpending(), 'handled', got)\n"
            f"signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGUSR2}})\n"
            f"time.sleep(0.1)\n"
            f"print('handled', got)\n")
    p = subprocess.Popen(shlex.split(blocked_python()) + ["-c", code], stdout=subprocess.PIPE,
                         text=True)
    t0 = time.time()
    while not ready.exists():
        assert p.poll() is None and time.time() - t0 < 60
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGUSR2)  # the shell exec'd into python: same pid
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert out.splitlines() == ["pending True handled []", f"handled [{int(signal.SIGUSR2)}]"]


def _finished_job(run_dicts) -> RunJob:
    job = RunJob()
    job._started, job._finished = True, True
    job._result = [{"run_id": d["run_id"]} for d in run_dicts]
    return job


def test_a_finished_job_is_not_requeued(tmp_path):
    runs = [tiny_run(tmp_path).to_dict()]
    job = _finished_job(runs)
    with pytest.raises(_AlreadyFinished):  # __call__ catches it and returns the records
        job.checkpoint(runs)
    calls = []
    job._usr2_next = lambda s, f: calls.append(s)  # submitit's handler: checkpoint + requeue
    job._on_usr2(signal.SIGUSR2, None)
    assert calls == []
    job._result = [None]  # stopped before the end: a USR2 requeues
    job._on_usr2(signal.SIGUSR2, None)
    assert calls == [signal.SIGUSR2]


def test_requeues_while_epochs_advance_and_stops_after_allocations_without_progress(tmp_path):
    run = tiny_run(tmp_path)
    runs = [run.to_dict()]
    run.run_dir.mkdir(parents=True)
    ckpt = run.run_dir / "last.ckpt"
    ckpt.write_bytes(b"epoch 1")
    job = RunJob(max_stalled=3, stalled=2)
    job._progress0 = launch.job.progress_signature(runs)
    os.utime(ckpt, ns=(time.time_ns(), time.time_ns() + 10**9))  # an epoch was saved
    delayed = job.checkpoint(runs)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function.stalled == 0 and delayed.function.max_stalled == 3
    # pickled with the job (requeued submission): the counters survive
    import pickle

    again = pickle.loads(pickle.dumps(RunJob(max_stalled=3, stalled=2)))
    assert (again.stalled, again.max_stalled) == (2, 3)
    again._progress0 = launch.job.progress_signature(runs)  # nothing saved since the start
    with pytest.raises(RunsStalled, match="3 allocations in a row"):
        again.checkpoint(runs)
    fresh = RunJob(max_stalled=3)  # USR2 before anything started: requeued, counted
    assert fresh.checkpoint(runs).function.stalled == 1


class _Env:
    cluster = "slurm"
    job_id = "42_1"

    def _requeue(self, countdown):
        raise AssertionError("replaced")


def _fake_scontrol(tmp_path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_requeued_is_said_only_when_slurm_accepts(tmp_path, monkeypatch, capfd):
    _fake_scontrol(tmp_path, monkeypatch, "echo \"$@\" > " + str(tmp_path / "args"))
    _checked_requeue(_Env())(10)
    assert (tmp_path / "args").read_text().split() == ["requeue", "42_1"]
    assert "requeued job 42_1 (SLURM accepted it)" in capfd.readouterr().out
    _fake_scontrol(tmp_path, monkeypatch, "echo 'scontrol: error: Requested operation is "
                                          "presently disabled for job 42_1' >&2; exit 1")
    with pytest.raises(RequeueRefused, match="Requested operation is presently disabled"):
        _checked_requeue(_Env())(10)
    out = capfd.readouterr().out
    assert "SLURM refused to requeue job 42_1" in out and "requeued job" not in out


def test_sbatch_requeue_by_default_and_profile_time_budget(tmp_path):
    prof = launch.load_profile("default")
    assert prof["requeue"] is True and prof["max_requeues_without_progress"] == 3
    params = launch.slurm_parameters(prof, "x")
    assert params["additional_parameters"]["requeue"] is True
    off = launch.slurm_parameters(dict(prof, requeue=False), "x")
    assert off["additional_parameters"] == {"no-requeue": True}
    site = tmp_path / "site.yaml"
    site.write_text("timeout_min: 2\nsignal_delay_s: 60\n")  # 60 s to work: refused
    with pytest.raises(ProfileError, match=r"site.yaml: timeout_min 2 and signal_delay_s 60 "
                                           r"leave 60 s"):
        launch.load_profile(site)
    site.write_text("timeout_min: 2\nsignal_delay_s: 30\nrequeue: false\n")
    assert launch.load_profile(site)["requeue"] is False
    site.write_text("requeue: 1\n")
    with pytest.raises(ProfileError, match="'requeue' must be bool"):
        launch.load_profile(site)
    ex = launch.make_executor("slurm", tmp_path / "jobs", prof, "x") \
        if __import__("shutil").which("sbatch") else None
    if ex is not None:  # the submission script itself (only where sbatch exists)
        assert ex.python == blocked_python() and ex.max_num_timeout > 100
    local = launch.make_executor("local", tmp_path / "jobs", None, "x")
    assert local.python == blocked_python()
    assert Path(sys.executable).name in local.python


def _usr2_state() -> tuple:
    """(blocked?, handler name) of USR2 inside a job."""
    blocked = signal.SIGUSR2 in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return blocked, getattr(signal.getsignal(signal.SIGUSR2), "__name__", "")


def test_a_job_other_than_runjob_gets_usr2_unblocked_with_submitits_handler(tmp_path,
                                                                           monkeypatch):
    """Jobs of other callables (the ADE20K SegJob ...) must not keep USR2 blocked: the job
    entry unblocks it as soon as submitit's handler is installed."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    ex = launch.make_executor("local", tmp_path / "jobs" / "%j", None, "x")
    assert ex.submit(_usr2_state).result() == (False, "checkpoint_and_try_requeue")
