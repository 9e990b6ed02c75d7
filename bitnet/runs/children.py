"""Child commands of a launcher (the sweep; a cluster launcher later): each run with its output copied line by line
to its logs, a SIGINT or SIGTERM to the launcher passed on to every child, and how each ended.

    with children.stops_forwarded() as launcher:       # in the main thread: signal handlers live there
        ending = launcher.run(command, logs, env)     # from any thread
    if launcher.stop: sys.exit(launcher.exit_status())

A stop is passed on as SIGTERM, whichever signal came: Ctrl-C in a terminal signals the launcher's whole process
group, so the children have had their own SIGINT already, and a second SIGINT makes a trainer stop at once without
its checkpoint (bitnet.workdir.preemption), while a SIGTERM after it changes nothing. A child signalled alone
(`kill -TERM <launcher pid>`) saves and stops as on its own signal. The launcher waits for every child to exit, its
last output line written to the logs, starts no more, and then exits 128 + the signal, as a shell reports a process
that signal ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
from typing import Iterator, Mapping, Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a child command ended: its exit status as a shell shows it (128 + N when signal N ended it), the name of
    the signal that stopped the launcher if the child did not finish (None otherwise; a child never started after a
    stop has it too), and its last `error: ...` output line (None if it printed none)."""

    status: int
    stopped: str | None = None
    error: str | None = None

    @property
    def failure(self) -> str:
        """What went wrong, in one line: the error line it printed, else its exit status."""
        return self.error or f"exit status {self.status}"


def shell_status(returncode: int) -> int:
    """A subprocess's return code as a shell reports it: 128 + N for a process that signal N ended (Python gives -N)."""
    return 128 - returncode if returncode < 0 else returncode


class Launcher:
    """Runs child commands, from any thread; `stop` is the name of the signal that asked every child to stop, or None."""

    def __init__(self) -> None:
        self.stop: str | None = None
        self._running: set[subprocess.Popen] = set()  # set.add/discard and list(set) are atomic: no lock, which the signal handler could deadlock on

    def exit_status(self) -> int:
        """128 + the number of the stop signal, the status a launcher that stopped exits with."""
        return 128 + signal.Signals[self.stop or "SIGTERM"].value

    def request_stop(self, signum: int, frame=None) -> None:
        """The signal handler: record the first stop signal and ask every running child to save and stop (SIGTERM)."""
        del frame
        self.stop = self.stop or signal.Signals(signum).name
        for process in list(self._running):
            _terminate(process)

    def run(self, command: Sequence[str], logs: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Ending:
        """Run `command` to its end with its output (stdout and stderr) appended, line by line, to every file in `logs`.
        After a stop it is not started (its Ending has `stopped` and the launcher's exit status)."""
        if self.stop:
            return Ending(self.exit_status(), stopped=self.stop)
        with contextlib.ExitStack() as files:
            outputs = [files.enter_context(open(log, "a", buffering=1)) for log in logs]  # line-buffered: a log never lags
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self._running.add(process)
            try:
                if self.stop:  # the signal came while it started: the handler may not have seen it
                    _terminate(process)
                error = None
                for line in process.stdout:  # to its end, so the child's last lines (its "stopped: ...") are kept
                    for output in outputs:
                        output.write(line)
                    if line.startswith("error: "):
                        error = line.rstrip("\n")
                status = shell_status(process.wait())
            finally:
                self._running.discard(process)
                process.stdout.close()
        return Ending(status, stopped=self.stop if status and self.stop else None, error=error)


def _terminate(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        process.send_signal(signal.SIGTERM)


@contextlib.contextmanager
def stops_forwarded() -> Iterator[Launcher]:
    """A Launcher; within this block SIGINT and SIGTERM stop its children (they save and exit) instead of this
    process, which goes on until they have exited. Enter it in the main thread (only it can set signal handlers)."""
    launcher = Launcher()
    previous = {signum: signal.signal(signum, launcher.request_stop) for signum in STOP_SIGNALS}
    try:
        yield launcher
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
