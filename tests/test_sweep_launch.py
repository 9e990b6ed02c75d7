"""experiments.sweep stopped by a signal, end to end on the synthetic data: a group of two seeds trains in a child
process (experiments.train_group); SIGTERM to the sweep, or Ctrl-C to its process group, stops both runs with their
checkpoints saved, leaves no child behind, and the same command resumes them."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, metric_lines

pytestmark = pytest.mark.slow  # end-to-end sweeps: the full tier (./launch.sh test --full)

STAGE1_EPOCHS = 30  # about 0.2 s each once compiled: time to stop the group mid-training


@pytest.fixture
def sweep_command(env, tmp_path):
    """The command of a sweep of two seeds of the tiny config (one group), rooted in tmp_path/root."""
    base, spec = tmp_path / "base.py", tmp_path / "sweep.py"
    base.write_text(
        "from tests import tiny\n\ndef get_config():\n"
        f"    config = tiny.tiny_config({str(env['source'])!r}, {str(env['data_dir'])!r})\n"
        f"    config.stage1.epochs = {STAGE1_EPOCHS}\n    return config\n"
    )
    spec.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({{'base': {str(base)!r}, 'runs': ('seed=0', 'seed=1')}})\n")
    return [sys.executable, "-m", "experiments.sweep", f"--sweep={spec}", f"--workdir_root={tmp_path / 'root'}"]


def _processes_naming(text: str) -> list[str]:
    """The command lines of the live processes that name `text` (a sweep's root: the sweep and its children)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it has exited
            continue
        if text in command and int(pid) != os.getpid():
            found.append(command)
    return found


def _has_a_line(path) -> bool:
    return path.exists() and "\n" in path.read_text()


def _stop_mid_training(env, command, root, send):
    """Start the sweep in its own process group; once each run has a metrics line (training, stage 1 far from
    done), `send(pid)`; then (its exit status, its output, the command lines of the processes it left)."""
    output = root.parent / "sweep.out"
    with open(output, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env["env"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not all(_has_a_line(root / name / "metrics.jsonl") for name in ("seed0", "seed1")):
            assert process.poll() is None, output.read_text()[-3000:]
            assert time.time() < deadline, "the group never started training"
            time.sleep(0.01)
        send(process.pid)
        process.wait(timeout=120)
        return process.returncode, output.read_text(), _processes_naming(str(root))
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing is left, if the sweep works
            os.killpg(process.pid, signal.SIGKILL)


def _assert_stopped(root, status, output, left, signal_name):
    """The sweep exited 128 + the signal, one line per run, no traceback, no child left; each run's log ends with
    the child's own last line: it saved a checkpoint mid-training (after Ctrl-C to the process group, the child's
    first stop signal is its own SIGINT or the sweep's SIGTERM, whichever the kernel delivered first)."""
    assert not left, left
    assert status == 128 + signal.Signals[signal_name].value, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for name in ("seed0", "seed1"):
        assert f"[{name}] stopped by {signal_name} before it finished; rerun the same command to resume" in output
        last = (root / name / "run.log").read_text().strip().splitlines()[-1]
        child_signals = ("SIGINT", "SIGTERM") if signal_name == "SIGINT" else (signal_name,)
        assert any(last.startswith(f"stopped: stopped by {name} in stage compressed at step ") for name in child_signals), last
        assert "checkpoint saved" in last, last
        assert len(metric_lines(str(root / name))) < STAGE1_EPOCHS


def test_sigterm_to_the_sweep_stops_its_group_which_the_same_command_resumes(env, sweep_command, tmp_path):
    """kill -TERM <sweep pid>: the sweep passes it on, waits for the group to save, exits 143; the rerun finishes."""
    root = tmp_path / "root"
    status, output, left = _stop_mid_training(env, sweep_command, root, lambda pid: os.kill(pid, signal.SIGTERM))
    _assert_stopped(root, status, output, left, "SIGTERM")
    assert "results.md" not in output and not (root / "results.md").exists()

    result = subprocess.run(sweep_command, cwd=REPO, env=env["env"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("seed0", "seed1"):
        assert "compressed: resumed at step" in (root / name / "run.log").read_text()
        assert [line["epoch"] for line in metric_lines(str(root / name))] == [*range(1, STAGE1_EPOCHS + 1), 1, 2]
        assert (root / name / "eval.json").exists() and f"| {name} | CPU" in result.stdout


def test_ctrl_c_to_the_sweeps_process_group_stops_every_run_without_a_traceback(env, sweep_command, tmp_path):
    """SIGINT to the whole group (the sweep and its child, as Ctrl-C in a terminal): the child saves once (the sweep's
    SIGTERM after its own SIGINT does not abort it) and the sweep exits 130 with one line per run."""
    root = tmp_path / "root"
    status, output, left = _stop_mid_training(env, sweep_command, root, lambda pid: os.killpg(pid, signal.SIGINT))
    _assert_stopped(root, status, output, left, "SIGINT")
