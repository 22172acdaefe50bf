"""A run: one experiment, one seed, one training split -> a run directory.

Run directory layout (the contract every stage relies on)::

    <runs_root>/<paper>/<stage>/<run_id>/
        config.json     resolved experiment + run fields (written first)
        log.txt         progress lines (appended; one per epoch)
        last.ckpt       trainable state, optimizer, scheduler, epoch (atomic replace)
        record.json     final record, written atomically; a parseable one means done (a
                        damaged one means failed: run.record_problem says why)
        failed.json     traceback of the last failed attempt (removed when a later one succeeds)
        .lock           flock'ed by the process training the run (engine/lock.py): one at a time

``run_id`` = ``<experiment name>-<hash of resolved config, seed, splits>``, so re-planning the
same work finds the same directories and skips or resumes them.

Torch-free (bottom layer): planning, collection and the launcher read run directories through
this module without loading the engine; ``replicate.engine.run`` re-exports it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .config import Experiment, from_dict
from .errors import RunFileError  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Run:
    experiment: Experiment
    seed: int
    #: search | final | pinned | smoke
    stage: str
    #: canonical split trained on, and splits evaluated after training (first one also per epoch)
    train_split: str
    eval_splits: Tuple[str, ...]
    #: root of all run directories (RUNS_ROOT)
    runs_root: str
    #: free-form tags copied into the record (e.g. grid point, selected-from)
    tags: Dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        key = json.dumps({"cfg": self.experiment.config_hash(), "seed": self.seed,
                          "train": self.train_split, "eval": list(self.eval_splits),
                          "stage": self.stage}, sort_keys=True)
        return f"{self.experiment.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.experiment.paper / self.stage / self.run_id

    def to_dict(self) -> dict:
        return {"experiment": self.experiment.to_dict(), "seed": self.seed, "stage": self.stage,
                "train_split": self.train_split, "eval_splits": list(self.eval_splits),
                "runs_root": self.runs_root, "tags": dict(self.tags), "run_id": self.run_id}

    @staticmethod
    def from_dict(d: dict) -> "Run":
        exp = from_dict(d["experiment"], source=d["experiment"].get("source", "<run>"))
        return Run(exp, d["seed"], d["stage"], d["train_split"], tuple(d["eval_splits"]),
                   d["runs_root"], d.get("tags", {}))


def file_mode() -> int:
    """Mode for files created through :func:`tempfile.mkstemp` (which makes them 0600): what a
    plain ``open()`` would give under the process umask, so collaborators sharing a runs root
    can read records and checkpoints when the umask lets them."""
    try:  # Linux: read the umask without changing it (os.umask would race other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: record statuses that finish a run: ``done``, and ``diverged`` (a search grid point whose
#: loss turned non-finite: a result that selection skips, never retried)
TERMINAL_STATUSES = ("done", "diverged")


def record_problem(run_dir: Path) -> Optional[str]:
    """Why ``run_dir/record.json`` cannot count as a finished run (truncated, not JSON, not a
    finished record), or None when it is absent or fine."""
    p = Path(run_dir) / "record.json"
    try:
        with open(p) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return (f"{p} is unreadable ({type(e).__name__}: {e}); records are written atomically, so "
                f"it was truncated or edited afterwards: delete it and re-run the stage (the run "
                f"resumes from its last checkpoint)")
    if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict) \
            or rec.get("status", "done") not in TERMINAL_STATUSES:
        return (f"{p} is not a finished run's record (no 'metrics' dict or status not 'done'): "
                f"delete it and re-run the stage")
    return None


def read_record(run_dir: Path) -> Optional[dict]:
    """The run's record, or None when there is none or it is damaged (:func:`record_problem`
    says why); a damaged record never counts as done."""
    p = Path(run_dir) / "record.json"
    if not p.is_file() or record_problem(run_dir) is not None:
        return None
    with open(p) as f:
        return json.load(f)


def failure_reason(run_dir: Path) -> Optional[str]:
    """Why a run is in state ``failed``: a damaged record.json, or the error in failed.json."""
    d = Path(run_dir)
    problem = record_problem(d)
    if problem is not None:
        return problem
    f = d / "failed.json"
    if not f.is_file():
        return None
    try:
        info = json.loads(f.read_text())
        err = str(info.get("error") or "").strip()
        if not err:
            tb = str(info.get("traceback", "")).strip().splitlines()
            err = tb[-1] if tb else ""
        return err or f"failed (see {f})"
    except (OSError, ValueError, AttributeError) as e:
        return f"failed; {f} is unreadable ({type(e).__name__}: {e})"


def run_state(run_dir: Path) -> str:
    """done | failed | started | new, from the files in the run directory.  A record.json that
    cannot be parsed is ``failed`` (its reason: :func:`failure_reason`), never ``done``."""
    d = Path(run_dir)
    if (d / "record.json").is_file():
        return "done" if record_problem(d) is None else "failed"
    if (d / "failed.json").is_file():
        return "failed"
    if (d / "last.ckpt").is_file() or (d / "config.json").is_file():
        return "started"
    return "new"


def replace_run(run: Run, **changes) -> Run:
    return dataclasses.replace(run, **changes)
