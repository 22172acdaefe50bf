"""submitit executors, chosen explicitly: ``slurm``, ``local`` or ``debug``.

Never ``submitit.AutoExecutor`` without a cluster: it silently picks SLURM as soon as ``srun``
is on PATH, so a "local" test on a machine with slurm-client installed would submit jobs.
"""
from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import submitit
from submitit.local.debug import DebugExecutor, DebugJob

from .snapshot import snapshot_setup

KINDS = ("slurm", "local", "debug")
#: local jobs without a profile: effectively no time limit (a limit would requeue them)
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
#: submitit's cap on timeouts per job, lifted: RunJob stops requeueing only after
#: ``max_requeues_without_progress`` allocations in a row without a saved epoch
UNLIMITED_TIMEOUTS = 10_000

#: how a job's python starts.  SLURM's time-limit or preemption USR2 can arrive at the first
#: instant of an allocation; its default action kills the process, and submitit installs its
#: handler only ~0.3 s later.  So: ``sh`` ignores USR2 (inherited across exec), a minimal
#: ``python -S`` blocks it and restores its default action (the block also survives exec),
#: then execs the real python running submitit's job entry (``_ENTRY``), which unblocks USR2
#: right after submitit installed its handler (a ``RunJob`` unblocks it itself, once its own
#: wrappers are in place).  A USR2 from the python start on stays pending and is handled, one
#: during the shell's and ``python -S``'s few milliseconds is ignored, none kills the job.
_BLOCK_USR2 = ("import os,signal,sys\n"
               "signal.pthread_sigmask(signal.SIG_BLOCK,[signal.SIGUSR2])\n"
               "signal.signal(signal.SIGUSR2,signal.SIG_DFL)\n"
               "entry,rest=sys.argv[1],sys.argv[2:]\n"
               "if rest[:3]==['-u','-m','submitit.core._submit']:rest=['-u','-c',entry]+rest[3:]\n"
               "os.execv(sys.executable,[sys.executable]+rest)\n")
_ENTRY = ("import signal\n"
          "from submitit.core import job_environment as je\n"
          "from submitit.core.submission import submitit_main\n"
          "install = je.JobEnvironment._handle_signals\n"
          "def handle_signals(self, paths, submission):\n"
          "    install(self, paths, submission)\n"
          "    if not getattr(submission.function, 'unblocks_usr2', False):\n"
          "        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])\n"
          "je.JobEnvironment._handle_signals = handle_signals\n"
          "submitit_main()\n")
_IGNORE_USR2 = 'trap "" USR2; exec "$0" "$@"'


def blocked_python(python: str = sys.executable) -> str:
    """The ``python`` command submitit puts before ``-u -m submitit.core._submit <folder>``
    (see ``_BLOCK_USR2``): ``sh -c <ignore USR2, exec> python -S -c <block USR2, exec python
    -u -c <submitit's entry, unblocking USR2 once its handler is in place> <folder>>``."""
    return (f"/bin/sh -c {shlex.quote(_IGNORE_USR2)} {shlex.quote(python)} -S -c "
            f"{shlex.quote(_BLOCK_USR2)} {shlex.quote(_ENTRY)}")


class LaunchError(RuntimeError):
    """The launcher cannot do what was asked; the message says why and what to do."""


class QuietDebugJob(DebugJob):
    """submitit's in-process job, minus the ``pdb.post_mortem`` on failure (it would hang
    non-interactive runs and tests), and run at most once: a failure is remembered instead of
    re-running the callable on every ``done()``/``exception()`` call."""

    def __init__(self, folder: Path, submission: Any) -> None:
        super().__init__(folder, submission)
        self._error: Optional[BaseException] = None

    def results(self):  # type: ignore[override]
        self._check_not_cancelled()
        if self._error is not None:
            raise self._error
        if not self._submission.done():
            try:
                self._submission.result()
            except Exception as e:
                self._error = e
                raise
        return [self._submission._result]

    def exception(self) -> Optional[BaseException]:  # type: ignore[override]
        try:
            self.results()
        except Exception as e:
            return e
        return None

    def done(self, force_check: bool = False) -> bool:
        self.exception()  # runs the job in this process if it has not run yet
        return True

    @property
    def state(self) -> str:
        if self.cancelled:
            return "CANCELLED"
        if self._error is not None:
            return "FAILED"
        return "DONE" if self._submission.done() else "QUEUED"


