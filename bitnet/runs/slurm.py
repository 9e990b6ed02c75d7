"""A sweep as one SLURM job array (submitit): one array task per run group, then a dependent job that tabulates.

Each task trains and evaluates its group as the local launcher does (experiments.sweep), in the same workdirs, so
both launchers resume each other's runs; a task may have several nodes, over which its group trains as one. SLURM sends the task SIGTERM `signal_seconds` before its time limit
(`--signal=TERM@N`, to every process of the task's step, the training included) and on a scancel; the task's
wrapper passes it on as well (bitnet.runs.children), waits until the training has saved, and requeues the task
(`scontrol requeue`), which resumes when SLURM starts it again. The array's job ids are kept in ROOT/JOB_FILE, so
a second submission of the same sweep is refused while the first is still queued or running (`squeue`; a file
lock would hold on one node only, on NFS or Lustre).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Callable, Sequence

JOB_FILE = "slurm_jobs.json"
LOG_FOLDER = "slurm"  # ROOT/slurm/: submitit's pickles and each task's stdout and stderr
SIGNAL_SECONDS = 120


def executor_parameters(
    name: str, partition: str | None, minutes: int, gpus: int, cpus: int, signal_seconds: int, extra: Sequence[str] = (), nodes: int = 1,
) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters of a sweep's tasks: `extra` are free-form sbatch options "key=value" (e.g.
    "account=abc", "qos=high"), which override the others. The signal is SIGTERM, the trainer's own stop signal, so
    the training saves on the signal SLURM sends it as on the one its wrapper passes on. A group over `nodes` nodes is
    one array task of that many nodes, one SLURM task (one process, all its GPUs) on each."""
    extra_options = dict(_option(item) for item in extra)
    parameters = {
        "job_name": name,
        "time": minutes,
        "nodes": nodes,
        "cpus_per_task": cpus,
        "ntasks_per_node": 1,
        "signal_delay_s": signal_seconds,
        "additional_parameters": {"requeue": True, "signal": f"TERM@{signal_seconds}", **extra_options},
    }
    if gpus:
        parameters["gpus_per_task"] = gpus
    if partition:
        parameters["partition"] = partition
    return parameters


def _option(item: str) -> tuple[str, Any]:
    """One free-form sbatch option "key=value" ("key" alone: a flag) as submitit's additional_parameters item."""
    key, sep, value = item.partition("=")
    if not key.strip():
        raise ValueError(f"--slurm_sbatch {item!r}: not an sbatch option key=value (e.g. account=abc)")
    return key.strip().lstrip("-").replace("-", "_"), value.strip() if sep else True


def submit(
    root: str, parameters: dict[str, Any], task: Callable, task_arguments: Sequence[tuple], collect: Callable, collect_arguments: tuple
) -> dict[str, str]:
    """Submit `task(*arguments)` for each item of `task_arguments` as one job array, then `collect(*collect_arguments)`
    as a job that starts once every array task has ended however it ended (afterany); record both ids in ROOT/JOB_FILE
    and return them."""
    import submitit  # late: only the SLURM launcher needs it

    executor = submitit.SlurmExecutor(folder=os.path.join(root, LOG_FOLDER))
    executor.update_parameters(**parameters)
    array = executor.map_array(task, *zip(*task_arguments))[0].job_id.split("_")[0]
    collector = submitit.SlurmExecutor(folder=os.path.join(root, LOG_FOLDER))
    collector.update_parameters(**collect_parameters(parameters, array))
    ids = {"array": array, "collect": collector.submit(collect, *collect_arguments).job_id}
    with open(os.path.join(root, JOB_FILE), "w") as file:
        json.dump(ids, file)
    return ids


def collect_parameters(parameters: dict[str, Any], array: str) -> dict[str, Any]:
    """The collecting job's parameters: the tasks' but on one node, without GPUs, requeue or signal, after the array `array`."""
    options = {key: value for key, value in parameters["additional_parameters"].items() if key not in ("requeue", "signal")}
    kept = {key: value for key, value in parameters.items() if key != "gpus_per_task"}
    return {**kept, "nodes": 1, "cpus_per_task": 1, "dependency": f"afterany:{array}", "additional_parameters": options}


def recorded_jobs(root: str) -> dict[str, str]:
    """The job ids of the sweep's last submission (ROOT/JOB_FILE), or {} if it was never submitted."""
    path = os.path.join(root, JOB_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def live_jobs(ids: Sequence[str]) -> list[str]:
    """The jobs (array tasks included) among `ids` that squeue still lists as queued or running."""
    if not ids:
        return []
    listing = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)], capture_output=True, text=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]


def requeue(job_id: str) -> str | None:
    """Put this task back in the queue (`scontrol requeue`); SLURM resumes it later. None, or why it could not be
    (a job being cancelled cannot be requeued)."""
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    return None if result.returncode == 0 else (result.stderr.strip() or f"scontrol exit status {result.returncode}")
