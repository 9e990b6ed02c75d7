"""Sweep (issue #26 section 2): the bipolar bitwise cell of Table 1 as the final fit on all 60,000, three seeds.

    ./launch.sh sweep configs/sweep_table1_final_fit.py

configs/paper_long_final_fit.py: sweep_table1_long's bipolar bitwise recipe and epochs, retrained on all 60,000
training images with no checkpoint chosen by any split. Reported beside, never instead of, the validation-selected
rows. The three seeds train as one group.
Cost: ~3.5 hours for the group on the 2-core CPU; minutes on one GPU.
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/paper_long_final_fit.py", hyper.named("final-fit-bipolar-bitwise-seed{seed}", hyper.sweep("seed", SEEDS)))
