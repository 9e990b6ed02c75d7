"""Sweep (issue #13 sections 1 and 4): Table 1 with configs/paper_long.py, three seeds per cell.

    ./launch.sh sweep configs/sweep_table1_long.py

The paper's three inputs (bipolar, 0/1, and the 2-bit code as 0/1 bits, `fixed2_01`, which
issue #13's 2-bit screen chose over +-1 bits), each as the bitwise net and as the float net
(`run_kind=float`: stage 1's settings, relu), three seeds each, most important first. The runs of
one input and kind train as one group.
Cost: ~2.8 hours per group of three on the 2-core CPU (measured: 165 min of epoch time, ~23 s per epoch);
one GPU call for all six groups (`--parallel 6`).
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)
ENCODINGS = ("bipolar", "binary", "fixed2_01")
RUN_KINDS = ("bitwise", "float")


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/paper_long.py", hyper.named("long-{encoding}-{run_kind}-seed{seed}", hyper.product(
        hyper.sweep("run_kind", RUN_KINDS), hyper.sweep("encoding", ENCODINGS), hyper.sweep("seed", SEEDS))))
