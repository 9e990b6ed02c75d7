"""A config file with a syntax error (tests/bad_inputs.py: the one-line error that names its line)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
    return config
