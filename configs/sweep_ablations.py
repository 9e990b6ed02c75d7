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

from bitnet.runs import hyper

STAGE1 = "workdirs/sweep_table1/bipolar-bitwise-seed0"
STAGE2_EPOCHS = 10
ABLATIONS = hyper.chain(
    hyper.named("reference", hyper.fixed({"stage2.sparsity": 0.0})),
    hyper.named("lambda{sparsity}", hyper.sweep("stage2.sparsity", (0.1, 0.25, 0.5, 0.75))),  # 0.75: beyond the grid, where the trend turns
    hyper.named("no-compression", hyper.fixed({"stage2.init": "random"})),
    hyper.named("ste-{surrogate}", hyper.sweep("stage2.surrogate", ("identity", "tanh"))),
)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(
        ABLATIONS, hyper.fixed({"stage2.epochs": STAGE2_EPOCHS, "stage2.stage1_workdir": STAGE1})))
