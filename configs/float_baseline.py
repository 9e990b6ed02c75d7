"""Real-valued float baseline: the same MLP with relu activations and float input.

    python -m experiments.train --config configs/float_baseline.py --workdir workdirs/float
    python -m experiments.evaluate --workdir workdirs/float

Expect: 1.43 % test error (float-float-seed0 in RESULTS.md). Cost: ~8 min on the 2-core CPU
(60 epochs).
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.run_kind = "float"
    config.encoding = "float"
    return config
