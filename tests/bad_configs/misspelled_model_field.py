"""A config file that misspells a model field (tests/bad_inputs.py: refused in one line naming the closest field,
not trained without batch norm)."""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.batchnorm = True  # the mistake under test: batch_norm
    return config
