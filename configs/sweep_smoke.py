"""Sweep: four seeds of configs/smoke.py, a check of grouped sweeps (and their benchmark) in about a minute.

    ./launch.sh sweep configs/sweep_smoke.py                 # one group of 4 runs (the default)
    ./launch.sh sweep configs/sweep_smoke.py --nogroup       # the same 4 runs one after another

Expect: each run as configs/smoke.py trained alone with its seed, bit for bit (seed 0: 13.30 %
packed test error on the first 2,000 test images, real MNIST). Cost on the 2-core CPU: BENCHMARKS.md
("Runs in one program").
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2, 3)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/smoke.py", hyper.sweep("seed", SEEDS))
