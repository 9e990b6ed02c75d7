"""The paper's model and protocol at a long schedule (issue #13 section 1): 300 + 100 epochs, stage-1 rate 3e-4.

    python -m experiments.train --config configs/paper_long.py --workdir workdirs/paper_long
    python -m experiments.evaluate --workdir workdirs/paper_long

configs/default.py (sign biases, no batch norm, no augmentation, dropout 0.2 / 0.1) with the one
change configs/sweep_screen_long.py chose on the validation split: stage 1 at 3e-4 instead of
1e-3, over 300 epochs (1.40 % validation, against 1.98 % at 1e-3), and 100 stage-2 epochs (bitwise
1.59 % validation, against 2.17 %). Frozen from that screen alone, before any test error of it was
read. Latest state saved every 10 epochs (a resumed run repeats at most 10).
Expect: see RESULTS.md. Cost: ~1 hour on the 2-core CPU; minutes on one GPU.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.stage1.learning_rate = 3e-4
    config.stage1.epochs = 300
    config.stage2.epochs = 100
    config.stage1.checkpoint_every_epochs = 10
    config.stage2.checkpoint_every_epochs = 10
    return config
