"""Print the summary table (sizes, memory, ops) of an exported bitnet-packed-v1 or -v2 model.

    python -m experiments.summary --workdir workdirs/default      # reads WORKDIR/bitwise.npz
    python -m experiments.summary --npz path/to/model.npz
"""

import os

from absl import app, flags

from bitnet.deploy import export, summary
from experiments import cli

_NPZ = flags.DEFINE_string("npz", None, "A bitnet-packed-v1 or -v2 .npz file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir evaluated by experiments.evaluate (uses WORKDIR/bitwise.npz).")
flags.mark_flags_as_mutual_exclusive(["npz", "workdir"], required=True)


def model_path(npz: str | None, workdir: str | None) -> str:
    """The .npz named by the flags."""
    return npz if npz is not None else os.path.join(workdir, "bitwise.npz")


def main(argv):
    del argv
    arrays, meta = cli.run_cleanly(lambda: export.load_npz(model_path(_NPZ.value, _WORKDIR.value)))
    print(summary.format_summary(summary.summarize_arrays(arrays, meta)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