class QuietDebugExecutor(DebugExecutor):
    job_class = QuietDebugJob

    def _internal_process_submissions(self, delayed_submissions):  # type: ignore[override]
        return [QuietDebugJob(self.folder, ds) for ds in delayed_submissions]


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if float(mem_gb) == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def slurm_parameters(profile: Dict[str, Any], job_name: str,
                     setup: Optional[List[str]] = None) -> Dict[str, Any]:
    """The profile as ``submitit.SlurmExecutor`` parameters (one node, one task per job)."""
    params: Dict[str, Any] = {
        "job_name": job_name,
        "time": int(profile["timeout_min"]),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": int(profile["cpus_per_task"]),
        "mem": _mem(profile["mem_gb"]),
        "array_parallelism": int(profile["array_parallelism"]),
        "signal_delay_s": int(profile["signal_delay_s"]),
    }
    if profile.get("gpus_per_job"):
        params["gpus_per_node"] = int(profile["gpus_per_job"])
    for key in ("partition", "account", "constraint"):
        if profile.get(key):
            params[key] = profile[key]
    additional = dict(profile.get("additional") or {})
    if not ({"requeue", "no-requeue", "no_requeue"} & set(additional)):
        # sites where jobs are not requeueable by default refuse submitit's `scontrol requeue`
        # ("Requested operation is presently disabled") unless the job asked for it
        additional["requeue" if profile.get("requeue", True) else "no-requeue"] = True
    params["additional_parameters"] = additional
    lines = list(profile.get("setup") or []) + list(setup or [])
    if lines:
        params["setup"] = lines
    return params


def make_executor(kind: str, folder: Union[str, Path], profile: Optional[Dict[str, Any]] = None,
                  job_name: str = "replicate", *, code_dir: Optional[Path] = None,
                  environment: str = "classification",
                  max_num_timeout: int = UNLIMITED_TIMEOUTS) -> submitit.Executor:
    """A submitit executor of exactly this ``kind``.

    ``profile`` (from :func:`load_profile`) sets the SLURM resources; for ``local`` only its
    ``timeout_min``, ``signal_delay_s`` and ``gpus_per_job`` matter (no profile: no time limit,
    all visible GPUs).  ``code_dir`` (a :func:`snapshot_code` directory) makes slurm/local jobs
    import the code from there.  ``debug`` runs in this process when a result is asked for.
    ``environment`` (``classification`` | ``segmentation``): the Python environment slurm/local
    jobs start in, from the profile's ``environments`` (``environments.job_python``).
    """
    if kind not in KINDS:
        raise LaunchError(f"unknown executor kind {kind!r}; choose one of {', '.join(KINDS)}")
    folder = Path(folder).absolute()
    setup = snapshot_setup(code_dir) if code_dir is not None else []
    if kind != "debug":  # the job's python: its environment's (replicate/environments.py)
        from .. import environments

        try:
            job_py, env_setup = environments.job_python(environment, profile)
        except environments.EnvironmentMissing as e:
            raise LaunchError(str(e)) from None
        setup = env_setup + setup
    if kind == "debug":
        return QuietDebugExecutor(folder)
    if kind == "slurm":
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise LaunchError(
                "executor 'slurm' but sbatch/srun are not on PATH: submit from a SLURM login "
                "node, start the one-node test cluster (bash slurm/local/start.sh --install, as "
                "root), or use the 'local' executor")
        if profile is None:
            from .profiles import load_profile

            profile = load_profile("default")
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout,
                                    python=blocked_python(job_py))
        ex.update_parameters(**slurm_parameters(profile, job_name, setup))
        return ex
    # local
    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout,
                                python=blocked_python(job_py))
    params: Dict[str, Any] = {}
    if profile is not None:
        params["timeout_min"] = int(profile["timeout_min"])
        params["signal_delay_s"] = int(profile["signal_delay_s"])
        params["gpus_per_node"] = int(profile["gpus_per_job"])
    else:
        params["timeout_min"] = LOCAL_TIMEOUT_MIN
        # LocalExecutor sets CUDA_VISIBLE_DEVICES to range(gpus_per_node): 0 would hide all
        params["gpus_per_node"] = _visible_gpus()
    if setup:
        params["setup"] = setup
    ex.update_parameters(**params)
    return ex


def _visible_gpus() -> int:
    if "torch" not in sys.modules and shutil.which("nvidia-smi") is None:
        return 0
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0
