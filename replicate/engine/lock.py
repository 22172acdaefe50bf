"""One trainer per run directory: a lock file, unique temporary files, stale-temp cleanup.

Two processes on the same run (two ``reproduce`` started at once, a ``run`` beside a job of the
same stage, a requeued job whose old allocation is still saving) must not both train it: they
would overwrite each other's checkpoint and log.  :func:`run_lock` takes an exclusive
``flock`` on ``<run_dir>/.lock``; a second process *waits* for it (one line says who holds it)
and then finds the run finished (its record) or resumes it from the holder's checkpoint.  The
lock is the kernel's: it goes away with the process that held it (a crashed or SIGKILLed
trainer leaves no stale lock), and on NFS the Linux client turns it into a server-side lock
visible to every node.  File systems without locks (Lustre mounted without ``flock``) get a
warning and no protection.

Files are replaced atomically through a temporary file named for its writer
(:func:`temp_path`: ``<name>.<pid>.<random>.tmp``), so two writers never share one; the lock
holder removes temporary files left by killed writers (:func:`remove_stale_temps`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

LOCK_NAME = ".lock"
#: errors of file systems that do not implement flock
_NO_LOCKS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
_warned: set = set()


def temp_path(path: Path) -> Path:
    """A temporary name next to ``path`` that no other writer uses (pid + random token)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temps(run_dir: Path) -> List[Path]:
    """Delete temporary files (``*.tmp``) that killed writers left in ``run_dir``.  Call only
    while holding :func:`run_lock` (no other writer can be active then).  Returns them."""
    removed = []
    for p in Path(run_dir).glob("*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text() or "{}")
        return (f"pid {info['pid']} on {info['host']} since {info['since']}"
                + (f" (job {info['job']})" if info.get("job") else ""))
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def run_lock(run_dir: Path, echo: Callable[[str], None] = _stderr,
             wait: bool = True, poll_s: float = 0.5) -> Iterator[bool]:
    """Hold the exclusive lock of ``run_dir`` (created if missing) for the ``with`` block.

    If another process holds it: with ``wait`` print one line naming the holder and block until
    it is released (yields True), else yield False at once without the lock (the caller skips
    the run).  Stale temporary files are removed once the lock is held.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_file = run_dir / LOCK_NAME
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            for attempt in range(3):  # a status probe (lock_holder) holds it for microseconds
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 2:
                        raise
                    time.sleep(0.05)
        except BlockingIOError:
            if not wait:
                echo(f"[lock] {run_dir.name}: trained by {_holder(lock_file)}; skipping it here")
                yield False
                return
            echo(f"[lock] {run_dir.name}: trained by {_holder(lock_file)}; waiting for it to "
                 f"finish or stop (then this process uses its result or resumes it)")
            while True:  # polled, not blocking: signals (SIGTERM, USR2) stay responsive
                time.sleep(poll_s)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    continue
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            fs = str(run_dir.parent)
            if fs not in _warned:
                _warned.add(fs)
                echo(f"[lock] warning: {run_dir.parent} does not support file locks ({e.strerror}); "
                     f"two processes on the same run would both train it (Lustre: mount with "
                     f"-o flock)")
            yield True
            return
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "job": os.environ.get("SLURM_JOB_ID", "")}).encode())
        remove_stale_temps(run_dir)
        yield True
    finally:
        os.close(fd)  # releases the lock


def lock_holder(run_dir: Path) -> Optional[str]:
    """Who trains ``run_dir`` right now (None if nobody holds its lock)."""
    lock_file = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(lock_file)
    except OSError:
        return None
    finally:
        os.close(fd)


__all__ = ["LOCK_NAME", "run_lock", "lock_holder", "temp_path", "remove_stale_temps"]
