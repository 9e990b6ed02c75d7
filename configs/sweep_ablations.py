"""Sweep: stage-2 ablations of the bipolar bitwise net (sparsity lambda, weight compression, STE).

    ./launch.sh sweep configs/sweep_table1.py       # first: provides the shared stage 1
    ./launch.sh sweep configs/sweep_ablations.py

Expect (packed test error, RESULTS.md): reference 2.24 %, lambda = 0.5 2.01 % (the lowest
validation error), no weight compression 3.73 %, identity STE 4.19 %, tanh STE 2.25 %.
Cost: ~17 min on the 2-core CPU for the 8 runs (stage 2 only, 1.4-2.7 min each).

Every run shares the stage 1 of workdirs/sweep_table1/bipolar-bitwise-seed0 (stage 1 reads no
stage-2 field, so this is exact) and trains stage 2 for STAGE2_EPOCHS, the lambda = 0 / hard-tanh
reference included, so the runs differ only in the ablated field.
"""

import ml_collections

STAGE1 = "workdirs/sweep_table1/bipolar-bitwise-seed0"
STAGE2_EPOCHS = 10
ABLATIONS = (
    "name=reference,stage2.sparsity=0.0",
    "name=lambda0.1,stage2.sparsity=0.1",
    "name=lambda0.25,stage2.sparsity=0.25",
    "name=lambda0.5,stage2.sparsity=0.5",
    "name=lambda0.75,stage2.sparsity=0.75",  # beyond the grid: where the trend turns
    "name=no-compression,stage2.init=random",
    "name=ste-identity,stage2.surrogate=identity",
    "name=ste-tanh,stage2.surrogate=tanh",
)


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/default.py"
    sweep.runs = tuple(
        f"{ablation},stage2.epochs={STAGE2_EPOCHS},stage2.stage1_workdir={STAGE1}" for ablation in ABLATIONS
    )
    return sweep
