"""Exit codes and states after a failed run: ``submit --wait`` and in-process runs exit
non-zero, a failed local job shows FAILED with the run's own error, ``reproduce`` says how many
runs failed and why."""
from __future__ import annotations

import pytest

from replicate import launch
from replicate.cli import main
from tests.helpers import demo_paper
from tests.test_launch_lock import config_text


@pytest.fixture
def paper(tmp_path, monkeypatch):
    """Paper 'demo' with two smoke configs, one of which cannot load its backbone."""
    demo_paper(tmp_path, monkeypatch, {
        "good": config_text(task="shapes", epochs=2),
        "bad": config_text(task="stripes", epochs=2, name="bad-probe",
                           checkpoint="/nonexistent/backbone.pth")})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return ["--paper", "demo", "--mode", "smoke", "--runs-root", str(tmp_path / "runs")]


def test_submit_wait_on_local_jobs_exits_nonzero_with_the_runs_own_error(paper, tmp_path,
                                                                         capsys):
    rc = main(["submit", "--stage", "smoke", "--executor", "local", "--wait", *paper])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "stage smoke: 2 of 4 runs failed:" in out  # two seeds per config
    lines = [ln for ln in out.splitlines() if ln.startswith("  bad-probe-")]
    assert len(lines) == 2
    assert all("/nonexistent/backbone.pth" in ln and "Traceback" not in ln for ln in lines)
    (wait_line,) = [ln for ln in out.splitlines() if ln.startswith("[wait] job ")
                    and "FAILED" in ln]
    assert "/nonexistent/backbone.pth" in wait_line and "_log.out" not in wait_line
    rows = launch.job_states(tmp_path / "runs" / "demo" / "_submitit" / "smoke")
    states = sorted((r["run_id"].split("-")[0], r["state"], r["scheduler_state"]) for r in rows)
    # the local job is FAILED (not "FINISHED"); each run keeps its own state
    assert states == [("bad", "FAILED", "FAILED")] * 2 + [("lock", "DONE", "FAILED")] * 2
    assert all("/nonexistent/backbone.pth" in r["error"] for r in rows if r["state"] == "FAILED")


def test_inproc_submit_and_reproduce_exit_nonzero_and_say_why(paper, capsys):
    assert main(["submit", "--stage", "smoke", "--executor", "inproc", *paper]) == 1
    out = capsys.readouterr().out
    assert "stage smoke: 2 of 4 runs failed:" in out and "/nonexistent/backbone.pth" in out
    assert main(["reproduce", "--executor", "inproc", *paper]) == 1
    out = capsys.readouterr().out
    assert "stage smoke: 2 of 4 runs failed (see above)" in out
    assert "/nonexistent/backbone.pth" in out and "not finished yet" not in out
    assert main(["status", *paper]) == 0
    out = capsys.readouterr().out
    assert "smoke  : 2/4 done, 2 failed" in out and out.count("  FAILED bad-probe-") == 2
