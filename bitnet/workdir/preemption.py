"""Preemption and Ctrl-C: SIGTERM (the usual preemption signal) or SIGINT asks training to checkpoint and stop.

The handler only records the request; the training loop checks it after each step, saves the
latest checkpoint and raises `Preempted`, so the run stops cleanly and the same command resumes.
The program then exits with status 128 + the signal's number, as a shell reports a process that
signal ended: 143 for SIGTERM, 130 for SIGINT (Ctrl-C). A second Ctrl-C stops at once, without
the checkpoint (the same command resumes from the last one saved); a SIGINT after a SIGTERM is not a
second Ctrl-C: a launcher passes a Ctrl-C on to its children as SIGTERM (bitnet.runs.children), and
each child may get that before the terminal's own SIGINT.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested: list[str] = []
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(RuntimeError):
    """Training stopped on request after saving a checkpoint."""


def requested() -> str | None:
    """The name of the signal that asked to stop, or None."""
    return _requested[0] if _requested else None


def exit_status() -> int:
    """128 + the number of the signal that asked to stop (SIGTERM if none was recorded)."""
    return 128 + signal.Signals[requested() or "SIGTERM"].value


def _handle(signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if signum == signal.SIGINT and name in _requested:  # Ctrl-C again: do not wait for the checkpoint
        raise KeyboardInterrupt
    _requested.append(name)


@contextlib.contextmanager
def stop_on_sigterm():
    """Within this block SIGTERM and SIGINT request a clean stop instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    _requested.clear()
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
