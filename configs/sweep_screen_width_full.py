"""Sweep (tuning, issue #13 section 3): the width screen on the full training set, validation only.

    ./launch.sh sweep configs/sweep_screen_width_full.py --noevaluate

configs/sweep_screen_width.py (a 10,000-image subset) showed the 4096-wide net's stage 1 diverging
at the default learning rate (61 % validation error) and training with `layer_lr_scale=fan_in`.
This repeats it on the full 50,000 training images for 10 + 3 epochs: 1024 (the reference),
2048 with and without the scale, 4096 with it. A screen read on validation, not a result.
Cost: ~40 min on the 2-core CPU (the 4096 run ~25 min).
"""

import ml_collections

SCREEN = "stage1.epochs=10,stage2.epochs=3"
NO_SCALE = "stage1.layer_lr_scale=none,stage2.layer_lr_scale=none"  # as run: fan_in became the default after this screen
CHANGES = (
    "name=width1024,model.hidden_sizes=(1024,1024,1024)",
    f"name=width2048,model.hidden_sizes=(2048,2048,2048),{NO_SCALE}",
    "name=width2048-fan_in,model.hidden_sizes=(2048,2048,2048),stage1.layer_lr_scale=fan_in,stage2.layer_lr_scale=fan_in",
    "name=width4096-fan_in,model.hidden_sizes=(4096,4096,4096),stage1.layer_lr_scale=fan_in,stage2.layer_lr_scale=fan_in",
)


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/default.py"
    sweep.runs = tuple(f"{change},{SCREEN}" for change in CHANGES)
    return sweep
