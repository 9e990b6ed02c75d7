"""Preemption: SIGTERM (the usual preemption signal) asks training to checkpoint and stop.

The handler only records the request; the training loop checks it after each step, saves the
latest checkpoint and raises `Preempted`, so the run stops cleanly and the same command resumes.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested: list[str] = []


class Preempted(RuntimeError):
    """Training stopped on request after saving a checkpoint."""


def requested() -> str | None:
    """The name of the signal that asked to stop, or None."""
    return _requested[0] if _requested else None


def _handle(signum, frame) -> None:
    del frame
    if not _requested:
        _requested.append(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_sigterm():
    """Within this block SIGTERM requests a clean stop instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    _requested.clear()
    previous = signal.signal(signal.SIGTERM, _handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
