"""Sweep: the paper's Table 1 -- input encoding x run kind x seed, plus the float-input float baseline.

    ./launch.sh sweep configs/sweep_table1.py            # workdirs under workdirs/sweep_table1
    python -m experiments.sweep --sweep configs/sweep_table1.py --workdir_root W

Each run is configs/default.py with the overrides below; results.md aggregates their eval.json.
"""

import itertools

import ml_collections

ENCODINGS = ("bipolar", "binary", "fixed2")
RUN_KINDS = ("float", "bitwise")
SEEDS = (0,)


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/default.py"  # relative to the repository root
    runs = [
        f"encoding={encoding},run_kind={kind},seed={seed}"
        for encoding, kind, seed in itertools.product(ENCODINGS, RUN_KINDS, SEEDS)
    ]
    runs.append("encoding=float,run_kind=float,seed=0")
    sweep.runs = tuple(runs)  # each: comma-separated config overrides (dotted names allowed)
    return sweep
