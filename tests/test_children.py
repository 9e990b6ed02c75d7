"""A launcher's child commands (bitnet.runs.children): logs line by line, SIGINT/SIGTERM passed on, how each ended.

The launcher and its child are real processes; the child stops as the trainer does (bitnet.workdir.preemption): it
records the first signal, "saves" and exits 128 + that signal, and a second SIGINT would abort it unsaved."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bitnet.runs import children
from tests.helpers import REPO

CHILD = textwrap.dedent("""
    import os, sys, time
    from bitnet.workdir import preemption
    with preemption.stop_on_sigterm():
        print(f"training as pid {os.getpid()}", flush=True)
        while not preemption.requested():
            time.sleep(0.01)
        print("saving", flush=True)
        time.sleep(0.5)  # saving: a second SIGINT now would raise KeyboardInterrupt (a traceback, nothing saved)
        print(f"stopped: stopped by {preemption.requested()}; checkpoint saved", file=sys.stderr)
    sys.exit(preemption.exit_status())
""")

LAUNCHER = textwrap.dedent("""
    import sys
    from bitnet.runs import children
    with children.stops_forwarded() as launcher:
        ending = launcher.run([sys.executable, "-c", sys.argv[1]], [sys.argv[2]])
    print(f"child {ending.status} {ending.stopped}", flush=True)
    sys.exit(launcher.exit_status() if launcher.stop else ending.status)
""")


def _stop_launcher(tmp_path, send):
    """Start a launcher running CHILD; once the child trains, `send(launcher pid, child pid, wait_for)` signals; then
    (the launcher's exit status, its output, the child's log)."""
    log = tmp_path / "run.log"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, CHILD, str(log)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,  # its own process group, as a terminal gives a command
    )
    try:
        def wait_for(text):
            deadline = time.time() + 60
            while not (log.exists() and text in log.read_text()):
                assert launcher.poll() is None and time.time() < deadline, launcher.stdout.read()
                time.sleep(0.01)

        wait_for("training as pid")
        send(launcher.pid, int(log.read_text().split()[3]), wait_for)
        output, _ = launcher.communicate(timeout=60)
        return launcher.returncode, output, log.read_text()
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def _child_first(launcher, child, wait_for):
    """Ctrl-C as the child may see it: its own SIGINT, handled (it is saving), before the launcher passes one on."""
    os.kill(child, signal.SIGINT)
    wait_for("saving")
    os.kill(launcher, signal.SIGINT)


@pytest.mark.parametrize("signal_name, send, status", [
    ("SIGTERM", lambda launcher, child, wait_for: os.kill(launcher, signal.SIGTERM), 143),  # kill -TERM <launcher pid>
    ("SIGINT", lambda launcher, child, wait_for: os.kill(launcher, signal.SIGINT), 130),  # kill -INT <launcher pid>
    ("SIGINT", lambda launcher, child, wait_for: os.killpg(launcher, signal.SIGINT), 130),  # Ctrl-C: to the process group
    ("SIGINT", _child_first, 130),
])
def test_a_stop_reaches_the_child_which_saves_and_the_launcher_exits_as_the_signal_ended_it(tmp_path, signal_name, send, status):
    code, output, log = _stop_launcher(tmp_path, send)
    assert code == status and "Traceback" not in output + log, output + log
    assert output.splitlines()[-1].startswith("child 1") and output.splitlines()[-1].endswith(signal_name)  # it ended stopped
    assert log.splitlines()[-1].startswith("stopped: stopped by SIG") and log.endswith("checkpoint saved\n")  # its last line logged


def test_an_ending_has_the_childs_status_and_last_error_line(tmp_path):
    launcher = children.Launcher()
    script = "import sys; print('error: first'); print('error: the last one'); print('bye'); sys.exit(3)"
    assert launcher.run([sys.executable, "-c", script], [tmp_path / "a.log", tmp_path / "b.log"]) == children.Ending(3, None, "error: the last one")
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text() == "error: first\nerror: the last one\nbye\n"
    assert launcher.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]).status == 137
    assert children.Ending(1).failure == "exit status 1" and children.Ending(1, error="error: x").failure == "error: x"


def test_after_a_stop_no_child_starts(tmp_path):
    launcher = children.Launcher()
    launcher.request_stop(signal.SIGTERM)
    assert launcher.run([sys.executable, "-c", f"open({str(tmp_path / 'ran')!r}, 'w')"]) == children.Ending(143, "SIGTERM")
    assert not (tmp_path / "ran").exists() and launcher.exit_status() == 143


def test_a_stop_reaches_every_child_running_in_parallel(tmp_path):
    """As with `experiments.sweep --parallel 2`: children run from worker threads, the stop comes to the main thread."""
    launcher = children.Launcher()
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    command = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        endings = [pool.submit(launcher.run, command, [log]) for log in logs]
        deadline = time.time() + 60
        while not all(log.exists() and "up" in log.read_text() for log in logs):
            assert time.time() < deadline
            time.sleep(0.01)
        launcher.request_stop(signal.SIGTERM)
        assert [ending.result(timeout=60) for ending in endings] == [children.Ending(143, "SIGTERM")] * 2
