"""One line per failure: how ``python -m replicate`` turns an error into ``error: ...``.

Every error class the harness raises (ConfigError, DataError, PublishedError, CollectError,
CheckpointError, RunFileError, LaunchError, ...) carries a message that names the file or key
and the fix; an ``OSError`` names its path.  The CLI prints that message as one line and exits
2; ``--debug`` (or ``REPLICATE_DEBUG=1``) keeps the traceback.  Anything else is a bug and keeps
its traceback.  No torch import here: the CLI loads this module before any heavy one.
"""
from __future__ import annotations

import errno
from typing import Optional

#: exit status of a harness error (argparse uses 2 for bad arguments too)
EXIT_ERROR = 2


class CliError(RuntimeError):
    """A bad command line the parser cannot see (unknown paper, no matching config ...)."""


# The error classes below sit here, at the bottom layer, so that the registries, the data
# loaders and the run-directory contract can raise them without importing ``config`` or torch;
# their old homes (config, data, backbones.converters, engine.run) re-export them.
class ConfigError(ValueError):
    """A config file is malformed; the message names the file, the key and the fix."""


class DataError(RuntimeError):
    """Missing or malformed data; the message names the path and the command that fixes it."""


class CheckpointError(RuntimeError):
    """The checkpoint file is missing, unreadable or of the wrong layout."""


class RunFileError(RuntimeError):
    """A file in a run directory is damaged; the message names the file and how to recover."""


def is_harness_error(exc: BaseException) -> bool:
    """True for OSError and for every exception class defined in the ``replicate`` package."""
    if isinstance(exc, OSError):
        return True
    return any(c.__module__ == "replicate" or c.__module__.startswith("replicate.")
               for c in type(exc).__mro__ if c is not BaseException)


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The original error of a DataLoader worker.  torch re-raises it in the main process as
    ``type(exc)("Caught X in DataLoader worker process N.\\nOriginal Traceback ...")``; this
    gives back ``type(exc)(<original message>)`` so logs, failed.json and the CLI's error line
    hold the message once, without the worker's traceback."""
    msg = str(exc)
    if not (msg.startswith("Caught ") and "Original Traceback" in msg):
        return exc
    tb = msg.rstrip()
    text = tb.splitlines()[-1]
    for p in (f"{type(exc).__module__}.{type(exc).__qualname__}: ",
              f"{type(exc).__qualname__}: "):
        at = tb.rfind("\n" + p)  # the traceback ends with "<type>: <original message>"
        if at >= 0:
            text = tb[at + 1 + len(p):]
            break
    try:
        return type(exc)(text)
    except Exception:  # an exception type with another constructor: keep the wrapped one
        return exc


_OS_FIX = {
    errno.EACCES: "make it writable/readable for you, or point the option or variable that "
                  "names it (RUNS_ROOT / --runs-root, --out, DATA_ROOT, CKPT_ROOT) elsewhere",
    errno.EPERM: "make it writable/readable for you, or point the option or variable that "
                 "names it (RUNS_ROOT / --runs-root, --out, DATA_ROOT, CKPT_ROOT) elsewhere",
    errno.EROFS: "the file system is read-only: point RUNS_ROOT / --runs-root / --out to a "
                 "writable one",
    errno.ENOSPC: "the disk is full: free space (old run directories, checkpoints) and re-run",
    errno.EDQUOT: "the disk quota is exceeded: free space and re-run",
    errno.ENOENT: "check the path (and the variable or option that names it)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "the path is a folder where a file is expected: fix the path",
}


def describe(exc: BaseException) -> str:
    """``exc`` as one line: its message with whitespace runs (newlines) collapsed; an OSError as
    ``<what>: <path>: <fix>``."""
    exc = unwrap_worker_error(exc)
    if isinstance(exc, OSError) and not _from_harness(exc) and (exc.filename or exc.strerror):
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        what = exc.strerror or type(exc).__name__
        fix = _OS_FIX.get(exc.errno or -1, "")
        text = f"{what}: {where}" if exc.filename else what
        text += f" ({type(exc).__name__})" if not exc.strerror else ""
        msg = text + (f": {fix}" if fix else "")
    else:
        msg = str(exc).strip() or type(exc).__name__
        if type(exc).__name__ in ("KeyError",) and msg.startswith("'"):
            msg = f"missing key {msg}"
    return " ".join(msg.split())


def _from_harness(exc: BaseException) -> bool:
    """An OSError subclass of the harness carries its own full message."""
    return any(c.__module__.startswith("replicate") for c in type(exc).__mro__)


def error_line(exc: BaseException) -> Optional[str]:
    """``error: ...`` for a harness error or OSError, None for anything else (a bug)."""
    if not is_harness_error(exc):
        return None
    return f"error: {describe(exc)}"
