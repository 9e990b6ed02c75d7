"""Sweep (issue #13 section 3): wide nets at the paper protocol's full schedule, with `layer_lr_scale=fan_in`.

    ./launch.sh sweep configs/sweep_width.py

configs/default.py (60 + 40 epochs, bipolar input) at 1024, 2048 and 4096 hidden units, seeds 0-2.
At 2048 and 4096 each kernel's update but the input layer's is scaled by 1024 / fan_in in both
stages (chosen on validation by configs/sweep_screen_width.py and configs/sweep_screen_width_full.py:
without it the 4096 net's stage 1 diverges). The 1024 runs are Table 1's bipolar config unchanged
(the scale is 1 there), so each machine has its own 1024 reference at the same schedule; they pool
with configs/sweep_table1.py's bipolar-bitwise runs of the same hardware. Every run saves its latest
state every 10 epochs (wide states are large; the cadence changes no result and no pool).
Cost: ~75 min per 2048 run, ~3 h per 4096 run on the 2-core CPU; GPU work.
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)
FAN_IN = {"stage1.layer_lr_scale": "fan_in", "stage2.layer_lr_scale": "fan_in"}
CADENCE = {"stage1.checkpoint_every_epochs": 10, "stage2.checkpoint_every_epochs": 10}


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.chain(
        hyper.named("width1024-seed{seed}", hyper.product(hyper.fixed(CADENCE), hyper.sweep("seed", SEEDS))),
        [{"name": f"width{width}-fan_in-seed{seed}", "model.hidden_sizes": (width,) * 3, **FAN_IN, **CADENCE, "seed": seed}
         for width in (2048, 4096) for seed in SEEDS],
    ))
