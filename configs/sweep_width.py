"""Sweep (issue #13 section 3): wide nets at the paper protocol's full schedule, with `layer_lr_scale=fan_in`.

    ./launch.sh sweep configs/sweep_width.py

configs/default.py (60 + 40 epochs, bipolar input) at 2048 and 4096 hidden units, each kernel's
update but the input layer's scaled by 1024 / fan_in in both stages (chosen on validation by
configs/sweep_screen_width.py and configs/sweep_screen_width_full.py: without it the 4096 net's
stage 1 diverges). The 1024 reference at the same schedule is Table 1's bipolar row
(configs/sweep_table1.py), where the scale changes nothing.
Cost: ~75 min per 2048 run, ~3 h per 4096 run on the 2-core CPU.
"""

import ml_collections

SEEDS = (0, 1, 2)
FAN_IN = "stage1.layer_lr_scale=fan_in,stage2.layer_lr_scale=fan_in"


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/default.py"
    sweep.runs = tuple(
        f"name=width{width}-fan_in-seed{seed},model.hidden_sizes=({width},{width},{width}),{FAN_IN},seed={seed}"
        for width in (2048, 4096)
        for seed in SEEDS
    )
    return sweep
