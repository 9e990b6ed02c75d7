"""The config a workdir was trained with (its config.json), to resume or finish it without its config file.

    python -m experiments.train --config=configs/workdir.py:WORKDIR --workdir=WORKDIR
"""

import ml_collections

from bitnet.training import configuration


def get_config(workdir: str) -> ml_collections.ConfigDict:
    return configuration.read_config(workdir)
