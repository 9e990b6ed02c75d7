"""Evaluate a trained workdir on the test split: writes WORKDIR/eval.json and WORKDIR/bitwise.npz.

    python -m experiments.evaluate --workdir workdirs/default
"""

from absl import app, flags

from bitnet import evaluate
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train.")
flags.mark_flag_as_required("workdir")


def main(argv):
    del argv
    cli.run_cleanly(lambda: evaluate.evaluate_workdir(_WORKDIR.value))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
