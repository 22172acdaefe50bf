"""Submit runs as job arrays, wait for them, and report what each job/run is doing.

``<log_folder>/`` layout::

    manifest.jsonl      one line per submission: kind, code snapshot, jobs -> runs
    code/<timestamp>/   code snapshot the jobs of that submission import
    jobs/<job id>/      submitit's pickles and stdout/stderr per job (``%j`` folders)
"""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import submitit

from ..engine.packing import pack_key
from .executors import KINDS, LaunchError, make_executor
from .job import RunJob
from .snapshot import snapshot_code

MANIFEST = "manifest.jsonl"
#: SLURM's default MaxArraySize is 1001: larger submissions are split into several arrays
MAX_ARRAY = 1000
#: scheduler states of a job that may still write its run directory
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
                 "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "QUEUED"}


def make_packs(runs: Sequence, pack_size: int = 1) -> List[list]:
    """Group runs that may train as one pack (``engine.packing.pack_key``: same config but for
    lr, weight decay, momentum, naming and seed; same stage splits), in order of first
    appearance, in packs of at most ``pack_size``."""
    if pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    groups: "OrderedDict[Tuple, list]" = OrderedDict()
    for r in runs:
        groups.setdefault(pack_key(r), []).append(r)
    packs = []
    for members in groups.values():
        packs += [members[i:i + pack_size] for i in range(0, len(members), pack_size)]
    return packs


def grace_seconds(signal_delay_s: int) -> float:
    """How long a job waits, after the time-limit USR2, for the current epoch to end.

    The signal comes between ``signal_delay_s`` and ``signal_delay_s + 30`` s before the limit
    (SLURM checks limits on a ~30 s tick), so ``signal_delay_s`` is the least time left; 30 s
    of it are kept for saving, ``scontrol requeue`` and exiting before SLURM's SIGTERM."""
    return float(max(signal_delay_s - 30, signal_delay_s / 2))


def _absolute(run):
    """Jobs run from the code snapshot directory: runs_root must not be relative."""
    root = os.path.abspath(os.path.expanduser(str(run.runs_root)))
    return run if root == run.runs_root else replace(run, runs_root=root)


def submit_runs(runs: Sequence, kind: str, profile: Optional[Dict[str, Any]], log_folder: Path,
                pack_size: int = 1, job_name: str = "replicate", *, snapshot: bool = True,
                echo: Callable[[str], None] = print) -> List[submitit.Job]:
    """Submit ``runs`` (``engine.Run``) as one job array per call; each array task trains one
    run or a pack of up to ``pack_size`` runs sharing backbone and task (:func:`make_packs`).

    Runs that are finished (``record.json``) or still queued/running from an earlier
    submission in the same ``log_folder`` are skipped.  ``slurm``: one array (split at
    ``MAX_ARRAY`` tasks), at most ``profile['array_parallelism']`` tasks at once.  ``local``:
    the packs are spread over ``array_parallelism`` processes (1 without a profile), each
    training its share in order.  ``debug``: one in-process job per pack, run when waited on.
    ``snapshot`` (slurm/local): jobs import a copy of the code taken now.  Returns the jobs
    (``[]`` if nothing is left to do); the manifest maps them to run ids.
    """
    if kind not in KINDS:
        raise LaunchError(f"unknown executor kind {kind!r}; choose one of {', '.join(KINDS)}")
    log_folder = Path(log_folder).absolute()
    runs = [_absolute(r) for r in runs]
    active = {row["run_dir"] for row in job_states(log_folder)
              if row["scheduler_state"] in ACTIVE_STATES and row["state"] != "DONE"}
    todo, seen = [], set()
    n_done = n_active = 0
    for r in runs:
        d = str(r.run_dir)
        if d in seen:
            continue
        seen.add(d)
        if (r.run_dir / "record.json").is_file():
            n_done += 1
        elif d in active:
            n_active += 1
        else:
            todo.append(r)
    echo(f"[submit] {len(seen)} runs: {n_done} finished, {n_active} queued/running elsewhere, "
         f"{len(todo)} to submit ({kind})")
    if not todo:
        return []
    packs = make_packs(todo, pack_size)
    if kind == "local":
        width = int(profile["array_parallelism"]) if profile else 1
        width = max(1, min(width, len(packs)))
        slots: List[list] = [[] for _ in range(width)]
        for i, p in enumerate(packs):
            slots[i % width].extend(p)
        packs = slots
    code_dir = None
    if snapshot and kind != "debug":
        code_dir = snapshot_code(log_folder / "code")
    ex = make_executor(kind, log_folder / "jobs" / "%j", profile, job_name, code_dir=code_dir)
    grace = grace_seconds(int(profile["signal_delay_s"]) if profile else 30)
    max_stalled = int(profile.get("max_requeues_without_progress", 3)) if profile else 3
    jobs: List[submitit.Job] = []
    for start in range(0, len(packs), MAX_ARRAY):
        chunk = packs[start:start + MAX_ARRAY]
        with ex.batch():
            for pack in chunk:
                jobs.append(ex.submit(RunJob(grace_s=grace, max_stalled=max_stalled),
                                      [r.to_dict() for r in pack]))
    for job, pack in zip(jobs, packs):  # wait() names the runs' own errors
        job._replicate_run_dirs = [str(r.run_dir) for r in pack]  # type: ignore[attr-defined]
    entry = {
        "time": time.strftime("%Y-%m-%d %H:%M:%S"), "kind": kind, "job_name": job_name,
        "profile": (profile or {}).get("name"), "code_dir": str(code_dir) if code_dir else None,
        "folder": str(log_folder / "jobs"),
        "jobs": [{"job_id": str(j.job_id),
                  "runs": [{"run_id": r.run_id, "run_dir": str(r.run_dir)} for r in pack]}
                 for j, pack in zip(jobs, packs)],
    }
    log_folder.mkdir(parents=True, exist_ok=True)
    with open(log_folder / MANIFEST, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
    ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
    echo(f"[submit] {len(jobs)} job(s) ({', '.join(ids)}) for {len(todo)} runs; logs in "
         f"{log_folder / 'jobs'}" + (f"; code snapshot {code_dir}" if code_dir else ""))
    return jobs


# ------------------------------------------------------------------ waiting
#: the job stopped its runs at a checkpoint (SIGTERM, no progress, requeue refused): resumable
STOP_ERRORS = ("JobStopped", "RunsStalled", "RequeueRefused")
#: scheduler states of a job that ended without finishing its runs
KILLED_STATES = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                 "DEADLINE", "PREEMPTED")
_DASHES = re.compile(r"^-{10,}$", re.M)  # submitit's rule around a job's traceback


