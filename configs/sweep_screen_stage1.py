"""Sweep (tuning, issue #13): short screens of stage-1 levers for the paper's model, bipolar input.

    ./launch.sh sweep configs/sweep_screen_stage1.py --noevaluate

Every run is the paper protocol (configs/default.py: sign biases, no batch norm, no augmentation)
with one change, trained 20 + 5 epochs (stage 1 + stage 2) instead of 60 + 40: a screen on the
validation split, read for the tuning log in RESULTS.md (best validation error of each stage). A
short schedule favours settings that learn fast; the chosen ones are confirmed at full length.
Cost: ~25 min per run on the 2-core CPU (one group of runs on the CPU trains them in turn).
"""

import ml_collections

from bitnet.runs import hyper

STAGE1_EPOCHS = 20
STAGE2_EPOCHS = 5
NO_DROPOUT = {"stage1.dropout_rate": 0.0, "stage1.input_dropout_rate": 0.0}
CHANGES = hyper.chain(
    [{"name": "base"}],
    [{"name": f"lr{rate}", "stage1.learning_rate": float(rate)} for rate in ("3e-3", "1e-2", "3e-4")],
    [{"name": "dropout0", **NO_DROPOUT}, {"name": "dropout0.5", "stage1.dropout_rate": 0.5, "stage1.input_dropout_rate": 0.2}],
)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(CHANGES, hyper.fixed({"stage1.epochs": STAGE1_EPOCHS, "stage2.epochs": STAGE2_EPOCHS})))
