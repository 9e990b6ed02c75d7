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

Each run's outcome is its own: a run that fails (its error line is printed and tabulated) stops no other. SIGTERM
to the sweep, or Ctrl-C to its process group, stops the runs under way (bitnet.runs.children passes it on; each
saves its checkpoint), starts no more, prints a line per unfinished run and exits 143 (SIGINT: 130); the same
command resumes. Each run's output goes to its WORKDIR/run.log as it is printed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import sys

from absl import app, flags
from ml_collections import config_flags

from bitnet.runs import children, sweep
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


def _call(launcher: children.Launcher, name: str, command: list[str], logs: list[str], env: dict) -> children.Ending:
    """Run `command` with its output appended to every log in `logs` (SIGINT and SIGTERM to the sweep stop it too)."""
    print(f"[{name}] {' '.join(command)}", flush=True)
    return launcher.run(command, logs, env)


def _error_file_line(workdir: str) -> str | None:
    """The one-line error a run that failed in training left in its workdir (bitnet.errors.ERROR_FILE), or None."""
    path = os.path.join(workdir, ERROR_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return file.read().strip() or None


def _training_endings(ending: children.Ending, workdirs: list[str]) -> list[children.Ending]:
    """Each run's ending of its unit's training: in a group whose runs failed alone (each left WORKDIR/error.txt) each
    failed run has its own error line and the others trained; otherwise every run shares the unit's ending."""
    recorded = [_error_file_line(workdir) for workdir in workdirs]
    if len(workdirs) == 1 or ending.status == 0 or ending.stopped or not any(recorded):
        return [ending] * len(workdirs)
    return [dataclasses.replace(ending, error=line) if line else children.Ending(0) for line in recorded]


def _run_unit(
    launcher: children.Launcher, runs: list[sweep.Run], root: str, base: str, sweep_file: str, slots: queue.Queue, evaluate: bool = True
) -> list[children.Ending]:
    """Train one run alone, or several as a group, then (`evaluate`) evaluate each that trained: each run's own ending."""
    workdirs = [os.path.join(root, run.name) for run in runs]
    slot = slots.get()
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **slot}  # the children's output reaches run.log as it is printed
        for workdir in workdirs:
            os.makedirs(workdir, exist_ok=True)
        logs = [os.path.join(workdir, "run.log") for workdir in workdirs]
        train = sweep.group_command(runs, sweep_file, root) if len(runs) > 1 else sweep.commands(runs[0], base, workdirs[0])[0]
        endings = _training_endings(_call(launcher, ",".join(run.name for run in runs), train, logs, env), workdirs)
        for index, (run, workdir, log) in enumerate(zip(runs, workdirs, logs)):
            if endings[index].status == 0 and evaluate:
                endings[index] = _call(launcher, run.name, sweep.commands(run, base, workdir)[1], [log], env)
                _report_failure(run.name, "evaluation", endings[index], log)
            else:
                _report_failure(run.name, "training", endings[index], log)
        return endings
    finally:
        slots.put(slot)


def _report_failure(name: str, step: str, ending: children.Ending, log: str) -> None:
    """Print a run's failed `step` (training or evaluation) with its error line; a stop is reported once all have ended."""
    if ending.status and not ending.stopped:
        print(f"[{name}] {step} failed: {ending.failure}; see {log}", flush=True)


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
    with children.stops_forwarded() as launcher, concurrent.futures.ThreadPoolExecutor(len(environments)) as pool:
        unit_endings = pool.map(lambda unit: _run_unit(launcher, unit, root, spec.base, sweep_path, slots, _EVALUATE.value), units)
        endings = {run.name: ending for unit, unit_ending in zip(units, unit_endings) for run, ending in zip(unit, unit_ending)}
    stopped = [name for name, ending in endings.items() if ending.stopped]
    for name in stopped:
        print(f"[{name}] stopped by {endings[name].stopped} before it finished; rerun the same command to resume", flush=True)
    if stopped:
        sys.exit(launcher.exit_status())
    failures = {name: ending.failure for name, ending in endings.items() if ending.status}
    names = [run.name for run in all_runs]
    table = sweep.results_table(root, names, failures) if _EVALUATE.value else sweep.validation_table(root, names, failures)
    with open(os.path.join(root, "results.md"), "w") as file:
        file.write(table)
    print(table)
    print(f"wrote {os.path.join(root, 'results.md')}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
