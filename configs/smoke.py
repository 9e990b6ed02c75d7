"""The whole pipeline (both stages, checkpoints, evaluation, export) on a data subset in seconds.

    python -m experiments.train --config configs/smoke.py --workdir /tmp/smoke
    python -m experiments.evaluate --workdir /tmp/smoke

Expect, on the real MNIST with seed 0: 11.15 % test error of the compressed net and 13.30 % of the
bitwise net (packed = simulated) on the first 2,000 test images: a check that everything runs, not
a result. Cost: ~12 s for experiments.train (3-5 s of it training; start-up, data and compilation
the rest) and ~5 s for experiments.evaluate, on the 2-core CPU.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.data.train_subset = 10000
    config.data.validation_size = 1000
    config.data.test_subset = 2000
    config.model.hidden_sizes = (256, 256)
    config.stage1.epochs = 4
    config.stage2.epochs = 3
    return config