def error_summary(text: str) -> str:
    """The final exception of a traceback (or of submitit's ``FailedJobError`` text, which
    wraps the job's traceback in dashed lines) as one line: ``Type: message``."""
    t = str(text)
    parts = _DASHES.split(t)
    if len(parts) >= 3:
        t = parts[1]
    lines = [ln.rstrip() for ln in t.strip().splitlines()]
    start = 0
    for i in range(len(lines) - 1, -1, -1):  # the last unindented line starts the exception
        ln = lines[i]
        if ln and not ln[0].isspace() and not ln.startswith(
                ("Traceback", "During handling", "The above exception")):
            start = i
            break
    return " ".join(" ".join(lines[start:]).split())


def _outcome(job: submitit.Job) -> Tuple[str, Optional[str], Optional[str]]:
    """(state, the runs' own error as one line, submitit's full text) of a finished job."""
    from ..runs import failure_reason, run_state

    err = job.exception()
    if err is None:
        return "DONE", None, None
    full = str(err).strip()
    state = "FAILED"
    if isinstance(err, submitit.core.utils.UncompletedJobError) \
            and not isinstance(err, submitit.core.utils.FailedJobError):  # (its subclass)
        try:
            state = job.state.split()[0] or "FAILED"  # CANCELLED, TIMEOUT, OUT_OF_MEMORY ...
        except Exception:
            pass
        if state in ("COMPLETED", "UNKNOWN", "FINISHED") or state in ACTIVE_STATES:
            state = "FAILED"  # a local job is FINISHED whether it succeeded or died
        msg = " ".join(" ".join(full.splitlines()[:2]).split())
    else:
        msg = error_summary(full)
    if any(name in msg for name in STOP_ERRORS):
        state = "INTERRUPTED"
    own = [f"{Path(d).name}: {' '.join(str(failure_reason(d)).split())}"
           for d in getattr(job, "_replicate_run_dirs", []) if run_state(Path(d)) == "failed"]
    return state, ("; ".join(own) if own else msg), full


