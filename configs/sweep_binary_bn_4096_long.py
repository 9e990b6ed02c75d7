"""Sweep (issue #14 section 3): configs/sweep_binary_bn_4096.py with a 150-epoch stage 2 (GPU work).

    ./launch.sh sweep configs/sweep_binary_bn_4096.py
    ./launch.sh sweep configs/sweep_binary_bn_4096_long.py

At 3 x 1024 a 150-epoch stage 2 (configs/sweep_binary_bn_long.py) lowered every seed against 60
epochs (1.31 -> 1.15 % over three seeds). This sweep, fixed before any of its runs, asks the same
at 3 x 4096: stage 2 for 150 epochs (cosine over the stage) from the finished stage 1 of
configs/sweep_binary_bn_4096.py's run with the same seed (stage 1 reads no stage-2 field). Which of
the two stage-2 lengths is the 4096 record is chosen by the mean validation error over the seeds.
Cost: GPU work (a group of three: minutes on one H100/H200).
"""

import ml_collections

from bitnet.runs import hyper
from configs import sweep_binary_bn_4096

SEEDS = sweep_binary_bn_4096.SEEDS
STAGE2_EPOCHS = 150


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/binary_bn.py", [
        {"name": f"binary_bn-4096-long-seed{seed}", **sweep_binary_bn_4096.WIDE, **sweep_binary_bn_4096.CADENCE, "seed": seed,
         "stage2.epochs": STAGE2_EPOCHS, "stage2.stage1_workdir": f"workdirs/sweep_binary_bn_4096/binary_bn-4096-seed{seed}"}
        for seed in SEEDS
    ])
