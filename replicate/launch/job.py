"""The submitted callable: trains one run, or a small pack of runs, and survives preemption.

How preemption works with submitit (``submitit/core/job_environment.py``, ``SignalHandler``):
on USR2 (time limit close, or ``job._interrupt()``) submitit calls ``checkpoint()`` from the
signal handler *in the main thread*, pickles the ``DelayedSubmission`` it returns as the job's
new submission, requeues the job and calls ``sys.exit`` right there.  If training ran in the
main thread it would be cut mid-epoch and ``SystemExit`` would fly through the engine.  So
``RunJob`` trains in a worker thread; the main thread only waits.  ``checkpoint()`` raises the
stop flag that ``engine.execute`` polls after every epoch, waits (at most ``grace_s``) until
the worker has saved ``last.ckpt`` and returned, then hands back a fresh ``RunJob`` with the
same run list.  The requeued job calls ``execute`` again, which resumes each run from its
``last.ckpt`` in the same run directory (finished runs return their record at once).  If the
epoch does not end within ``grace_s`` the job still requeues; the run then resumes from its
latest periodic checkpoint (``train.checkpoint_every_epochs`` / ``checkpoint_every_s``), with
the same result.

What ``RunJob`` adds around submitit's handler (installed at the start of ``__call__``):

* USR2 is blocked from the first instant of the job's python (``executors.blocked_python``)
  until the handler is in place, then unblocked here: a USR2 that arrived in between is
  delivered now instead of killing the process (its default action).
* A USR2 after the runs finished does not requeue: the job exits with their result.  The line
  "requeued" is printed only once ``scontrol requeue`` succeeded; a refused requeue fails the
  job with SLURM's reason (:class:`RequeueRefused`).
* Requeueing goes on while allocations make progress (a checkpoint or record written):
  ``max_stalled`` allocations in a row without one stop it (:class:`RunsStalled`); submitit's
  own fixed cap of 3 timeouts is lifted by the executors.
* SIGTERM/SIGINT (``scancel``, the time limit's kill, a local job being stopped) stop the runs
  at the next epoch boundary with their checkpoint saved; the job then ends with
  :class:`JobStopped` (the runs are resumable: re-submit the stage).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import submitit

#: after a SIGTERM stop, how long the job waits for the USR2 of a preemption (submitit's
#: ``_interrupt`` and some sites send SIGTERM first, then USR2) before it ends
PREEMPT_USR2_WAIT_S = 5.0


class RunFailures(RuntimeError):
    """One or more runs of a pack raised; the message lists each with its error."""


class JobStopped(RuntimeError):
    """SIGTERM/SIGINT stopped the job's runs at an epoch boundary; they are resumable."""


class RunsStalled(RuntimeError):
    """Several allocations in a row ended without any run saving progress: not requeued."""


class RequeueRefused(RuntimeError):
    """``scontrol requeue`` failed (e.g. requeueing disabled on this site or job)."""


class _AlreadyFinished(Exception):
    """Raised by checkpoint() when the runs finished while it waited: end with the result."""


def _say(line: str) -> None:
    """One log line from a signal handler: ``os.write`` cannot collide with an interrupted
    ``print`` (a buffered write re-entered from a handler raises)."""
    try:
        os.write(1, f"[replicate.launch] {line}\n".encode())
    except OSError:
        pass


def _run_dir(d: dict) -> Path:
    """``Run.from_dict(d).run_dir`` without building the experiment."""
    return Path(d["runs_root"]) / d["experiment"]["paper"] / d["stage"] / d["run_id"]


def progress_signature(run_dicts: List[dict]) -> Tuple:
    """What changes whenever a run of the list saves an epoch or finishes."""
    sig = []
    for d in run_dicts:
        rd = _run_dir(d)
        try:
            ck = (rd / "last.ckpt").stat().st_mtime_ns
        except OSError:
            ck = 0
        sig.append(((rd / "record.json").is_file(), ck))
    return tuple(sig)


