"""Sweep (tuning, issue #14 section 3): stage 2 of the batch-norm net, from one shared stage 1.

    ./launch.sh sweep configs/sweep_screen_bn.py --noevaluate          # first: its lambda0-bn run
    ./launch.sh sweep configs/sweep_screen_bn_stage2.py --noevaluate

configs/sweep_screen_bn.py found batch norm lowering stage 1's validation error (1.39 % against
1.48 % without it, 20 epochs) while its bitwise net lost more to stage 1 in 10 epochs. These runs
reuse that screen's finished `lambda0-bn` stage 1 (`stage2.stage1_workdir`) and change only
stage 2: its learning rate (3e-4 there), its length, its dropout, and lambda = 0.5 (ternary
weights, which helped the net without batch norm in the same screen); the last run drops
stage 2's dropout of the squared-hinge stage 1 (`lambda0-bn-hinge`) instead. Read on the validation split.
Cost: ~2 min per 10 stage-2 epochs on the 2-core CPU.
"""

import ml_collections

from bitnet.runs import hyper
from configs import sweep_screen_bn

STAGE1 = {"stage2.stage1_workdir": "workdirs/sweep_screen_bn/lambda0-bn"}
NO_DROPOUT = {"stage2.dropout_rate": 0.0, "stage2.input_dropout_rate": 0.0}
CHANGES = [
    {"name": "bn-s2-lr1e-3", "stage2.learning_rate": 1e-3},
    {"name": "bn-s2-lr1e-4", "stage2.learning_rate": 1e-4},
    {"name": "bn-s2-dropout0", **NO_DROPOUT},
    {"name": "bn-s2-20epochs", "stage2.epochs": 20},
    {"name": "bn-s2-lambda0.5", "stage2.sparsity": 0.5},  # ternary, as the augmented recipe: not the strictly binary record
    # the same dropout change from the squared-hinge stage 1 (sweep_screen_bn's lambda0-bn-hinge)
    {"name": "bn-hinge-s2-dropout0", **sweep_screen_bn.HINGE, "stage2.stage1_workdir": "workdirs/sweep_screen_bn/lambda0-bn-hinge", **NO_DROPOUT},
]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/augmented.py", hyper.product(  # the change last: it wins
        hyper.fixed({**sweep_screen_bn.BATCH_NORM, **sweep_screen_bn.SCREEN, **STAGE1}), CHANGES))
