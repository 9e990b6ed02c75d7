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

With --launcher slurm the sweep is submitted as one SLURM job array instead (bitnet.runs.slurm: one task per
group, each trained and evaluated as above by `slurm_task`, requeued when SLURM stops it) and a dependent job
writes results.md once every task has ended; --collect writes it now from the workdirs as they are. The data
are prepared here, once, before the submission, so no two tasks prepare the cache at once.

With --slurm_nodes_per_group N each task gets N nodes (one SLURM task on each, G GPUs on each) and trains its group
over all of them: one process per node, the run axis sharded over every device (experiments.train_group
--distributed); the first node evaluates and requeues. A failed run's error line is kept in its WORKDIR/error.txt, so
the collected table shows it as the local one does.

    python -m experiments.sweep --sweep S --launcher slurm [--slurm_partition P] [--slurm_time MINUTES]
                                [--slurm_gpus_per_task G] [--slurm_cpus_per_task C] [--slurm_sbatch account=a,qos=q]
                                [--slurm_nodes_per_group N]
    python -m experiments.sweep --sweep S --collect
    python -m experiments.sweep --sweep S --list_groups     # the groups, one line each (to train them by hand)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import sys

from absl import app, flags
from ml_collections import config_flags

from bitnet.runs import children, slurm, sweep
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
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "slurm"], "Run the groups here (local) or submit them as one SLURM job array (slurm).")
_COLLECT = flags.DEFINE_bool("collect", False, "Only write results.md from the run workdirs as they are (after a SLURM array).")
_LIST_GROUPS = flags.DEFINE_bool("list_groups", False, "Only print the groups it would train, one line each: the --runs of experiments.train_group.")
_PARTITION = flags.DEFINE_string("slurm_partition", None, "SLURM partition of the tasks (default: the cluster's).")
_TIME = flags.DEFINE_integer("slurm_time", 24 * 60, "Each task's SLURM time limit in minutes (a task stopped by it is requeued and resumes).")
_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 0, "GPUs per SLURM task (one task trains one group); per node with --slurm_nodes_per_group.")
_NODES = flags.DEFINE_integer("slurm_nodes_per_group", 1, "Nodes each group's task gets: the group's runs are sharded over all their devices (jax.distributed).", lower_bound=1)
_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", 1, "CPUs per SLURM task.")
_SIGNAL = flags.DEFINE_integer("slurm_signal_seconds", slurm.SIGNAL_SECONDS, "SIGTERM each task this long before its time limit, to save and requeue.")
_SBATCH = flags.DEFINE_list("slurm_sbatch", [], "Free-form sbatch options key=value (e.g. account=abc,qos=high); they override the others.")
flags.mark_flag_as_required("sweep")


def _call(launcher: children.Launcher, name: str, command: list[str], logs: list[str], env: dict) -> children.Ending:
    """Run `command` with its output appended to every log in `logs` (SIGINT and SIGTERM to the sweep stop it too)."""
    print(f"[{name}] {' '.join(command)}", flush=True)
    return launcher.run(command, logs, env)


def _training_endings(ending: children.Ending, workdirs: list[str]) -> list[children.Ending]:
    """Each run's ending of its unit's training: in a group whose runs failed alone (each left WORKDIR/error.txt) each
    failed run has its own error line and the others trained; otherwise every run shares the unit's ending."""
    recorded = [sweep.error_line(workdir) for workdir in workdirs]
    if len(workdirs) == 1 or ending.status == 0 or ending.stopped or not any(recorded):
        return [ending] * len(workdirs)
    return [dataclasses.replace(ending, error=line) if line else children.Ending(0) for line in recorded]


def _train_command(runs: list[sweep.Run], root: str, base: str, sweep_file: str, distributed: bool) -> list[str]:
    """The command that trains a unit: a run alone (experiments.train), or a group (experiments.train_group), also a
    run alone when `distributed` (over the nodes of a SLURM task, each running this command)."""
    if len(runs) > 1 or distributed:
        return sweep.group_command(runs, sweep_file, root, distributed)
    return sweep.commands(runs[0], base, os.path.join(root, runs[0].name))[0]


