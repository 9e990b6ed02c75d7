"""Sweep (issue #14 section 3): three seeds of configs/binary_bn.py, the fully binary threshold-neuron net.

    ./launch.sh sweep configs/sweep_binary_bn.py

Cost: ~30 min per run on the 2-core CPU.
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/binary_bn.py", hyper.named("binary_bn-seed{seed}", hyper.sweep("seed", SEEDS)))
