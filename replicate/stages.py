"""Running a paper's stages: what ``python -m replicate submit | status | reproduce`` do,
without the command line.

``sweep.py`` turns configs into ``Run``s; this module drives those runs through their stages:
it finds a stage's configs (errors name the paper, mode or select glob), submits a stage's
unfinished runs (in this process or through ``launch``), reports failed runs, lists per-stage
status, and walks the stages of a mode in order (the reproduce state machine), returning where
it stopped as a ``StageOutcome``.  The CLI parses arguments, calls these and maps outcomes to
exit statuses.  Progress lines are printed as the stages run (a waited-for stage can take
hours).  Torch is imported only inside the functions that train.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from . import sweep
from .config import Experiment
from .errors import CliError
from .runs import Run, failure_reason, run_state


def check_paper(paper: str) -> None:
    """An unknown paper is an error that lists the known (discovered) ones."""
    from . import papers
    try:
        papers.require(paper)
    except papers.PaperError as e:
        raise CliError(str(e)) from None


def stages_for(mode: str) -> List[str]:
    """The stages ``mode`` runs, in order (``sweep.MODE_STAGES``)."""
    return list(sweep.MODE_STAGES[mode])


def stage_experiments(paper: str, stage: str,
                      select: Optional[Sequence[str]] = None) -> List[Experiment]:
    """The loaded configs of a stage (errors name the paper, mode or --select glob)."""
    mode = {"final": "search"}.get(stage, stage)
    check_paper(paper)
    try:
        files = sweep.config_files(paper, mode, select=select or ())
    except FileNotFoundError as e:
        have = [m for m in ("pinned", "search", "smoke")
                if (sweep.papers_root() / paper / "configs" / m).is_dir()]
        raise CliError(f"{e}: paper '{paper}' has configs for --mode "
                       f"{', '.join(have) or '(none)'}; pick one of those") from None
    if not files:
        raise CliError(f"no configs match --select {' '.join(select or ())} under "
                       f"papers/{paper}/configs/{mode}: check the glob (relative to that "
                       f"folder, e.g. 'digits/*')")
    return sweep.load_experiments(files)


def stage_runs(paper: str, stage: str, runs_root: str,
               select: Optional[Sequence[str]] = None) -> Tuple[List[Run], List[str]]:
    """A stage's runs and, for ``final``, the configs still waiting for their search grid."""
    exps = stage_experiments(paper, stage, select)
    if stage in ("pinned", "smoke"):
        return sweep.plan_pinned(exps, runs_root, stage), []
    if stage == "search":
        return sweep.plan_search(exps, runs_root), []
    return sweep.plan_final(exps, runs_root)


def ensure_runs_root(root: str) -> Path:
    """Create RUNS_ROOT before the first run; an unwritable one is one clear error."""
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-")
        probe.close()
    except OSError as e:
        raise CliError(f"RUNS_ROOT {path} is not writable ({e.strerror or e}): set RUNS_ROOT or "
                       f"--runs-root to a folder you can write to") from None
    return path


def execute_inproc(runs: Sequence[Run]) -> int:
    """Train ``runs`` in this process, one after the other.  Returns the exit status: 0 when
    all finished, 1 when any failed (each has its failed.json; the others still train), 128 +
    the signal's number when SIGTERM/SIGINT stopped them at an epoch boundary (resumable)."""
    from .engine.stop import GracefulStop
    from .engine.train import execute_all
    from .errors import describe

    with GracefulStop() as stop:  # a failed run is recorded in failed.json; the rest go on
        _, failures = execute_all(
            runs, should_stop=stop,
            announce=lambda i, r: print(f"[{i}/{len(runs)}] {r.run_id}", flush=True),
            on_failure=lambda r, e: print(f"  failed: {describe(e)[:300]}", flush=True))
    if stop.signame:
        print(f"stopped by {stop.signame}: unfinished runs keep their last epoch's checkpoint; "
              f"re-run the same command to resume them")
        return stop.exit_code
    return 1 if failures else 0


def report_failures(stage: str, runs: Sequence[Run]) -> int:
    """Print how many runs of ``stage`` failed and why (one line each); returns the count."""
    failed = [r for r in runs if run_state(r.run_dir) == "failed"]
    if failed:
        print(f"stage {stage}: {len(failed)} of {len(runs)} runs failed:")
        for r in failed[:20]:
            why = " ".join(str(failure_reason(r.run_dir) or "see failed.json").split())
            print(f"  {r.run_id}: {why[:300]}")
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (python -m replicate status)")
    return len(failed)


