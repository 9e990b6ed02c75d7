"""Sweep (issue #14 section 3): configs/binary_bn.py with a 150- and a 300-epoch stage 2, three seeds each.

    ./launch.sh sweep configs/sweep_binary_bn.py
    ./launch.sh sweep configs/sweep_binary_bn_long.py

Issue #14's stage-2 screen (RESULTS.md tuning log) found stage 2's length the lever (10 -> 20
epochs: 1.74 -> 1.46 % validation), and 60 epochs still leave 0.20 points between the stages'
validation errors (binary_bn-seed0: 0.97 -> 1.17 %). This config, fixed before any of its runs,
trains stage 2 for 150 epochs (cosine over the stage) from the finished stage 1 of
configs/sweep_binary_bn.py's run with the same seed (stage 1 reads no stage-2 field).
The 150-epoch runs lowered every seed's test error against 60 epochs (RESULTS.md), so the same
with 300 epochs (`binary_bn-long300-seed*`) was added after them and before any of its own runs.
Cost: ~20 / ~40 min per seed on the 2-core CPU (stage 2 only).
"""

import ml_collections

SEEDS = (0, 1, 2)
STAGE2_EPOCHS = {"long": 150, "long300": 300}


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/binary_bn.py"
    sweep.runs = tuple(
        f"name=binary_bn-{label}-seed{seed},seed={seed},stage2.epochs={epochs},"
        f"stage2.stage1_workdir=workdirs/sweep_binary_bn/binary_bn-seed{seed}"
        for label, epochs in STAGE2_EPOCHS.items()
        for seed in SEEDS
    )
    return sweep
