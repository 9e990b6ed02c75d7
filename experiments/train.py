"""Train a bitnet config in a workdir (rerun the same command to resume).

    python -m experiments.train --config configs/default.py --workdir workdirs/default
    python -m experiments.train --config configs/default.py --config.encoding=fixed2 --workdir W
"""

from absl import app, flags
from ml_collections import config_flags

from bitnet.training import train
from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a get_config() file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics, checkpoints.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a differing config.json in the workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    cli.run_cleanly(lambda: train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