class RunJob(submitit.helpers.Checkpointable):
    """``RunJob()(run_dicts)`` trains each ``Run.from_dict(d)`` in order and returns the records.

    A run that raises does not stop the others of its pack; the job raises at the end (so
    SLURM marks it FAILED) and each failed run has its ``failed.json``.  ``max_stalled``:
    allocations in a row without progress after which a time-limit/preemption signal no longer
    requeues; ``stalled`` counts them so far (carried across requeues).
    """

    #: the job entry (executors.blocked_python) leaves USR2 blocked for this callable: it
    #: unblocks it itself once its wrappers around submitit's handler are installed
    unblocks_usr2 = True

    def __init__(self, grace_s: float = 60.0, max_stalled: int = 3, stalled: int = 0) -> None:
        #: how long checkpoint() waits for the current epoch to finish
        self.grace_s = float(grace_s)
        self.max_stalled = int(max_stalled)
        self.stalled = int(stalled)
        self._reset()

    def _reset(self) -> None:
        # plain attributes, no locks: the signal handler runs in the main thread and may
        # interrupt it anywhere, so it must never wait on a lock the main thread could hold
        self._stop_reason: Optional[str] = None
        self._stop_signal: Optional[int] = None
        self._finished = False
        self._started = False
        self._result: Optional[list] = None
        self._error: Optional[BaseException] = None
        self._progress0: Optional[Tuple] = None
        self._usr2_next: Optional[Callable] = None

    def __getstate__(self) -> dict:
        return {"grace_s": self.grace_s, "max_stalled": self.max_stalled, "stalled": self.stalled}

    def __setstate__(self, state: dict) -> None:
        self.grace_s = state["grace_s"]
        self.max_stalled = int(state.get("max_stalled", 3))
        self.stalled = int(state.get("stalled", 0))
        self._reset()

    @property
    def _stop_requested(self) -> bool:
        return self._stop_reason is not None

    def _should_stop(self):
        return self._stop_reason or False

    # ------------------------------------------------------------------ running
    def __call__(self, run_dicts: List[dict]) -> List[Optional[dict]]:
        self._reset()
        previous = self._install_handlers()
        try:
            return self._main(list(run_dicts))
        except _AlreadyFinished:
            return self._outcome()
        finally:  # the USR2 wrapper stays: a late signal must still not requeue a finished job
            for s, h in previous.items():
                signal.signal(s, h)

    def _main(self, run_dicts: List[dict]) -> List[Optional[dict]]:
        import threading

        from .snapshot import code_info

        # the job's python started with USR2 blocked (executors.blocked_python): our handlers
        # are in place now, so a signal that came meanwhile is delivered here, not lost
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        info = code_info()
        print(f"[replicate.launch] {len(run_dicts)} run(s) on {socket.gethostname()} job "
              f"{_job_id()}; replicate from {info['package']} (commit {info['commit'] or 'n/a'})"
              + (f"; allocation {self.stalled + 1} in a row without progress so far"
                 if self.stalled else ""), flush=True)
        self._progress0 = progress_signature(run_dicts)
        worker = threading.Thread(target=self._work, args=(run_dicts,),
                                  name="replicate-run", daemon=True)
        self._started = True
        worker.start()
        while not self._finished:
            time.sleep(0.2)  # interruptible: the signal handlers run here
        if self._stop_signal is not None and not self._complete():
            # a preemption may follow its SIGTERM with USR2 (requeue): give it a moment
            deadline = time.time() + PREEMPT_USR2_WAIT_S
            while time.time() < deadline:
                time.sleep(0.1)
        return self._outcome()

    def _complete(self) -> bool:
        return self._error is None and self._result is not None \
            and all(r is not None for r in self._result)

    def _outcome(self) -> List[Optional[dict]]:
        if self._error is not None:
            raise self._error
        if self._stop_signal is not None and not self._complete():
            name = signal.Signals(self._stop_signal).name
            raise JobStopped(f"stopped by {name} at an epoch boundary with the runs' checkpoints "
                             f"saved; re-submit the stage to resume them")
        return self._result  # type: ignore[return-value]

    def _work(self, run_dicts: List[dict]) -> None:
        try:
            self._result = self._run_all(run_dicts)
        except BaseException as e:  # handed to the main thread, which re-raises it
            self._error = e
        finally:
            self._finished = True

    def _run_all(self, run_dicts: List[dict]) -> List[Optional[dict]]:
        from ..engine import Run, execute
        from ..engine.packed import PackError, PackedRunsFailed, check_packable, execute_packed
        from ..engine.train import execute_all

        _limit_threads()
        runs = [Run.from_dict(d) for d in run_dicts]
        if len(runs) > 1:
            # a pack that can share one frozen backbone trains together (engine/packed.py);
            # anything else (fine-tuning, different tasks) runs one by one below
            try:
                check_packable(runs)
            except PackError as e:
                print(f"[replicate.launch] runs of this pack train one by one: {e}", flush=True)
            else:
                try:
                    return execute_packed(runs, echo=_echo, should_stop=self._should_stop)
                except PackedRunsFailed as e:
                    raise RunFailures(str(e)) from e

        def failed(run: Run, e: Exception) -> None:
            print(f"[replicate.launch] run {run.run_id} FAILED: {type(e).__name__}: {e} "
                  f"(see {run.run_dir / 'failed.json'}); continuing with the pack", flush=True)

        # a job of one run raises its error as is; a pack's runs go on past a failure
        records, failures = execute_all(runs, echo=_echo, should_stop=self._should_stop,
                                        keep_going=len(runs) > 1, on_failure=failed,
                                        execute_one=execute)
        if failures:
            lines = [f"{len(failures)} of {len(run_dicts)} runs failed:"]
            lines += [f"  {r.run_id}: {type(e).__name__}: {e} (traceback in "
                      f"{r.run_dir / 'failed.json'})" for r, e in failures]
            raise RunFailures("\n".join(lines)) from failures[0][1]
        return records

    # ------------------------------------------------------------------ signals
    def _install_handlers(self) -> dict:
        """Wrap submitit's USR2 handler and requeue; SIGTERM/SIGINT stop at an epoch boundary.
        Outside a submitit job (tests call the job directly) only the latter are installed.
        Returns the SIGTERM/SIGINT handlers replaced (restored when the call ends)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        current = signal.getsignal(signal.SIGUSR2)
        if callable(current):
            self._usr2_next = current
            env = getattr(getattr(current, "__self__", None), "env", None)
            if env is not None and callable(getattr(env, "_requeue", None)):
                env._requeue = _checked_requeue(env)
            signal.signal(signal.SIGUSR2, self._on_usr2)
        return {s: signal.signal(s, self._on_stop_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def _on_usr2(self, signum, frame) -> None:
        if self._finished and (self._complete() or self._error is not None):
            _say("time-limit/preemption signal after the runs ended: exiting with their result, "
                 "not requeueing")
            return
        self._usr2_next(signum, frame)  # type: ignore[misc]  # submitit: checkpoint + requeue

    def _on_stop_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is not None:
            _say(f"received {name} again: exiting now (the runs resume from their last saved "
                 f"epoch)")
            raise SystemExit(128 + signum)
        self._stop_signal = signum
        if self._stop_reason is None:
            self._stop_reason = name
        _say(f"received {name}: stopping at the next epoch boundary with the checkpoint saved "
             f"(send it again to exit at once)")

    def checkpoint(self, run_dicts: List[dict]) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's USR2 handler: stop at the next epoch boundary, then requeue
        (unless the runs finished meanwhile, or allocations stopped making progress)."""
        if self._started and not self._finished:
            self._stop_reason = self._stop_reason or "time limit or preemption"
            _say(f"preempted/timed out: stopping at the next epoch boundary (waiting up to "
                 f"{self.grace_s:.0f} s)")
            deadline = time.time() + self.grace_s
            while not self._finished and time.time() < deadline:
                time.sleep(0.1)
            _say("stopped cleanly at an epoch boundary" if self._finished else
                 "epoch did not finish in time; the runs resume from their last saved epoch")
        if self._finished and (self._complete() or self._error is not None):
            _say("the runs ended before the stop: exiting with their result, not requeueing")
            raise _AlreadyFinished()
        progressed = self._progress0 is not None \
            and progress_signature(run_dicts) != self._progress0
        stalled = 0 if progressed else self.stalled + 1
        if stalled >= self.max_stalled:
            raise RunsStalled(
                f"{stalled} allocations in a row of job {_job_id()} ended (time limit or "
                f"preemption) before any run saved an epoch: not requeueing again. An epoch "
                f"takes longer than an allocation leaves: raise timeout_min in the cluster "
                f"profile (or max_requeues_without_progress); the runs keep their checkpoints, "
                f"re-submit the stage to resume them")
        return submitit.helpers.DelayedSubmission(
            self.__class__(grace_s=self.grace_s, max_stalled=self.max_stalled, stalled=stalled),
            run_dicts)


