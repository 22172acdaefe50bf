"""The launcher without SLURM: local/debug executors, preemption of RunJob, code snapshots."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit

from replicate import launch
from replicate.launch import RunFailures, RunJob
from tests.slurm_fixtures import tiny_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Tiny models on a shared 2-core machine: 2 threads per process are ~10x slower than 1."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # jobs started as subprocesses
    yield
    torch.set_num_threads(n)


def _wait_for_text(path: Path, text: str, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not (path.is_file() and text in path.read_text()):
        if time.time() - t0 > timeout:
            raise TimeoutError(f"'{text}' not in {path} after {timeout:.0f} s")
        time.sleep(0.05)


def test_local_executor_trains_runs_without_slurm(tmp_path):
    runs = [tiny_run(tmp_path / "runs", seed=s, epochs=3) for s in (0, 1)]
    logs = tmp_path / "logs"
    jobs = launch.submit_runs(runs, "local", None, logs)
    assert len(jobs) == 1  # no profile: one local process trains the runs in order
    assert isinstance(jobs[0], submitit.local.local.LocalJob)
    out = launch.wait(jobs, poll_s=0.5, timeout_s=300)
    assert out == [{"job_id": jobs[0].job_id, "state": "DONE", "error": None,
                    "traceback": None}], out
    records = jobs[0].result()
    assert [r["seed"] for r in records] == [0, 1]
    for r in runs:
        rec = json.loads((r.run_dir / "record.json").read_text())
        assert rec["run_id"] == r.run_id and rec["smoke"] is True
    rows = launch.job_states(logs)
    assert [(row["run_id"], row["state"], row["job_id"]) for row in rows] == \
        [(r.run_id, "DONE", jobs[0].job_id) for r in runs]
    # the job imported the code snapshot, not the working copy
    (entry,) = launch.read_manifest(logs)
    stdout = Path(rows[0]["log"]).read_text()
    assert f"replicate from {entry['code_dir']}/replicate " in stdout
    # re-submitting finished runs submits nothing
    assert launch.submit_runs(runs, "local", None, logs) == []


def test_failing_run_leaves_failed_json_and_status_reports_it(tmp_path):
    bad = tiny_run(tmp_path / "runs", checkpoint=str(tmp_path / "missing.pth"), name="bad")
    logs = tmp_path / "logs"
    jobs = launch.submit_runs([bad], "debug", None, logs)  # in-process, no pdb
    (out,) = launch.wait(jobs, poll_s=0.1)
    assert out["state"] == "FAILED" and "missing.pth" in out["error"]
    failed = json.loads((bad.run_dir / "failed.json").read_text())
    assert "missing.pth" in failed["error"] and "Traceback" in failed["traceback"]
    (row,) = launch.job_states(logs)
    assert row["state"] == "FAILED" and row["run_id"] == bad.run_id
    assert "missing.pth" in row["error"] and row["traceback"] == failed["traceback"]
    assert "FAILED" in launch.format_job_states([row])


def test_pack_continues_after_a_failing_run(tmp_path, monkeypatch):
    import replicate.engine as engine

    calls = []

    def fake_execute(run, echo, should_stop):
        calls.append(run.seed)
        if run.seed == 1:
            raise ValueError("boom")
        return {"run_id": run.run_id}

    import replicate.engine.packed as packed

    def not_packable(runs):
        raise packed.PackError("forced: one by one")

    monkeypatch.setattr(engine, "execute", fake_execute)
    monkeypatch.setattr(packed, "check_packable", not_packable)
    runs = [tiny_run(tmp_path, seed=s) for s in range(3)]
    with pytest.raises(RunFailures, match="1 of 3 runs failed") as e:
        RunJob()([r.to_dict() for r in runs])
    assert calls == [0, 1, 2] and isinstance(e.value.__cause__, ValueError)
    with pytest.raises(ValueError, match="boom"):  # a single run re-raises its own error
        RunJob()([runs[1].to_dict()])


def test_packable_runs_train_together(tmp_path, monkeypatch):
    """A pack whose runs can share one frozen backbone goes to engine.packed.execute_packed."""
    import replicate.engine.packed as packed

    seen = []

    def fake_packed(runs, echo, should_stop):
        seen.append([r.seed for r in runs])
        return [{"run_id": r.run_id} for r in runs]

    monkeypatch.setattr(packed, "execute_packed", fake_packed)
    runs = [tiny_run(tmp_path, seed=s) for s in range(2)]
    out = RunJob()([r.to_dict() for r in runs])
    assert seen == [[0, 1]] and [o["run_id"] for o in out] == [r.run_id for r in runs]


def test_checkpoint_stops_at_epoch_boundary_and_resumes_to_equal_metrics(tmp_path):
    ref = tiny_run(tmp_path / "ref", epochs=10)
    intr = tiny_run(tmp_path / "intr", epochs=10)
    assert ref.run_id == intr.run_id  # same run, different run directories
    (ref_rec,) = RunJob()([ref.to_dict()])

    job, box = RunJob(grace_s=60), {}
    t = threading.Thread(target=lambda: box.setdefault("out", job([intr.to_dict()])))
    t.start()
    log = intr.run_dir / "log.txt"
    _wait_for_text(log, "epoch 2/10")
    delayed = job.checkpoint([intr.to_dict()])  # what submitit's USR2 handler calls
    t.join(60)
    assert not t.is_alive() and box["out"] == [None]  # stopped, no record
    text = log.read_text()
    assert "stopping after epoch" in text and not (intr.run_dir / "record.json").exists()
    assert (intr.run_dir / "last.ckpt").is_file()
    # the requeued submission: a fresh RunJob with the same runs
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, RunJob) and delayed.function is not job
    assert delayed.args == ([intr.to_dict()],)
    (rec,) = delayed.result()
    assert "resumed from" in log.read_text()
    assert rec["metrics"] == ref_rec["metrics"]
    losses = [h["train_loss"] for h in rec["history"]]
    assert losses == [h["train_loss"] for h in ref_rec["history"]]


def test_snapshot_isolates_jobs_from_later_edits(tmp_path, monkeypatch):
    src = tmp_path / "work"
    (src / "probe_pkg").mkdir(parents=True)
    (src / "probe_pkg" / "__init__.py").write_text("VALUE = 'v1'\n")
    (src / "probe_pkg" / "__pycache__").mkdir()
    (src / "probe_pkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    snap = launch.snapshot_code(tmp_path / "logs" / "code", source_root=src, include=["probe_pkg"])
    assert (snap / "probe_pkg" / "__init__.py").is_file() and (snap / "SNAPSHOT.json").is_file()
    assert not (snap / "probe_pkg" / "__pycache__").exists()
    (src / "probe_pkg" / "__init__.py").write_text("VALUE = 'v2'\n")  # edit after submitting
    # the submitting shell sits in the working copy, which is also on PYTHONPATH
    monkeypatch.chdir(src)
    monkeypatch.setenv("PYTHONPATH", str(src))
    ex = launch.make_executor("local", tmp_path / "logs" / "jobs" / "%j", None, code_dir=snap)
    probe = submitit.helpers.CommandFunction(
        [sys.executable, "-c", "import probe_pkg as p; print(p.VALUE, p.__file__)"])
    out = ex.submit(probe).result()
    assert out.split()[0] == "v1" and out.split()[1].startswith(str(snap)), out
    with pytest.raises(FileNotFoundError, match="nothing"):
        launch.snapshot_code(tmp_path / "x", source_root=src, include=["nothing"])


def test_snapshot_of_this_checkout_has_the_package(tmp_path):
    snap = launch.snapshot_code(tmp_path)
    assert (snap / "replicate" / "__init__.py").is_file()
    assert (snap / "replicate" / "launch" / "job.py").is_file()
    assert not list(snap.rglob("__pycache__")) and not list(snap.rglob("*.pyc"))
    assert json.loads((snap / "SNAPSHOT.json").read_text())["source"] == str(REPO)
