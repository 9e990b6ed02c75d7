"""Sweep (tuning, issue #13 section 3): do wide nets train with the learning rate scaled to the width?

    ./launch.sh sweep configs/sweep_screen_width.py --noevaluate

The paper protocol (configs/default.py) on a 10,000-image training subset for 5 + 5 epochs (the
validation split is the usual 10,000 held-out images): 1024, 2048 and 4096 hidden units with the
default learning rates, and 2048 and 4096 with `layer_lr_scale=fan_in` in both stages (each kernel's
update but the input layer's times 1024/fan_in: the same step in a neuron's sum at any width). A
screen read on validation for the tuning log (RESULTS.md), not a result.
Cost: ~1 h on the 2-core CPU (the 4096 runs dominate).
"""

import ml_collections

from bitnet.runs import hyper

SCREEN = {"data.train_subset": 10000, "stage1.epochs": 5, "stage2.epochs": 5}
NO_SCALE = {"stage1.layer_lr_scale": "none", "stage2.layer_lr_scale": "none"}  # as run: fan_in became the default after this screen
FAN_IN = {"stage1.layer_lr_scale": "fan_in", "stage2.layer_lr_scale": "fan_in"}
CHANGES = [
    {"name": "width1024", "model.hidden_sizes": (1024, 1024, 1024)},
    {"name": "width2048", "model.hidden_sizes": (2048, 2048, 2048), **NO_SCALE},
    {"name": "width2048-fan_in", "model.hidden_sizes": (2048, 2048, 2048), **FAN_IN},
    {"name": "width4096", "model.hidden_sizes": (4096, 4096, 4096), **NO_SCALE},
    {"name": "width4096-fan_in", "model.hidden_sizes": (4096, 4096, 4096), **FAN_IN},
]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(CHANGES, hyper.fixed(SCREEN)))
