"""Run every run of a sweep config, each in its own workdir, then tabulate their eval.json.

    python -m experiments.sweep --sweep configs/sweep_table1.py [--workdir_root W] [--parallel N] [--only a,b]
                                [--group | --nogroup] [--max_group_size K] [--noevaluate]

Runs that can train as one program (bitnet.training.group: the same shapes, data and epochs; they differ in
seed, learning rate, weight decay, dropout rates or lambda) train as groups of at most K runs, one
process each (experiments.train_group); the others alone (experiments.train). Then each run is
evaluated (experiments.evaluate); with --noevaluate (tuning screens, which choose by validation
only) nothing reads the test split and the table lists each stage's validation errors. These are
subprocesses, so a rerun resumes unfinished runs and skips finished ones. By default a grouped
sweep trains one group (or run) at a time, seeing every visible GPU: a group's runs are sharded
over them (bitnet.training.group.run_mesh). With --parallel N (the default without groups: the number of
local NVIDIA GPUs, or 1), N groups or runs go at once, each pinned to one GPU through
CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

from bitnet.runs import sweep
from bitnet.errors import ERROR_FILE
from experiments import cli

GROUP_ON_CPU = True  # measured: BENCHMARKS.md, "Runs in one program"
MAX_GROUP_SIZE = 16

_SWEEP = config_flags.DEFINE_config_file("sweep", None, "A sweep file: get_config() with base and runs.")
_ROOT = flags.DEFINE_string("workdir_root", None, "Parent of the run workdirs (default workdirs/<sweep name>).")
_ONLY = flags.DEFINE_list("only", None, "Run only these runs (workdir names); the table still lists every run.")
_PARALLEL = flags.DEFINE_integer(
    "parallel", None, "Runs (or groups) at once, each on one GPU (default: grouped, one at a time on every GPU; else one per GPU)."
)
_GROUP = flags.DEFINE_bool("group", None, "Train compatible runs as groups in one program (default: on with GPUs; on the CPU: GROUP_ON_CPU).")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "Evaluate each run on the test split; --noevaluate (tuning screens): train only and tabulate validation errors.")
_MAX_GROUP_SIZE = flags.DEFINE_integer("max_group_size", MAX_GROUP_SIZE, "The most runs in one group (0: no cap).")
flags.mark_flag_as_required("sweep")


def _call(name: str, command: list[str], logs: list[str], env: dict) -> int:
    """Run `command` with its output appended to every log in `logs`; its exit status."""
    print(f"[{name}] {' '.join(command)}", flush=True)
    files = [open(log, "a") for log in logs]
    try:
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            for line in process.stdout:
                for file in files:
                    file.write(line)
        return process.returncode
    finally:
        for file in files:
            file.close()


def _run_unit(runs: list[sweep.Run], root: str, base: str, sweep_file: str, slots: queue.Queue, evaluate: bool = True) -> int:
    """Train one run alone, or several as a group, then (`evaluate`) evaluate each that trained; nonzero if any failed."""
    workdirs = [os.path.join(root, run.name) for run in runs]
    slot = slots.get()
    try:
        env = {**os.environ, **slot}
        for workdir in workdirs:
            os.makedirs(workdir, exist_ok=True)
        logs = [os.path.join(workdir, "run.log") for workdir in workdirs]
        grouped = len(runs) > 1
        train = sweep.group_command(runs, sweep_file, root) if grouped else sweep.commands(runs[0], base, workdirs[0])[0]
        status = _call(",".join(run.name for run in runs), train, logs, env)
        stopped = [grouped and os.path.exists(os.path.join(workdir, ERROR_FILE)) for workdir in workdirs]  # failed alone in its group
        for run, workdir, log, alone_failed in zip(runs, workdirs, logs, stopped):
            if alone_failed or (status and not any(stopped)):
                print(f"[{run.name}] failed (exit {status}); see {log}", flush=True)
                continue
            if evaluate and _call(run.name, sweep.commands(run, base, workdir)[1], [log], env):
                print(f"[{run.name}] evaluation failed; see {log}", flush=True)
                status = status or 1
        return status
    finally:
        slots.put(slot)


def _units(runs: list[sweep.Run], base: str, grouped: bool, max_size: int) -> list[list[sweep.Run]]:
    """The groups (or single runs) the sweep trains, in sweep order."""
    if not grouped:
        return [[run] for run in runs]
    from bitnet.training import group  # late: imports JAX (no device is touched)

    from bitnet.training import plan  # late: imports JAX (no device is touched)

    keys = cli.run_cleanly(lambda: [group.group_key(plan.resolve(sweep.run_config(base, run))) for run in runs])
    return sweep.groups(runs, keys, max_size)


def main(argv):
    del argv
    spec = _SWEEP.value
    sweep_path = flags.FLAGS["sweep"].config_filename
    root = _ROOT.value or os.path.join("workdirs", os.path.splitext(os.path.basename(sweep_path))[0])
    all_runs = cli.run_cleanly(lambda: sweep.expand(spec.runs))
    runs = cli.run_cleanly(lambda: sweep.select(all_runs, _ONLY.value))
    gpus = sweep.local_gpu_count()
    grouped = _GROUP.value if _GROUP.value is not None else bool(gpus) or GROUP_ON_CPU
    units = _units(runs, spec.base, grouped, _MAX_GROUP_SIZE.value)
    environments = sweep.unit_environments(_PARALLEL.value, grouped, gpus)
    slots: queue.Queue = queue.Queue()
    for environment in environments:
        slots.put(environment)
    with concurrent.futures.ThreadPoolExecutor(len(environments)) as pool:
        statuses = list(pool.map(lambda unit: _run_unit(unit, root, spec.base, sweep_path, slots, _EVALUATE.value), units))
    names = [run.name for run in all_runs]
    table = sweep.results_table(root, names) if _EVALUATE.value else sweep.validation_table(root, names)
    with open(os.path.join(root, "results.md"), "w") as file:
        file.write(table)
    print(table)
    print(f"wrote {os.path.join(root, 'results.md')}")
    if any(statuses):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
