"""Sweep (tuning, issue #13 section 1): round two of the long-schedule screen, bipolar input (GPU work).

    ./launch.sh sweep configs/sweep_screen_long2.py --noevaluate

configs/sweep_screen_long.py (300 + 100 epochs, validation only) found stage 1's learning rate the
lever: 3e-4 against 1e-3 gave 1.40 / 1.59 % (stage 1 / bitwise) against 1.98 / 2.17 %, and
lambda = 0.5 lowered stage 2 (1.94 against 2.17 % from the same stage 1). This round, fixed from
that table alone, asks whether a lower rate still pays (1e-4), whether the two levers add, and
what stage 2 and dropout want once stage 1 fits its training set (0.02 % training error at 3e-4).
Every change is a traced number, so the six runs train as one group.
Cost: hours per run on the 2-core CPU; minutes for the group on one GPU.
"""

import ml_collections

from configs import sweep_screen_long

LR = "stage1.learning_rate"
DROPOUT = "stage{n}.dropout_rate={hidden},stage{n}.input_dropout_rate={inputs}"
CHANGES = (
    f"name=long-lr1e-4,{LR}=1e-4",
    f"name=long-lr3e-4-lambda0.5,{LR}=3e-4,stage2.sparsity=0.5",
    f"name=long-lr1e-4-lambda0.5,{LR}=1e-4,stage2.sparsity=0.5",
    f"name=long-lr3e-4-s2lr1e-3,{LR}=3e-4,stage2.learning_rate=1e-3",
    f"name=long-lr3e-4-dropout0.1,{LR}=3e-4,"
    + ",".join(DROPOUT.format(n=n, hidden=0.1, inputs=0.05) for n in (1, 2)),
    f"name=long-lr3e-4-dropout0.3,{LR}=3e-4,"
    + ",".join(DROPOUT.format(n=n, hidden=0.3, inputs=0.1) for n in (1, 2)),
)


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/default.py"
    sweep.runs = tuple(
        f"{change},stage1.epochs={sweep_screen_long.STAGE1_EPOCHS},stage2.epochs={sweep_screen_long.STAGE2_EPOCHS},"
        f"{sweep_screen_long.CADENCE}"
        for change in CHANGES
    )
    return sweep
