"""experiments.sweep --launcher slurm against a real single-node SLURM (tests/slurm/setup.sh starts it; .ci/run calls
it): a sweep of two groups runs as one job array, its dependent job writes the same table and the same models as the
local launcher; a task signalled mid-training saves, requeues itself and resumes to the same model as an uninterrupted
run, and the sweep cannot be submitted again while its array is queued or running. Without SLURM these tests skip
with one line, except under CI=true, where they fail: CI must start it."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, assert_same_run, metric_lines

pytestmark = pytest.mark.slow  # end-to-end sweeps: the full tier (./launch.sh test --full)

STAGE1_EPOCHS = 30  # for the requeue test: time to signal the group mid-training
WAIT_SECONDS = 600


def _slurm_problem() -> str | None:
    """Why no SLURM node takes jobs here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "slurm is not installed (run tests/slurm/setup.sh as root)"
    listing = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    states = listing.stdout.split()
    if listing.returncode or not {"idle", "mixed", "allocated"} & set(states):
        return f"no SLURM node is up (sinfo: {(listing.stderr.strip() or ' '.join(states) or 'no nodes')[:200]}); run tests/slurm/setup.sh as root"
    return None


@pytest.fixture
def slurm_up(tmp_path):
    """SLURM is up (else skip, or under CI=true fail, with one line); the jobs a test leaves are cancelled after it."""
    problem = _slurm_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI must start SLURM: {problem}", pytrace=False)
    if problem:
        pytest.skip(problem)
    yield
    for path in tmp_path.rglob("slurm_jobs.json"):
        subprocess.run(["scancel", *json.loads(path.read_text()).values()], capture_output=True)


def _sweep_file(env, folder, runs, stage1_epochs=2):
    """A sweep of `runs` over the tiny config on the synthetic data, written into `folder`."""
    folder.mkdir(exist_ok=True)
    base, spec = folder / "base.py", folder / "sweep.py"
    base.write_text(
        "from tests import tiny\n\ndef get_config():\n"
        f"    config = tiny.tiny_config({str(env['source'])!r}, {str(env['data_dir'])!r})\n"
        f"    config.stage1.epochs = {stage1_epochs}\n    return config\n"
    )
    spec.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({{'base': {str(base)!r}, 'runs': {tuple(runs)!r}}})\n")
    return spec


def _sweep(env, spec, root, *flags, timeout=WAIT_SECONDS):
    command = [sys.executable, "-m", "experiments.sweep", f"--sweep={spec}", f"--workdir_root={root}", *flags]
    return subprocess.run(command, cwd=REPO, env=env["env"], capture_output=True, text=True, timeout=timeout)


def _jobs(root):
    with open(root / "slurm_jobs.json") as file:
        return json.load(file)


def _live(ids):
    listing = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)], capture_output=True, text=True)
    return [line.split() for line in listing.stdout.splitlines() if line.strip()]


def _wait_until_ended(root, release=False):
    """Wait until the sweep's array and collecting job have left the queue; with `release`, start a requeued task at
    once (`scontrol update StartTime=now`) instead of after SLURM's requeue delay."""
    ids = list(_jobs(root).values())
    deadline = time.time() + WAIT_SECONDS
    while live := _live(ids):
        assert time.time() < deadline, f"SLURM jobs still queued or running: {live}"
        if release:
            for job, state in live:
                if state == "PENDING":  # a requeued task, or the collecting job (which still waits for the array)
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def _without_timing(table: str) -> str:
    return re.sub(r"\d+\.\d min", "T min", table)


def test_a_sweep_of_two_groups_as_a_job_array_ends_as_the_local_sweep(env, slurm_up, tmp_path):
    """Four seeds in groups of two: a job array of two tasks, then the collecting job; the table and every model
    match the local launcher's (timing aside)."""
    spec = _sweep_file(env, tmp_path, [f"seed={seed}" for seed in range(4)])
    root, local_root = tmp_path / "slurm" / "sweep", tmp_path / "local" / "sweep"  # one name: the table shows it
    submitted = _sweep(env, spec, root, "--launcher=slurm", "--max_group_size=2", timeout=300)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "submitted job array" in submitted.stdout and "(2 tasks, one per group)" in submitted.stdout, submitted.stdout
    local = _sweep(env, spec, local_root, "--max_group_size=2")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    _wait_until_ended(root)
    for name in ("seed0", "seed1", "seed2", "seed3"):
        assert_same_run(str(root / name), str(local_root / name))
    task_logs = "".join(path.read_text() for path in (root / "slurm").glob("*_0_log.out"))
    assert task_logs.count("-m experiments.train_group") == 2 and task_logs.count("-m experiments.evaluate") == 4, task_logs[-3000:]
    table = (root / "results.md").read_text()
    assert _without_timing(table) == _without_timing((local_root / "results.md").read_text())
    collected = _sweep(env, spec, root, "--collect", timeout=300)
    assert collected.returncode == 0 and (root / "results.md").read_text() == table, collected.stderr[-3000:]


def test_a_task_signalled_mid_training_requeues_and_resumes_to_the_uninterrupted_model(env, slurm_up, tmp_path):
    """SIGTERM to the task's processes (what SLURM sends before the time limit, and on a preemption): the group
    saves, the task requeues itself, and resumes; meanwhile the sweep cannot be submitted again."""
    spec = _sweep_file(env, tmp_path, ["seed=0", "seed=1"], STAGE1_EPOCHS)
    root, local_root = tmp_path / "slurm" / "sweep", tmp_path / "local" / "sweep"  # one name: the table shows it
    submitted = _sweep(env, spec, root, "--launcher=slurm", timeout=300)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    array = _jobs(root)["array"]
    deadline = time.time() + WAIT_SECONDS
    while not all((root / name / "metrics.jsonl").exists() and metric_lines(str(root / name)) for name in ("seed0", "seed1")):
        assert time.time() < deadline and _live([array]), "the task never started training"
        time.sleep(0.05)
    subprocess.run(["scancel", "--signal=TERM", array], check=True)  # every process of the task, as SLURM's own warning

    again = _sweep(env, spec, root, "--launcher=slurm", timeout=300)
    assert again.returncode == 1 and "are still queued or running (squeue)" in again.stderr, again.stdout + again.stderr
    assert again.stderr.startswith("error: ") and again.stderr.count("\n") == 1, again.stderr

    local = _sweep(env, spec, local_root)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    _wait_until_ended(root, release=True)
    for name in ("seed0", "seed1"):
        log = (root / name / "run.log").read_text()
        assert "stopped: stopped by SIGTERM in stage compressed" in log and "compressed: resumed at step" in log, log[-3000:]
        assert_same_run(str(root / name), str(local_root / name))
    task_logs = "".join(path.read_text() for path in (root / "slurm").glob("*_0_log.out"))
    assert "requeued; it resumes when SLURM restarts it" in task_logs, task_logs[-3000:]
    assert _without_timing((root / "results.md").read_text()) == _without_timing((local_root / "results.md").read_text())