def _checked_requeue(env) -> Callable[[int], None]:
    """``env._requeue`` that says "requeued" only once SLURM accepted it, and fails the job
    with SLURM's own reason when it refuses (instead of a bare CalledProcessError)."""
    original = env._requeue

    def requeue(countdown: int) -> None:
        if getattr(env, "cluster", "") != "slurm":
            _say("requeueing: the local controller restarts this job")
            original(countdown)  # exits the process
            return
        jid = env.job_id
        try:
            out = subprocess.run(["scontrol", "requeue", jid], capture_output=True, text=True,
                                 timeout=60)
            refused = (out.stderr or out.stdout).strip() if out.returncode else None
        except (OSError, subprocess.TimeoutExpired) as e:
            refused = str(e)
        if refused is not None:
            _say(f"SLURM refused to requeue job {jid}: {refused}")
            raise RequeueRefused(
                f"SLURM refused to requeue job {jid} ({refused}); the runs keep their "
                f"checkpoints: re-submit the stage to resume them (jobs are submitted with "
                f"--requeue unless the profile sets requeue: false)")
        _say(f"requeued job {jid} (SLURM accepted it); the runs resume from their checkpoints")

    return requeue


def _job_id() -> str:
    try:
        return str(submitit.JobEnvironment().job_id)
    except Exception:  # not inside a submitit job (called directly)
        return "-"


def _echo(line: str) -> None:
    print(line, flush=True)


def _limit_threads() -> None:
    """Under SLURM use the CPUs granted, not every core of the node (no cgroups needed)."""
    n = os.environ.get("SLURM_CPUS_PER_TASK")
    if n and "OMP_NUM_THREADS" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        import torch

        torch.set_num_threads(max(1, int(n)))


__all__ = ["RunJob", "RunFailures", "JobStopped", "RunsStalled", "RequeueRefused",
           "progress_signature"]