def wait(jobs: Sequence[submitit.Job], poll_s: float = 10.0,
         echo: Callable[[str], None] = print, timeout_s: Optional[float] = None) -> List[dict]:
    """Block until every job has finished; print a progress line whenever the counts change
    (and at least every 5 minutes).  Returns ``[{job_id, state, error, traceback}]`` in job
    order: state ``DONE``, ``FAILED`` (error: the failed runs' own errors, one line),
    ``INTERRUPTED`` (runs stopped at a checkpoint: re-submit to resume) or SLURM's
    ``CANCELLED``/``TIMEOUT``/... for killed jobs; ``traceback``: submitit's full text.
    Failures do not raise: the caller decides (``job_states`` has per-run details)."""
    t0 = time.time()
    out: Dict[int, dict] = {}
    last_line, last_t = "", 0.0
    while True:
        for i, job in enumerate(jobs):
            if i not in out and job.done():
                state, err, full = _outcome(job)
                out[i] = {"job_id": str(job.job_id), "state": state, "error": err,
                          "traceback": full}
                if err:
                    echo(f"[wait] job {job.job_id} {state}: {err[:300]}")
        n_failed = sum(o["state"] != "DONE" for o in out.values())
        if len(out) == len(jobs):
            echo(f"[wait] all {len(jobs)} job(s) finished: {len(jobs) - n_failed} done, "
                 f"{n_failed} failed ({_fmt_dt(time.time() - t0)})")
            return [out[i] for i in range(len(jobs))]
        states: Dict[str, int] = {}
        for i, job in enumerate(jobs):
            if i not in out:
                try:
                    s = str(job.state).split()[0]
                except Exception:
                    s = "UNKNOWN"
                states[s] = states.get(s, 0) + 1
        line = (f"[wait] {len(out)}/{len(jobs)} finished ({n_failed} failed); "
                + ", ".join(f"{v} {k.lower()}" for k, v in sorted(states.items())))
        if line != last_line or time.time() - last_t > 300:
            echo(f"{line} ({_fmt_dt(time.time() - t0)})")
            last_line, last_t = line, time.time()
        if timeout_s is not None and time.time() - t0 > timeout_s:
            raise TimeoutError(f"{len(jobs) - len(out)} of {len(jobs)} job(s) still not finished "
                               f"after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _fmt_dt(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ------------------------------------------------------------------ status
def read_manifest(log_folder: Path) -> List[dict]:
    p = Path(log_folder) / MANIFEST
    if not p.is_file():
        return []
    entries = []
    with open(p) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                raise LaunchError(f"{p}:{n}: not a JSON line (truncated write?); delete that "
                                  f"line to continue") from None
    return entries


def slurm_states(job_ids: Sequence[str]) -> Dict[str, str]:
    """``{job id: SLURM state}`` from one ``sacct`` call; ``{}`` without SLURM/accounting."""
    mains = sorted({str(j).split("_")[0] for j in job_ids})
    if not mains:
        return {}
    try:
        out = subprocess.run(["sacct", "-o", "JobID,State", "--parsable2", "-j", ",".join(mains)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    info = SlurmInfoWatcher().read_info(out.stdout)
    return {j: (v.get("State") or "UNKNOWN").split()[0] for j, v in info.items()}


def _result(folder: str, job_id: str) -> Tuple[Optional[str], object]:
    """(``success``/``error``/None, payload) of the result submitit pickled for a job."""
    paths = submitit.core.utils.JobPaths(Path(folder) / "%j", job_id=job_id)
    try:
        with open(paths.result_pickle, "rb") as f:
            kind, payload = pickle.load(f)
    except Exception:
        return None, None
    return kind, payload


def _local_state(folder: str, job_id: str) -> str:
    """RUNNING while the local job's process lives; then COMPLETED or FAILED from its result
    (no result at all: it was killed, also FAILED)."""
    try:
        pid = int(job_id)
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            alive = b"submitit" in f.read()
    except (ValueError, OSError):
        alive = False
    if alive:
        return "RUNNING"
    return "COMPLETED" if _result(folder, job_id)[0] == "success" else "FAILED"


def _job_error(folder: str, job_id: str) -> Optional[str]:
    """The exception a job raised, as one line (from submitit's result pickle), if any."""
    kind, payload = _result(folder, job_id)
    return error_summary(str(payload)) or None if kind == "error" else None


def saved_epochs(run_dir: Path) -> Optional[int]:
    """Epochs saved in ``run_dir/last.ckpt`` (None: no readable checkpoint)."""
    ck = Path(run_dir) / "last.ckpt"
    if not ck.is_file():
        return None
    try:
        import torch

        try:  # mmap: reads the small header fields without loading the weights
            state = torch.load(str(ck), map_location="cpu", mmap=True)
        except TypeError:  # torch < 2.1
            state = torch.load(ck, map_location="cpu")
        return int(state["epoch"]) + 1
    except Exception:
        return None


def resume_hint(run_dir: Path) -> str:
    """What re-submitting an unfinished run's stage does."""
    k = saved_epochs(run_dir)
    if k is None:
        return "no epoch saved yet: re-submit the stage to start it again"
    return f"resumable from epoch {k}: re-submit the stage"


def job_states(log_folder: Path) -> List[dict]:
    """One row per run submitted from ``log_folder`` (its latest submission wins):
    ``{job_id, run_id, run_dir, state, scheduler_state, error, traceback, log}``.

    ``state``: DONE (record.json), RUNNING/PENDING/REQUEUED... (the scheduler's), FAILED
    (the run's failed.json: ``error`` is its own error), INTERRUPTED (stopped at a checkpoint:
    SIGTERM, no progress, requeue refused, or the job ended without finishing it),
    FAILED/CANCELLED/TIMEOUT/OUT_OF_MEMORY/NODE_FAIL (the job died first), or UNKNOWN.  For a
    run that did not finish, ``error`` ends with what re-submitting does ("resumable from
    epoch k: re-submit the stage").
    """
    from ..runs import failure_reason, run_state

    latest: "OrderedDict[str, Tuple[dict, dict, dict]]" = OrderedDict()
    for entry in read_manifest(log_folder):
        for job in entry["jobs"]:
            for run in job["runs"]:
                latest.pop(run["run_dir"], None)
                latest[run["run_dir"]] = (entry, job, run)
    slurm_ids = [job["job_id"] for entry, job, _ in latest.values() if entry["kind"] == "slurm"]
    sched = slurm_states(slurm_ids)
    rows = []
    for run_dir, (entry, job, run) in latest.items():
        jid = job["job_id"]
        if entry["kind"] == "slurm":
            s_state = sched.get(jid, "UNKNOWN")
        elif entry["kind"] == "local":
            s_state = _local_state(entry["folder"], jid)
        else:
            s_state = "IN_PROCESS"
        files = run_state(Path(run_dir))
        failed: dict = {}
        if files == "failed":
            try:
                failed = json.loads((Path(run_dir) / "failed.json").read_text())
            except (OSError, ValueError):
                failed = {}
        job_err = None
        if files in ("started", "new") and s_state not in ACTIVE_STATES:
            job_err = _job_error(entry["folder"], jid)
        error: Optional[str] = None
        if files == "done":
            state = "DONE"
        elif s_state in ACTIVE_STATES or s_state == "RUNNING":
            state = s_state
        elif files == "failed":
            state = "FAILED"  # the run's own error, not the job's
            error = " ".join(str(failure_reason(Path(run_dir)) or "see failed.json").split())
        elif job_err and any(name in job_err for name in STOP_ERRORS):
            state = "INTERRUPTED"
        elif s_state in KILLED_STATES:
            state = s_state
        elif files == "started":
            state = "INTERRUPTED"  # job over, run neither finished nor failed: resubmit resumes
        else:
            state = "UNKNOWN"
        if error is None and state != "DONE" and state not in ACTIVE_STATES:
            why = job_err or f"job {jid} ended {s_state} before the run finished"
            error = f"{why}; {resume_hint(Path(run_dir))}"
        paths = submitit.core.utils.JobPaths(Path(entry["folder"]) / "%j", job_id=jid)
        rows.append({"job_id": jid, "run_id": run["run_id"], "run_dir": run_dir, "state": state,
                     "scheduler_state": s_state, "error": error,
                     "traceback": failed.get("traceback"), "log": str(paths.stdout),
                     "kind": entry["kind"], "submitted": entry["time"]})
    return rows


def format_job_states(rows: Sequence[dict]) -> str:
    """A plain-text table of :func:`job_states` rows, then a count per state."""
    if not rows:
        return "no submissions recorded"
    w = max(len(r["run_id"]) for r in rows)
    lines = [f"{'job':<14} {'run':<{w}} {'state':<13} error"]
    for r in rows:
        err = (r["error"] or "").splitlines()[-1][:120] if r["error"] else ""
        lines.append(f"{r['job_id']:<14} {r['run_id']:<{w}} {r['state']:<13} {err}")
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append(", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
