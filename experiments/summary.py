"""Print the summary table (sizes, memory, ops) of an exported bitnet-packed-v1 model.

    python -m experiments.summary --workdir workdirs/default      # reads WORKDIR/bitwise.npz
    python -m experiments.summary --npz path/to/model.npz
"""

import os

from absl import app, flags

from bitnet import configuration, export, plan, summary
from bitnet.errors import ExportError
from experiments import cli

_NPZ = flags.DEFINE_string("npz", None, "A bitnet-packed-v1 .npz file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir evaluated by experiments.evaluate (uses WORKDIR/bitwise.npz).")
flags.mark_flags_as_mutual_exclusive(["npz", "workdir"], required=True)


def model_path(npz: str | None, workdir: str | None) -> str:
    """The .npz named by the flags; ExportError for a workdir whose run has no packed model (batch norm)."""
    if npz is not None:
        return npz
    path = os.path.join(workdir, "bitwise.npz")
    if not os.path.exists(path) and os.path.exists(os.path.join(workdir, "config.json")):
        missing = plan.run_packed_missing(configuration.read_config(workdir))
        if missing:
            raise ExportError(f"{workdir} has no packed model: {missing}")
    return path


def main(argv):
    del argv
    arrays, meta = cli.run_cleanly(lambda: export.load_npz(model_path(_NPZ.value, _WORKDIR.value)))
    print(summary.format_summary(summary.summarize_arrays(arrays, meta)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
