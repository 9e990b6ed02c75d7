"""A config file whose get_config() raises (tests/bad_inputs.py: the one-line error that names its line)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = SEED  # noqa: F821, the mistake under test
    return config
