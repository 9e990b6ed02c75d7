"""A config file that misspells a stage field (tests/bad_inputs.py: refused in one line naming the closest field,
not trained at the default learning rate)."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.stage1.learnig_rate = 0.5  # the mistake under test: learning_rate
    return config