def _run_unit(
    launcher: children.Launcher, runs: list[sweep.Run], root: str, base: str, sweep_file: str, slots: queue.Queue, evaluate: bool = True,
    distributed: bool = False,
) -> list[children.Ending]:
    """Train one run alone, or several as a group (`distributed`: this being the first node of a SLURM task that trains
    it over several), then (`evaluate`) evaluate each that trained: each run's own ending, a failed one's error line
    recorded in its workdir (sweep.record_error) for a table collected later."""
    workdirs = [os.path.join(root, run.name) for run in runs]
    slot = slots.get()
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **slot}  # the children's output reaches run.log as it is printed
        for workdir in workdirs:
            os.makedirs(workdir, exist_ok=True)
            sweep.record_error(workdir, None)  # an earlier try's: this try's training records its own
        logs = [os.path.join(workdir, "run.log") for workdir in workdirs]
        train = _train_command(runs, root, base, sweep_file, distributed)
        endings = _training_endings(_call(launcher, ",".join(run.name for run in runs), train, logs, env), workdirs)
        for index, (run, workdir, log) in enumerate(zip(runs, workdirs, logs)):
            if endings[index].status == 0 and evaluate:
                endings[index] = _call(launcher, run.name, sweep.commands(run, base, workdir)[1], [log], env)
                _report_failure(run.name, "evaluation", endings[index], log)
            else:
                _report_failure(run.name, "training", endings[index], log)
            if endings[index].status and not endings[index].stopped:
                sweep.record_error(workdir, endings[index].failure)
        return endings
    finally:
        slots.put(slot)