def submit_stage(paper: str, stage: str, runs_root: str, *,
                 select: Optional[Sequence[str]] = None, executor: str = "local",
                 cluster: str = "default", pack: int = 1, wait: bool = False) -> int:
    """Submit a stage's unfinished runs with ``executor`` (``inproc`` trains them here; slurm
    reads ``slurm/clusters/<cluster>.yaml``), ``pack`` runs per array task.  Returns the exit
    status: 0 when nothing was left or the jobs were submitted (and, with ``wait``, finished
    without failure); 1 (or inproc's signal status) otherwise."""
    runs, pending = stage_runs(paper, stage, runs_root, select)
    work = sweep.todo(runs)
    print(f"stage {stage}: {len(runs)} runs, {len(runs) - len(work)} already done, "
          f"{len(work)} to run" + (f"; {len(pending)} configs wait for search" if pending else ""))
    if not work:
        return 0
    ensure_runs_root(runs_root)
    if executor == "inproc":
        rc = execute_inproc(work)
        n_failed = report_failures(stage, runs)
        return rc or (1 if n_failed else 0)
    from . import launch

    profile = launch.load_profile(cluster) if executor == "slurm" else None
    log_folder = Path(runs_root) / paper / "_submitit" / stage
    jobs = launch.submit_runs(work, executor, profile, log_folder, pack_size=pack,
                              job_name=f"{paper}-{stage}")
    print(f"submitted {len(jobs)} array task(s); logs in {log_folder}")
    if wait:
        results = launch.wait(jobs)
        n_failed = report_failures(stage, runs)
        if n_failed or any(r["state"] != "DONE" for r in results):
            return 1  # a failed run or a killed job: a script must not carry on as if done
    return 0


@dataclass(frozen=True)
class StageOutcome:
    """Where ``run_stages`` stopped.  ``state``: ``done`` (every stage finished), ``waiting``
    (a stage was submitted without waiting), ``failed`` (``n_failed`` of the stage's
    ``n_runs`` runs failed) or ``unfinished`` (``n_left`` runs stopped or their job died).
    ``rc`` is the last submit's exit status."""
    state: str
    stage: str = ""
    n_runs: int = 0
    n_left: int = 0
    n_failed: int = 0
    rc: int = 0


def run_stages(paper: str, mode: str, runs_root: str, *,
               select: Optional[Sequence[str]] = None, executor: str = "local",
               cluster: str = "default", pack: int = 1, wait: bool = True) -> StageOutcome:
    """Submit the stages of ``mode`` in order, each once the one before has finished.  Without
    ``wait`` it submits the first unfinished stage and returns ``waiting``: calling it again
    after that stage's jobs are done goes on (finished runs are found, failed ones retried)."""
    for stage in stages_for(mode):
        runs, pending = stage_runs(paper, stage, runs_root, select)
        if not (sweep.todo(runs) or pending):
            continue
        rc = submit_stage(paper, stage, runs_root, select=select, executor=executor,
                          cluster=cluster, pack=pack, wait=wait)
        runs, pending = stage_runs(paper, stage, runs_root, select)
        left = sweep.todo(runs)
        if not (left or pending):
            continue
        n_failed = sum(run_state(r.run_dir) == "failed" for r in left)
        state = ("waiting" if not wait and rc == 0 else "failed" if n_failed else "unfinished")
        return StageOutcome(state, stage, len(runs), len(left), n_failed, rc)
    return StageOutcome("done")


def unsubmitted_run_lines(runs: Sequence[Run], log_root: Path) -> List[str]:
    """Started runs no submission knows of (``run``, ``--executor inproc``): who trains them
    now, or where they resume."""
    from .engine.lock import lock_holder

    started = [r for r in runs if run_state(r.run_dir) == "started"]
    if not started:
        return []
    from .launch.submit import read_manifest, resume_hint

    submitted = set()
    for stage_dir in (sorted(log_root.iterdir()) if log_root.is_dir() else []):
        for entry in read_manifest(stage_dir):
            submitted |= {run["run_dir"] for job in entry["jobs"] for run in job["runs"]}
    lines = []
    for r in started:
        if str(r.run_dir) in submitted:
            continue  # its job's line says it
        holder = lock_holder(r.run_dir)
        lines.append(f"  RUNNING {r.run_id}: trained by {holder}" if holder else
                     f"  STOPPED {r.run_id}: {resume_hint(r.run_dir)}")
    return lines


def status_lines(paper: str, mode: str, runs_root: str,
                 select: Optional[Sequence[str]] = None) -> Iterator[str]:
    """Per stage: done / failed / started / new counts, each failed run's error, started runs
    no submission knows of; then every submitted job not (yet) completed.  Lines come as each
    stage is planned."""
    log_root = Path(runs_root) / paper / "_submitit"
    for stage in stages_for(mode):
        runs, pending = stage_runs(paper, stage, runs_root, select)
        c = sweep.summarize(runs)
        yield (f"{stage:7s}: {c['done']}/{len(runs)} done, {c['failed']} failed, "
               f"{c['started']} started, {c['new']} not started"
               + (f", {len(pending)} configs waiting for search" if pending else ""))
        for r in runs:
            reason = failure_reason(r.run_dir)  # failed.json's error, or a damaged record
            if reason is not None:
                f = r.run_dir / "failed.json"
                yield f"  FAILED {r.run_id}: {reason}" + (f"\n    see {f}" if f.is_file() else "")
        yield from unsubmitted_run_lines(runs, log_root)
    yield from _job_lines(log_root)


def _job_lines(log_root: Path) -> Iterator[str]:
    """One line per submitted job not completed (or why job states cannot be read)."""
    if not log_root.is_dir():
        return
    try:
        from . import launch
        for stage_dir in sorted(log_root.iterdir()):
            for js in launch.job_states(stage_dir):
                if js.get("state") not in ("COMPLETED", "DONE"):
                    yield (f"  job {js.get('job_id')} ({stage_dir.name}): {js.get('state')} "
                           + " ".join(str(js.get('error') or '').split()))
    except Exception as e:  # status must work without SLURM
        yield f"  (job states unavailable: {e})"
