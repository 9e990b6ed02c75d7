"""Sweep (tuning, issue #13 section 1): the paper's model at long schedules, bipolar input (GPU work).

    ./launch.sh sweep configs/sweep_screen_long.py --noevaluate

The 20 + 5 epoch screen (configs/sweep_screen_stage1.py) could not rank the levers that pay only
over a long run; this one trains every run 300 + 100 epochs (stage 1 + stage 2, against the
protocol's 60 + 40), one change each, seed 0, validation only. Regularization is what a long
schedule needs, so the changes are dropout (BinaryNet's 0.2 / 0.5, and none), a lower stage-1
rate, and a lower stage-2 rate. Every run has one input shape, so a sweep trains them as one group.
Cost: hours per run on the 2-core CPU; minutes for the group on one GPU.
"""

import ml_collections

from bitnet.runs import hyper

STAGE1_EPOCHS = 300
STAGE2_EPOCHS = 100
CADENCE = {"stage1.checkpoint_every_epochs": 50, "stage2.checkpoint_every_epochs": 50}


def dropout(hidden: float, inputs: float) -> dict:
    """Both stages' dropout rates."""
    return {f"stage{n}.{field}": rate for n in (1, 2) for field, rate in (("dropout_rate", hidden), ("input_dropout_rate", inputs))}


CHANGES = [
    {"name": "long"},
    {"name": "long-dropout0.5", **dropout(0.5, 0.2)},
    {"name": "long-dropout0", **dropout(0.0, 0.0)},
    {"name": "long-lr3e-4", "stage1.learning_rate": 3e-4},
    {"name": "long-s2lr1e-4", "stage2.learning_rate": 1e-4},
    {"name": "long-lambda0.5", "stage2.sparsity": 0.5},
]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(
        CHANGES, hyper.fixed({"stage1.epochs": STAGE1_EPOCHS, "stage2.epochs": STAGE2_EPOCHS, **CADENCE})))
