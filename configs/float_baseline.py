"""Real-valued float baseline: the same MLP with relu activations and float input.

    python -m experiments.train --config configs/float_baseline.py --workdir workdirs/float
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.run_kind = "float"
    config.encoding = "float"
    return config
