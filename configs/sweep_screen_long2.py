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

from bitnet.runs import hyper
from configs import sweep_screen_long

LR = "stage1.learning_rate"
CHANGES = [
    {"name": "long-lr1e-4", LR: 1e-4},
    {"name": "long-lr3e-4-lambda0.5", LR: 3e-4, "stage2.sparsity": 0.5},
    {"name": "long-lr1e-4-lambda0.5", LR: 1e-4, "stage2.sparsity": 0.5},
    {"name": "long-lr3e-4-s2lr1e-3", LR: 3e-4, "stage2.learning_rate": 1e-3},
    {"name": "long-lr3e-4-dropout0.1", LR: 3e-4, **sweep_screen_long.dropout(0.1, 0.05)},
    {"name": "long-lr3e-4-dropout0.3", LR: 3e-4, **sweep_screen_long.dropout(0.3, 0.1)},
]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(CHANGES, hyper.fixed(
        {"stage1.epochs": sweep_screen_long.STAGE1_EPOCHS, "stage2.epochs": sweep_screen_long.STAGE2_EPOCHS, **sweep_screen_long.CADENCE})))
