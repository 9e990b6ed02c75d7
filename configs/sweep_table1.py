"""Sweep: the paper's Table 1 -- input encoding x run kind, plus the float-input float baseline,
two more seeds of the bipolar bitwise cell, and the 2-bit input as a thermometer code (thermo2:
one bit plane per threshold, so +-1 weights can weigh the levels correctly; see bitnet/core/encodings.py).
Runs go in this order, most important first.

    ./launch.sh sweep configs/sweep_table1.py     # workdirs under workdirs/sweep_table1, then results.md

Expect (packed bitwise / float test error, RESULTS.md): bipolar 2.05 +- 0.09 % (3 seeds) / 1.49 %,
0/1 1.87 % / 1.43 %, fixed2 2.84 % / 1.61 %, thermo2 3.74 % / 1.64 %, float input 1.43 %.
Cost: ~3 hours on the 2-core CPU for the 11 runs (8-26 min each).

Each run is configs/default.py with the overrides below; results.md aggregates their eval.json
(mean +- std over seeds per setting). Model selection uses the validation split only.
"""

import ml_collections

from bitnet.runs import hyper

ENCODINGS = ("bipolar", "binary", "fixed2")
RUN_KINDS = ("bitwise", "float")
EXTRA_SEEDS = (1, 2)  # for the bipolar bitwise cell
EXTRA_ENCODINGS = ("thermo2",)  # 2-bit input, our alternative to fixed2


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.chain(  # names join the values: bipolar-bitwise-seed0
        [{"encoding": encoding, "run_kind": kind, "seed": 0} for kind in RUN_KINDS for encoding in ENCODINGS],
        [{"encoding": "float", "run_kind": "float", "seed": 0}],
        [{"encoding": "bipolar", "run_kind": "bitwise", "seed": seed} for seed in EXTRA_SEEDS],
        [{"encoding": encoding, "run_kind": kind, "seed": 0} for encoding in EXTRA_ENCODINGS for kind in RUN_KINDS],
    ))
