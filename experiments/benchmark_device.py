"""The accelerator measurement of issue #12 §6, in one call: one run new vs old, a group of K vs one run.

    python -m experiments.benchmark_device --old_tree=OLD --out=$OUT/device_benchmark.json

Everything is end to end (process start, data loading, compilation, validation and checkpoints
included), one process after another on the same machine, timed from here:
- `new_one` / `old_one`: one run of `configs/default.py` (the paper's MLP) with `--epochs` per
  stage, trained by this checkout's `experiments.train` and by the old loop's (a snapshot of the
  code before the redesign, e.g. `git archive 1d0ce69 | tar -x -C OLD`; skipped without --old_tree).
  Target on a GPU: new >= 5x faster.
- `group` / `one_sweep`: `experiments.sweep` over `--group_size` seeds of the same config (one
  group: one process, one compiled step for all runs) and over one seed alone. Target: the group's
  wall time <= 2x one run, i.e. >= 8x sweep throughput for 16 runs.
Prints one JSON line (also written to --out) with the seconds, the ratios, the device and the load.
Try it at a tiny size first on the CPU: `--epochs=1 --train_subset=2000 --hidden=64 --group_size=2`.
On the device machine MNIST must travel with the tree (e.g. the four .gz files in an untracked
folder named by BITNET_MNIST_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from bitnet.workdir import provenance
from experiments import cli

_OLD_TREE = flags.DEFINE_string("old_tree", None, "A checkout of the code before the redesign (the old loop); skipped if unset.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs of each stage.")
_GROUP_SIZE = flags.DEFINE_integer("group_size", 16, "Runs (seeds) in the group.")
_HIDDEN = flags.DEFINE_integer("hidden", 1024, "Units of each of the three hidden layers.")
_TRAIN_SUBSET = flags.DEFINE_integer("train_subset", 0, "Train on the first N images only (0: all; a tiny CPU try).")
_OUT = flags.DEFINE_string("out", None, "Write the JSON line here too.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def overrides() -> list[str]:
    """The config overrides shared by every run measured here."""
    hidden = ",".join([str(_HIDDEN.value)] * 3)
    fields = {
        "stage1.epochs": _EPOCHS.value,
        "stage2.epochs": _EPOCHS.value,
        "model.hidden_sizes": f"({hidden})",
        "data.train_subset": _TRAIN_SUBSET.value,
    }
    return [f"{key}={value}" for key, value in fields.items()]


def timed(command: list[str], cwd: str) -> float:
    """Seconds `command` took; its output goes to a log beside the workdirs, shown if it fails."""
    start = time.time()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        cli.fail(f"{' '.join(command)} failed (exit {result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    return time.time() - start


def one_run(tree: str, workdir: str) -> float:
    args = [f"--config.{item}" for item in overrides()]
    return timed([sys.executable, "-m", "experiments.train", "--config=configs/default.py", *args, f"--workdir={workdir}"], tree)


def sweep(scratch: str, size: int) -> float:
    """Seconds of `experiments.sweep` over `size` seeds of the measured config (grouped by default)."""
    path = os.path.join(scratch, f"sweep_{size}.py")
    runs = [",".join([f"name=seed{seed}", f"seed={seed}", *overrides()]) for seed in range(size)]
    with open(path, "w") as file:
        file.write(
            "import ml_collections\n\n\ndef get_config():\n    sweep = ml_collections.ConfigDict()\n"
            f"    sweep.base = 'configs/default.py'\n    sweep.runs = {tuple(runs)!r}\n    return sweep\n"
        )
    root = os.path.join(scratch, f"sweep_{size}")
    return timed([sys.executable, "-m", "experiments.sweep", f"--sweep={path}", f"--workdir_root={root}"], REPO)


def main(argv):
    del argv
    results: dict = {"devices": provenance.device_info(), "load_average_1min_at_start": os.getloadavg()[0]}
    results["settings"] = {"epochs": _EPOCHS.value, "hidden": _HIDDEN.value, "group_size": _GROUP_SIZE.value, "train_subset": _TRAIN_SUBSET.value}
    with tempfile.TemporaryDirectory() as scratch:
        seconds = {"new_one": one_run(REPO, os.path.join(scratch, "new_one"))}
        if _OLD_TREE.value:
            seconds["old_one"] = one_run(os.path.abspath(_OLD_TREE.value), os.path.join(scratch, "old_one"))
        seconds["one_sweep"] = sweep(scratch, 1)
        seconds["group"] = sweep(scratch, _GROUP_SIZE.value)
    results["seconds"] = seconds
    results["ratios"] = {
        "old_over_new_one_run": seconds["old_one"] / seconds["new_one"] if "old_one" in seconds else None,
        "group_over_one_run": seconds["group"] / seconds["one_sweep"],
        "sweep_throughput_gain": _GROUP_SIZE.value * seconds["one_sweep"] / seconds["group"],
    }
    results["load_average_1min_at_end"] = os.getloadavg()[0]
    line = json.dumps(results, sort_keys=True)
    print(line)
    if _OUT.value:
        with open(_OUT.value, "w") as file:
            file.write(line + "\n")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
