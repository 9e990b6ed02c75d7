"""Benchmark grouped sweeps end to end: a sweep's runs as one group vs the same runs one after another.

    python -m experiments.benchmark_sweep [--sweep configs/sweep_smoke.py] [--repeats 3]

Each repeat runs `experiments.sweep` twice in fresh workdir roots, grouped and with --nogroup, taking
turns (process starts, compilation, data loading, checkpoints and evaluation included), and records
the 1-minute load average before each. Prints one line per sweep and the median ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_SWEEP = flags.DEFINE_string("sweep", "configs/sweep_smoke.py", "The sweep file.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats of each mode (interleaved).")
MODES = {"group": [], "alone": ["--nogroup"]}


def timed_sweep(root: str, extra: list[str]) -> float:
    start = time.time()
    command = [sys.executable, "-m", "experiments.sweep", f"--sweep={_SWEEP.value}", f"--workdir_root={root}", *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - start


def main(argv):
    del argv
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(_REPEATS.value):
            for mode, extra in MODES.items():
                load = os.getloadavg()[0]
                seconds[mode].append(timed_sweep(os.path.join(scratch, f"{mode}{repeat}"), extra))
                print(f"repeat {repeat} {mode:5s} {seconds[mode][-1]:7.1f} s  (load before: {load:.2f})", flush=True)
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    for mode, values in seconds.items():
        print(f"{mode:5s} median {medians[mode]:.1f} s  (min {min(values):.1f}, max {max(values):.1f})")
    print(f"group / alone = {medians['group'] / medians['alone']:.2f}x")


if __name__ == "__main__":
    app.run(main)
