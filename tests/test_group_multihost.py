"""A group over several processes (bitnet.training.group: jax.distributed, the run axis sharded over the devices of all
of them): two local CPU processes of two devices each (JAX's CPU collectives, gloo) train a group of four runs, one
per device, through the real entry point (experiments.train_group --distributed, in tests/multihost_group.py), against
the same group in one process with one device and the map axis. One run stops at its first epoch's end as a diverging
run does, on the second process, so the first learns it only through the processes' agreement."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from bitnet.errors import ERROR_FILE
from bitnet.input import data
from bitnet.runs import evaluate, sweep
from bitnet.training import plan
from bitnet.workdir import provenance, workdir_lock
from tests.helpers import REPO, assert_same_run, saved_steps

pytestmark = pytest.mark.slow  # three training processes at once, then two twice (about two minutes): the full tier

RUNS = [f"run{index}" for index in range(4)]
STOPPING = "run3"  # held by the second process
PROCESSES, DEVICES = 2, 2  # one run on each device
HOLDERS = {run: index * PROCESSES // len(RUNS) for index, run in enumerate(RUNS)}  # runs 0, 1 on process 0; 2, 3 on 1
WAIT_SECONDS = 400
# The states and models are bit for bit; an epoch's reported train_loss (a float32 sum of the steps' loss values,
# never used for a gradient) came out one float32 ulp apart in the bitwise stage's first epoch on an AVX-512 CPU
# (AMD EPYC, session 15; bit for bit on the AVX2 one): the two programs (sharded, lax.map) compile that scalar's
# reduction differently there (not traced further). Allowed: 2 ulps; every other field, state and array exact.
LOSS_ULPS = 2


def _sweep_file(env, folder):
    """The four runs over the tiny config on the synthetic data: each its own seed and stage-2 learning rate."""
    base, spec = folder / "base.py", folder / "sweep.py"
    base.write_text(
        "from tests import tiny\n\ndef get_config():\n"
        f"    return tiny.tiny_config({str(env['source'])!r}, {str(env['data_dir'])!r})\n"
    )
    runs = tuple(f"seed={index},stage2.learning_rate={0.0003 * (1 + index / 4)},name={run}" for index, run in enumerate(RUNS))
    spec.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({{'base': {str(base)!r}, 'runs': {runs!r}}})\n")
    return spec


def _start(env, spec, root, devices, log, *flags, fault=""):
    """The group's training in a child process that sees `devices` CPU devices, its output in `log`."""
    variables = {**env["env"], "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "BITNET_FAULT": fault}
    command = [sys.executable, "-m", "tests.multihost_group", STOPPING, f"--sweep={spec}", f"--workdir_root={root}", f"--runs={','.join(RUNS)}", "--axis=map", *flags]
    with open(log, "w") as output:
        return subprocess.Popen(command, cwd=REPO, env=variables, stdout=output, stderr=subprocess.STDOUT)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start_group(env, spec, root, fault=""):
    """The group over PROCESSES processes of DEVICES devices (`fault`: BITNET_FAULT of the second only): (processes, logs)."""
    root.mkdir(parents=True, exist_ok=True)
    address = f"localhost:{_free_port()}"
    logs = [root / f"process{index}.log" for index in range(PROCESSES)]
    processes = [
        _start(env, spec, root, DEVICES, log, "--distributed", f"--coordinator_address={address}", f"--num_processes={PROCESSES}",
               f"--process_id={index}", fault=fault if index == PROCESSES - 1 else "")
        for index, log in enumerate(logs)
    ]
    return processes, logs


def _ended(processes, logs):
    """Each process's exit status, once all have ended (all killed if one hangs past WAIT_SECONDS)."""
    try:
        return [process.wait(timeout=WAIT_SECONDS) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail("a process of the group hung:\n" + "\n".join(log.read_text()[-3000:] for log in logs))


def _last_error(log):
    return [line for line in log.read_text().splitlines() if line.startswith("error: ")][-1]


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """The group in one process and over two, trained at once: (reference root, group root, group's processes)."""
    folder = tmp_path_factory.mktemp("multihost")
    spec = _sweep_file(env, folder)
    config = sweep.run_config(str(folder / "base.py"), sweep.expand(sweep.load_sweep(str(spec)).runs)[0])
    data.load_splits(**plan.inputs(config).data_kwargs())  # prepared once, before three processes read it
    one, several = folder / "one", folder / "several"
    one.mkdir()
    reference = _start(env, spec, one, 1, one / "process.log")
    processes, logs = _start_group(env, spec, several)
    statuses = _ended([reference, *processes], [one / "process.log", *logs])
    assert statuses == [1, 1, 1], "\n".join(log.read_text()[-3000:] for log in (one / "process.log", *logs))  # 1: a run failed
    return one, several, processes


def test_a_group_over_two_processes_ends_as_in_one(trained):
    """Every run's metrics, latest and best states of both stages and binarized model as in one process, bit for bit;
    the stopped run's error line the same, known to both processes; each workdir written (locked, its provenance
    segment, its error) by the process holding the run, and readable in another process (an evaluation)."""
    one, several, processes = trained
    error = _last_error(one / "process.log")
    assert error.startswith(f"error: [{STOPPING}] compressed: the loss became non-finite at step 12 (epoch 1)"), error
    assert _last_error(several / "process1.log") == error
    assert _last_error(several / "process0.log") == f"error: [{STOPPING}] stopped on the process that holds it; its error is in its workdir's error.txt"
    for run in RUNS:
        workdir, reference = str(several / run), str(one / run)
        if run == STOPPING:
            assert (several / run / ERROR_FILE).read_text() == (one / run / ERROR_FILE).read_text() == f"{error}\n".replace(f"[{run}] ", "")
            assert not os.path.exists(os.path.join(workdir, "checkpoints", "bitwise"))
        else:
            assert_same_run(workdir, reference, loss_ulps=LOSS_ULPS)
        (segment,) = provenance.read_segments(workdir)
        assert segment["status"] == ("error" if run == STOPPING else "finished")
        assert segment["group"]["devices"] == PROCESSES * DEVICES and segment["group"]["size"] == len(RUNS)
        assert segment["group"]["process"]["index"] == HOLDERS[run] and segment["group"]["process"]["count"] == PROCESSES
        assert (several / run / "lock").read_text().startswith(f"pid {processes[HOLDERS[run]].pid} on host "), run
        assert "process" not in provenance.read_segments(reference)[0]["group"]
    held_by_second = evaluate.evaluate_workdir(str(several / "run2"))
    assert held_by_second["packed_error"] == held_by_second["bitwise_error"] == evaluate.evaluate_workdir(str(one / "run2"))["packed_error"]


def test_a_stop_asked_of_one_process_stops_both_and_the_same_commands_resume_to_the_same_end(env, trained, tmp_path):
    """A workdir of the second process's in use: both refuse to train, with one error line each. Then SIGTERM to the
    second process only, on its first epoch's last step: both save every run they hold at that epoch's end and exit
    143; the same commands then resume, each run to the uninterrupted group's end."""
    one, _, _ = trained
    (tmp_path / "sweep").mkdir()
    spec = _sweep_file(env, tmp_path / "sweep")
    root = tmp_path / "several"
    with workdir_lock.held(str(root / "run2")):
        processes, logs = _start_group(env, spec, root)
        assert _ended(processes, logs) == [1] * PROCESSES, "\n".join(log.read_text()[-3000:] for log in logs)
    assert _last_error(logs[1]).startswith(f"error: {root / 'run2'} is in use by pid {os.getpid()} ")
    assert _last_error(logs[0]) == "error: another process of this group refused to train (its error line says why); fix that and rerun the same commands"
    assert not os.path.exists(root / "run0" / "metrics.jsonl")
    processes, logs = _start_group(env, spec, root, fault="epoch_last_step:term:1")
    assert _ended(processes, logs) == [128 + signal.SIGTERM] * PROCESSES, "\n".join(log.read_text()[-3000:] for log in logs)
    assert "stopped: stopped by SIGTERM in stage compressed at step 12" in logs[1].read_text()
    assert "stopped: stopped by a stop of another process of its group in stage compressed at step 12" in logs[0].read_text()
    for run in RUNS:
        assert saved_steps(str(root / run), "compressed") == ([] if run == STOPPING else [12]), run
    processes, logs = _start_group(env, spec, root)
    assert _ended(processes, logs) == [1] * PROCESSES, "\n".join(log.read_text()[-3000:] for log in logs)
    for run in RUNS:
        workdir = str(root / run)
        assert [segment["status"] for segment in provenance.read_segments(workdir)] == ["stopped", "error" if run == STOPPING else "finished"]
        if run == STOPPING:
            assert (root / run / ERROR_FILE).read_text() == (one / run / ERROR_FILE).read_text()
        else:
            assert_same_run(workdir, str(one / run), loss_ulps=LOSS_ULPS)
