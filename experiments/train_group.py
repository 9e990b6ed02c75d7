"""Train some runs of a sweep as one group: one process, one compiled program for all (bitnet.training.train.train_runs).

    python -m experiments.train_group --sweep configs/sweep_table1.py --workdir_root W --runs a,b,c

Each run trains in W/<run> as `experiments.train` would train it alone (rerun to resume); a run that
fails writes its one-line error to W/<run>/error.txt and the others train on. Exit status 1 if any failed.

With --distributed the group trains over several processes (hosts), its run axis sharded over all their devices
(bitnet.training.group); run the same command in each. Under SLURM (one task per node) or on a TPU VM slice JAX
finds the processes itself; elsewhere name them:

    python -m experiments.train_group ... --distributed --coordinator_address HOST0:PORT --num_processes N --process_id I
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from bitnet.training import group, train
from bitnet.runs import sweep
from experiments import cli

_SWEEP = config_flags.DEFINE_config_file("sweep", None, "A sweep file: get_config() with base and runs.")
_ROOT = flags.DEFINE_string("workdir_root", None, "Parent of the run workdirs.")
_RUNS = flags.DEFINE_list("runs", None, "The runs (workdir names) of the group.")
_AXIS = flags.DEFINE_enum("axis", None, list(group.AXES), "How the runs share the program (default: map on the CPU, vmap on accelerators).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a differing config.json in each run's workdir (as experiments.train).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Train the group over several processes, each running this command (jax.distributed).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --distributed outside SLURM and TPU VMs: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed outside SLURM and TPU VMs: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed outside SLURM and TPU VMs: this process's number, 0 to N-1.")
flags.mark_flags_as_required(["sweep", "workdir_root", "runs"])


def main(argv):
    del argv
    spec = _SWEEP.value
    runs = cli.run_cleanly(lambda: sweep.select(sweep.expand(spec.runs), _RUNS.value))
    configs = cli.run_cleanly(lambda: [sweep.run_config(spec.base, run) for run in runs])
    workdirs = [os.path.join(_ROOT.value, run.name) for run in runs]
    if _DISTRIBUTED.value:
        group.join_processes(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    outcomes = cli.run_cleanly(lambda: train.train_runs(configs, workdirs, overwrite=_OVERWRITE.value, axis=_AXIS.value))
    for run, outcome in zip(runs, outcomes):
        if outcome.error is not None:
            print(f"error: [{run.name}] {outcome.error}", file=sys.stderr)
    if any(outcome.error for outcome in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
