"""Sweep (tuning, issue #14 section 3): batch norm (threshold neurons) in the augmented 0/1-input recipe.

    ./launch.sh sweep configs/sweep_screen_bn.py --noevaluate

configs/augmented.py with 0/1 input (`encoding=binary`, bitnet's best fully binary net so far) at a
screen length of 20 + 10 epochs, one change per run: strictly binary weights (lambda = 0, which the
record of issue #14 asks for; the augmented recipe's lambda = 0.5 is ternary), then batch norm on
every hidden layer (exported as threshold neurons, bitnet-packed-v2), then BinaryNet's squared
hinge loss in both stages. Read on the validation split (the tuning log in RESULTS.md).
Cost: ~5 min per run alone on the 2-core CPU.
"""

import ml_collections

from bitnet.runs import hyper

SCREEN = {"encoding": "binary", "stage1.epochs": 20, "stage2.epochs": 10}
BATCH_NORM = {"stage2.sparsity": 0.0, "model.batch_norm": True}
HINGE = {"stage1.loss": "squared_hinge", "stage2.loss": "squared_hinge"}
CHANGES = [
    {"name": "lambda0.5"},
    {"name": "lambda0", "stage2.sparsity": 0.0},
    {"name": "lambda0-bn", **BATCH_NORM},
    {"name": "lambda0-bn-hinge", **BATCH_NORM, **HINGE},
]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/augmented.py", hyper.product(CHANGES, hyper.fixed(SCREEN)))
