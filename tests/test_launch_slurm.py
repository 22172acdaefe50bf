"""The launcher on a real one-node SLURM cluster (slurm/local/start.sh): arrays, preemption with
requeue and resume (on a cluster where jobs are not requeueable by default), a USR2 at the
first instant of an allocation, failures, code snapshots.  Needs root and REPLICATE_SLURM_UP=1;
see tests/slurm_fixtures.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from replicate import launch
from tests.slurm_fixtures import slurm_log_tails, tiny_run

pytestmark = pytest.mark.slurm
DEADLINE_S = 150  # per wait: a hung job fails the test instead of the whole session


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    # jobs inherit the environment (sbatch --export=ALL); 1 thread each on the 2-CPU node
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _wait(jobs):
    try:
        return launch.wait(jobs, poll_s=1, timeout_s=DEADLINE_S)
    except TimeoutError:
        pytest.fail("SLURM jobs did not finish in time\n" + slurm_log_tails())


def _wait_for_text(path: Path, text: str, timeout: float = DEADLINE_S) -> None:
    t0 = time.time()
    while not (path.is_file() and text in path.read_text()):
        if time.time() - t0 > timeout:
            pytest.fail(f"'{text}' not in {path} after {timeout:.0f} s\n" + slurm_log_tails())
        time.sleep(0.1)


def test_array_of_runs_completes_and_writes_records(slurm_cluster, tmp_path):
    runs = [tiny_run(tmp_path / "runs", seed=s, epochs=3) for s in (0, 1, 2)]
    logs = tmp_path / "logs"
    jobs = launch.submit_runs(runs, "slurm", slurm_cluster, logs, pack_size=2, job_name="t-array")
    assert len(jobs) == 2 and all(isinstance(j, submitit.SlurmJob) for j in jobs)
    array_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(array_ids) == 1, "one job array per submission"
    assert sorted(j.job_id.split("_")[1] for j in jobs) == ["0", "1"]
    script = next((logs / "jobs").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --partition=debug" in script
    out = _wait(jobs)
    assert [o["state"] for o in out] == ["DONE", "DONE"], out
    assert [len(j.result()) for j in jobs] == [2, 1]  # a pack of two runs, then one
    (entry,) = launch.read_manifest(logs)
    commit = json.loads((Path(entry["code_dir"]) / "SNAPSHOT.json").read_text())["commit"]
    for r in runs:
        rec = json.loads((r.run_dir / "record.json").read_text())
        assert rec["seed"] == r.seed and rec["metrics"]["test_n"] > 0
        assert rec["commit"] == commit  # provenance of the snapshot the job ran
    rows = launch.job_states(logs)
    assert [row["state"] for row in rows] == ["DONE"] * 3
    assert [row["job_id"] for row in rows] == [jobs[0].job_id] * 2 + [jobs[1].job_id]
    assert f"replicate from {entry['code_dir']}/replicate " in Path(rows[0]["log"]).read_text()
    assert launch.submit_runs(runs, "slurm", slurm_cluster, logs) == []  # all finished


def test_interrupted_job_requeues_and_resumes_to_equal_metrics(slurm_cluster, tmp_path):
    """On a cluster with JobRequeue=0 (slurm/local/start.sh, like many sites) the requeue works
    because the launcher submits with --requeue."""
    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    assert any(ln.split() == ["JobRequeue", "=", "0"] for ln in conf.splitlines()), \
        "the test cluster should not requeue jobs by default"
    ref = tiny_run(tmp_path / "ref", epochs=12)
    intr = tiny_run(tmp_path / "intr", epochs=12)  # same run (seed, config), other directory
    jobs = launch.submit_runs([ref, intr], "slurm", slurm_cluster, tmp_path / "logs")
    script = next((tmp_path / "logs" / "jobs").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --requeue" in script.splitlines()
    log = intr.run_dir / "log.txt"
    _wait_for_text(log, "epoch 3/12")
    jobs[1]._interrupt()  # preemption: SIGTERM, then USR2 -> checkpoint() -> requeue
    out = _wait(jobs)
    assert [o["state"] for o in out] == ["DONE", "DONE"], out
    text = log.read_text()
    assert "stopping after epoch" in text and "resumed from" in text, text
    resumed_at = int(text.split("resumed from")[1].split(" at epoch ")[1].split("/")[0])
    assert 3 <= resumed_at < 12  # it really stopped mid-training
    stdout = Path(launch.job_states(tmp_path / "logs")[1]["log"]).read_text()
    assert "stopped cleanly at an epoch boundary" in stdout and stdout.count("run(s) on") == 2
    assert f"requeued job {jobs[1].job_id} (SLURM accepted it)" in stdout
    a = json.loads((ref.run_dir / "record.json").read_text())
    b = json.loads((intr.run_dir / "record.json").read_text())
    assert b["metrics"] == a["metrics"]
    assert [h["train_loss"] for h in b["history"]] == [h["train_loss"] for h in a["history"]]


def test_failing_job_leaves_failed_json_and_status_reports_it(slurm_cluster, tmp_path):
    bad = tiny_run(tmp_path / "runs", checkpoint="/nonexistent/backbone.pth", name="bad")
    logs = tmp_path / "logs"
    jobs = launch.submit_runs([bad], "slurm", slurm_cluster, logs)
    (out,) = _wait(jobs)
    assert out["state"] == "FAILED" and "/nonexistent/backbone.pth" in out["error"]
    assert "\n" not in out["error"]  # the run's own error, one line
    assert "Traceback" in out["traceback"]  # FailedJobError carries the remote traceback
    failed = json.loads((bad.run_dir / "failed.json").read_text())
    assert "/nonexistent/backbone.pth" in failed["traceback"]
    t0 = time.time()
    while True:  # sacct lags a few seconds behind the job
        (row,) = launch.job_states(logs)
        if row["scheduler_state"] == "FAILED" or time.time() - t0 > 30:
            break
        time.sleep(1)
    assert row["state"] == "FAILED" and row["scheduler_state"] == "FAILED"
    assert "/nonexistent/backbone.pth" in row["error"] and row["job_id"] == jobs[0].job_id


def test_slurm_job_imports_the_snapshot_not_the_edited_working_copy(slurm_cluster, tmp_path,
                                                                      monkeypatch):
    src = tmp_path / "work"
    (src / "probe_pkg").mkdir(parents=True)
    (src / "probe_pkg" / "__init__.py").write_text("VALUE = 'v1'\n")
    snap = launch.snapshot_code(tmp_path / "logs" / "code", source_root=src, include=["probe_pkg"])
    (src / "probe_pkg" / "__init__.py").write_text("VALUE = 'v2'\n")
    monkeypatch.chdir(src)  # sbatch's working directory, and on PYTHONPATH: the working copy
    monkeypatch.setenv("PYTHONPATH", str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ex = launch.make_executor("slurm", tmp_path / "logs" / "jobs" / "%j", slurm_cluster,
                              "t-snap", code_dir=snap)
    job = ex.submit(submitit.helpers.CommandFunction(
        [sys.executable, "-c", "import probe_pkg as p; print(p.VALUE, p.__file__)"]))
    value, where = job.result().split()
    assert value == "v1" and where.startswith(str(snap))


def _job_python(folder: Path, timeout: float = 60) -> int:
    """The pid of a job's python as soon as it exists: ``python -u -c <submitit's entry>
    <folder>`` (executors.blocked_python; the stages ``sh -c`` and ``python -S -c`` come first
    under the same pid)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if str(folder).encode() in b" ".join(argv) and argv[1:3] == [b"-u", b"-c"]:
                return int(pid)
        time.sleep(0.002)
    pytest.fail(f"no job python for {folder} after {timeout:.0f} s\n" + slurm_log_tails())


def test_usr2_at_the_first_instant_of_an_allocation_requeues(slurm_cluster, tmp_path):
    """A time-limit/preemption USR2 sent before submitit installed its handler (~0.3 s into
    the job's python) used to kill the job ("task 0 died by signal: 12"); now it waits blocked
    until the handler is in place, then checkpoints and requeues."""
    run = tiny_run(tmp_path / "runs", epochs=3)
    logs = tmp_path / "logs"
    (job,) = launch.submit_runs([run], "slurm", slurm_cluster, logs)
    _job_python(logs / "jobs")
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True, timeout=30)
    (out,) = _wait([job])
    assert out["state"] == "DONE", out
    stdout = Path(launch.job_states(logs)[0]["log"]).read_text()
    assert f"requeued job {job.job_id} (SLURM accepted it)" in stdout, stdout
    # it came before any training: pending while python started, handled at the unblock
    assert stdout.index("requeued job") < stdout.index("run(s) on"), stdout
    assert json.loads((run.run_dir / "record.json").read_text())["metrics"]["test_n"] > 0
