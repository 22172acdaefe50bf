"""Graceful stop: SIGTERM or SIGINT finish the current epoch, save its checkpoint, and stop.

``engine.execute`` polls ``should_stop`` after every epoch; :class:`GracefulStop` is such a
callable that turns the first SIGTERM/SIGINT into a stop request (its value is the signal's
name, which the run's log line repeats).  A second signal of either kind stops at once
(KeyboardInterrupt for SIGINT, exit status 143 for SIGTERM): the run then resumes from the
previous epoch's checkpoint.  SLURM sends SIGTERM to a job it is about to kill (time limit,
``scancel``), ``KillWait`` seconds (30 by default) before SIGKILL.

Handlers can only be installed from the main thread; elsewhere :class:`GracefulStop` is inert
(it never requests a stop).  The receipt line is written with ``os.write``: a ``print`` from a
signal handler can collide with a ``print`` the handler interrupted.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Dict, Optional, Sequence, Union

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """``with GracefulStop() as stop: execute(run, should_stop=stop)``; then ``stop.signame``
    is the signal that stopped the run (None if none came) and ``stop.exit_code`` 128 + its
    number (the shell's convention for a process ended by a signal)."""

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS, fd: int = 2,
                 prefix: str = "[replicate]") -> None:
        self.signals = tuple(signals)
        self.fd, self.prefix = fd, prefix
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}

    # -------------------------------------------------------------- state
    @property
    def signame(self) -> Optional[str]:
        return signal.Signals(self.signum).name if self.signum is not None else None

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum) if self.signum is not None else 0

    def __call__(self) -> Union[bool, str]:
        """The ``should_stop`` callable: the signal's name once one came, else False."""
        return self.signame or False

    # -------------------------------------------------------------- handlers
    def install(self) -> "GracefulStop":
        if threading.current_thread() is not threading.main_thread():
            return self
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, prev in self._previous.items():
            try:
                signal.signal(s, prev)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                signal.signal(s, signal.SIG_DFL)
        self._previous = {}

    def say(self, line: str) -> None:
        try:
            os.write(self.fd, f"{self.prefix} {line}\n".encode())
        except OSError:
            pass

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:  # second signal: stop now
            self.say(f"received {name} again: stopping now (the run resumes from its last "
                     f"saved epoch)")
            self.restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        self.say(f"received {name}: stopping after the current epoch, once its checkpoint is "
                 f"saved (send {name} again to stop at once)")

    def __enter__(self) -> "GracefulStop":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()


__all__ = ["GracefulStop", "STOP_SIGNALS"]
