"""Sweep (tuning, issue #13 section 3): the width screen on the full training set, validation only.

    ./launch.sh sweep configs/sweep_screen_width_full.py --noevaluate

configs/sweep_screen_width.py (a 10,000-image subset) showed the 4096-wide net's stage 1 diverging
at the default learning rate (61 % validation error) and training with `layer_lr_scale=fan_in`.
This repeats it on the full 50,000 training images for 10 + 3 epochs: 1024 (the reference),
2048 with and without the scale, 4096 with it. A screen read on validation, not a result.
Cost: ~40 min on the 2-core CPU (the 4096 run ~25 min).
"""

import ml_collections

from bitnet.runs import hyper
from configs import sweep_screen_width

SCREEN = {"stage1.epochs": 10, "stage2.epochs": 3}
CHANGES = [change for change in sweep_screen_width.CHANGES if change["name"] != "width4096"]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(CHANGES, hyper.fixed(SCREEN)))