def _train_share(launcher: children.Launcher, runs: list[sweep.Run], root: str, sweep_file: str, node: int) -> None:
    """Node `node` > 0 of a SLURM task that trains a group over several nodes: the same training command as the first
    node's (each process trains the runs its devices hold), its output in each run's run.node<N>.log; the first
    node evaluates, records the errors and requeues."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for run in runs:
        os.makedirs(os.path.join(root, run.name), exist_ok=True)  # this node may start before the first
    logs = [os.path.join(root, run.name, f"run.node{node}.log") for run in runs]
    _call(launcher, ",".join(run.name for run in runs), sweep.group_command(runs, sweep_file, root, distributed=True), logs, env)


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


def _write_table(root: str, names: list[str], failures: dict[str, str], evaluate: bool) -> str:
    """Write ROOT/results.md (the test errors, or with `evaluate` off each stage's validation errors) and return it."""
    table = sweep.results_table(root, names, failures) if evaluate else sweep.validation_table(root, names, failures)
    with open(os.path.join(root, "results.md"), "w") as file:
        file.write(table)
    return table


def collect(root: str, names: list[str], evaluate: bool) -> list[str]:
    """Write and print results.md from the workdirs as they are (the SLURM array's dependent job, or --collect), a
    failed run with the error line its workdir records, as the local table shows it; return the runs that have no
    result yet."""
    table = _write_table(root, names, sweep.recorded_errors(root, names), evaluate)
    print(table)
    print(f"wrote {os.path.join(root, 'results.md')}", flush=True)
    result = "eval.json" if evaluate else "metrics.jsonl"
    return [name for name in names if not os.path.exists(os.path.join(root, name, result))]


def slurm_task(runs: list[sweep.Run], root: str, base: str, sweep_file: str, evaluate: bool, nodes: int = 1) -> dict[str, str]:
    """One task of the SLURM array: train (and evaluate) one group as the local launcher does; on SIGTERM (SLURM's
    warning before the time limit, a scancel, a preemption) pass it on, wait until the runs have saved, and requeue
    this task. Returns each failed run's error line. With `nodes` > 1 this runs on each node of the task (one SLURM
    task per node): each trains the group together with the others (experiments.train_group --distributed), the first
    (SLURM_PROCID 0) also evaluates, records the errors and requeues."""
    node = int(os.environ.get("SLURM_PROCID", "0"))
    slots: queue.Queue = queue.Queue()
    slots.put({})  # SLURM chose the GPUs this task sees (CUDA_VISIBLE_DEVICES)
    with children.stops_forwarded() as launcher:
        if node > 0:
            _train_share(launcher, runs, root, sweep_file, node)
            return {}
        endings = _run_unit(launcher, runs, root, base, sweep_file, slots, evaluate, distributed=nodes > 1)
    if launcher.stop:
        job = os.environ.get("SLURM_JOB_ID", "")
        problem = slurm.requeue(job)
        outcome = f"not requeued ({problem}); submit the same sweep again to resume" if problem else "requeued; it resumes when SLURM restarts it"
        print(f"[{','.join(run.name for run in runs)}] stopped by {launcher.stop}: job {job} {outcome}", flush=True)
    return {run.name: ending.failure for run, ending in zip(runs, endings) if ending.status and not ending.stopped}


def _prepare_data(runs: list[sweep.Run], base: str) -> None:
    """Prepare the data cache of every run's data once, here, so that no two array tasks prepare it at once."""
    from bitnet.input import data  # late: imports JAX
    from bitnet.training import plan  # late: imports JAX

    prepared: list[dict] = []
    for run in runs:
        arguments = plan.inputs(sweep.run_config(base, run)).data_kwargs()
        if arguments not in prepared:
            data.load_splits(**arguments)
            prepared.append(arguments)


def _submit(units: list[list[sweep.Run]], root: str, base: str, sweep_path: str, names: list[str]) -> None:
    """Submit the sweep's groups as one SLURM job array and its collecting job; refuse while the sweep's previous
    array is still queued or running."""
    live = slurm.live_jobs(list(slurm.recorded_jobs(root).values()))
    if live:
        cli.fail(f"{root}: its SLURM jobs {live} are still queued or running (squeue); wait for them to end, or scancel them, then submit again")
    cli.run_cleanly(lambda: _prepare_data([run for unit in units for run in unit], base))
    name = os.path.basename(os.path.abspath(root))
    parameters = cli.run_cleanly(lambda: slurm.executor_parameters(
        name, _PARTITION.value, _TIME.value, _GPUS.value, _CPUS.value, _SIGNAL.value, _SBATCH.value, _NODES.value
    ))
    os.makedirs(root, exist_ok=True)
    tasks = [(unit, root, base, sweep_path, _EVALUATE.value, _NODES.value) for unit in units]
    ids = slurm.submit(root, parameters, slurm_task, tasks, collect, (root, names, _EVALUATE.value))
    logs = os.path.join(root, slurm.LOG_FOLDER)
    nodes = f" of {_NODES.value} nodes each" if _NODES.value > 1 else ""
    print(f"submitted job array {ids['array']} ({len(units)} tasks{nodes}, one per group) and job {ids['collect']}, which writes "
          f"{os.path.join(root, 'results.md')} once they have ended; follow them with squeue -j {ids['array']},{ids['collect']}; "
          f"logs: each run's {root}/<run>/run.log, each task's {logs}/", flush=True)


def main(argv):
    del argv
    spec = _SWEEP.value
    sweep_path = flags.FLAGS["sweep"].config_filename
    root = _ROOT.value or os.path.join("workdirs", os.path.splitext(os.path.basename(sweep_path))[0])
    all_runs = cli.run_cleanly(lambda: sweep.expand(spec.runs))
    runs = cli.run_cleanly(lambda: sweep.select(all_runs, _ONLY.value))
    gpus = sweep.local_gpu_count()
    grouped = _GROUP.value if _GROUP.value is not None else bool(gpus) or GROUP_ON_CPU
    if _COLLECT.value:
        sys.exit(1 if collect(root, [run.name for run in all_runs], _EVALUATE.value) else 0)
    units = _units(runs, spec.base, grouped, _MAX_GROUP_SIZE.value)
    if _LIST_GROUPS.value:
        print("\n".join(",".join(run.name for run in unit) for unit in units))
        return
    if _LAUNCHER.value == "slurm":
        return _submit(units, root, spec.base, sweep_path, [run.name for run in all_runs])
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
    table = _write_table(root, names, failures, _EVALUATE.value)
    print(table)
    print(f"wrote {os.path.join(root, 'results.md')}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
