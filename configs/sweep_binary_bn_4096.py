"""Sweep (issue #14 section 3): configs/binary_bn.py at 3 x 4096, the width of BinaryNet's 0.96 %.

    ./launch.sh sweep configs/sweep_binary_bn_4096.py

The frozen 1024 config (0/1 input, binary weights, batch norm, no dropout, 100 + 60 epochs on
1-pixel shifts) with 4096 hidden units and each kernel's update but the input layer's scaled by
1024 / fan_in in both stages (the width rule of configs/sweep_width.py, so a neuron's sum moves as
much per step at any width). Latest state saved every 20 epochs (a 4096 state is ~0.45 GB).
Cost: GPU work (~37M weights; hours per epoch-hundred on the 2-core CPU).
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)
WIDE = {"model.hidden_sizes": (4096, 4096, 4096), "stage1.layer_lr_scale": "fan_in", "stage2.layer_lr_scale": "fan_in"}
CADENCE = {"stage1.checkpoint_every_epochs": 20, "stage2.checkpoint_every_epochs": 20}


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/binary_bn.py", hyper.named(
        "binary_bn-4096-seed{seed}", hyper.product(hyper.fixed({**WIDE, **CADENCE}), hyper.sweep("seed", SEEDS))))
