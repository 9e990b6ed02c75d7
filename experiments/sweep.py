"""Run every run of a sweep config, each in its own workdir, then tabulate their eval.json.

    python -m experiments.sweep --sweep configs/sweep_table1.py [--workdir_root W] [--parallel N] [--only a,b]

Runs are subprocesses of experiments.train then experiments.evaluate, so a rerun resumes
unfinished runs and skips finished ones. With N > 1 (default: the number of local NVIDIA GPUs, or
1), N runs go at once, each pinned to one GPU through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

from bitnet import sweep
from experiments import cli

_SWEEP = config_flags.DEFINE_config_file("sweep", None, "A sweep file: get_config() with base and runs.")
_ROOT = flags.DEFINE_string("workdir_root", None, "Parent of the run workdirs (default workdirs/<sweep name>).")
_ONLY = flags.DEFINE_list("only", None, "Run only these runs (workdir names); the table still lists every run.")
_PARALLEL = flags.DEFINE_integer("parallel", None, "Runs at once (default: number of local GPUs, at least 1).")
flags.mark_flag_as_required("sweep")


def _run_one(run: sweep.Run, root: str, base: str, slots: queue.Queue) -> int:
    workdir = os.path.join(root, run.name)
    slot = slots.get()
    try:
        env = {**os.environ, **slot}
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "run.log"), "a") as log:
            for command in sweep.commands(run, base, workdir):
                print(f"[{run.name}] {' '.join(command)}", flush=True)
                status = subprocess.call(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                if status:
                    print(f"[{run.name}] failed (exit {status}); see {workdir}/run.log", flush=True)
                    return status
        return 0
    finally:
        slots.put(slot)


def main(argv):
    del argv
    spec = _SWEEP.value
    sweep_path = flags.FLAGS["sweep"].config_filename
    root = _ROOT.value or os.path.join("workdirs", os.path.splitext(os.path.basename(sweep_path))[0])
    all_runs = cli.run_cleanly(lambda: sweep.expand(spec.runs))
    runs = cli.run_cleanly(lambda: sweep.select(all_runs, _ONLY.value))
    gpus = sweep.local_gpu_count()
    parallel = _PARALLEL.value or max(gpus, 1)
    slots: queue.Queue = queue.Queue()
    for environment in sweep.device_environments(parallel, gpus):
        slots.put(environment)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        statuses = list(pool.map(lambda run: _run_one(run, root, spec.base, slots), runs))
    table = sweep.results_table(root, [run.name for run in all_runs])
    with open(os.path.join(root, "results.md"), "w") as file:
        file.write(table)
    print(table)
    print(f"wrote {os.path.join(root, 'results.md')}")
    if any(statuses):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
