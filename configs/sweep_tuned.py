"""Sweep: the bipolar bitwise cell with the tuned sparsity lambda = 0.5, three seeds.

    ./launch.sh sweep configs/sweep_table1.py --only bipolar-bitwise-seed0,bipolar-bitwise-seed1,bipolar-bitwise-seed2
    ./launch.sh sweep configs/sweep_tuned.py

Expect: 1.96 +- 0.10 % packed test error over the three seeds (RESULTS.md), half the weights 0.
Cost: ~30 min on the 2-core CPU (stage 2 only, ~10 min per seed).

lambda = 0.5 had the lowest validation error of the lambda ablation (configs/sweep_ablations.py,
chosen on validation only). Stage 1 reads no stage-2 field, so each seed reuses the finished stage 1
of the table sweep's run with the same seed and trains only stage 2 (the full 40 epochs).
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)
SPARSITY = 0.5


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", [
        {"name": f"bipolar-bitwise-lambda{SPARSITY}-seed{seed}", "seed": seed, "stage2.sparsity": SPARSITY,
         "stage2.stage1_workdir": f"workdirs/sweep_table1/bipolar-bitwise-seed{seed}"}
        for seed in SEEDS
    ])
