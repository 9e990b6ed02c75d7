"""Test error of a trained workdir, or of any bitnet-packed-v1 or -v2 model file.

    python -m experiments.evaluate --workdir workdirs/default     # -> WORKDIR/eval.json, WORKDIR/bitwise.npz
    python -m experiments.evaluate --workdir W --other_data        # test data other than W trained on -> W/eval-<key>.json
    python -m experiments.evaluate --npz results/sweep_table1/bipolar-bitwise-seed0.npz   # MNIST: $BITNET_MNIST_DIR
    python -m experiments.evaluate --npz MODEL.npz --data_name=fashion_mnist --source_dir=/path/to/idx [--out=eval.json]
    python -m experiments.evaluate --npz MODEL.npz --backend=int8  # force a backend (default auto: popcount on a CPU)

A workdir is evaluated on its config's data, which must be the data it trained on (their checksums
are recorded in its config.json) unless --other_data says otherwise; a .npz on the test split named by the data flags (its
meta names the input encoding). The packed path runs on the backend --backend names or "auto" chooses
(bitnet.deploy.backends); the result's `backend` field and a log line name it. The last line printed is the result as JSON.
"""

import json

from absl import app, flags

from bitnet.deploy import backends
from bitnet.training import plan
from bitnet.runs import evaluate
from configs import default
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train.")
_OTHER_DATA = flags.DEFINE_bool(
    "other_data", False, "--workdir: evaluate on data other than the run trained on (result: WORKDIR/eval-<content key>.json)."
)
_NPZ = flags.DEFINE_string("npz", None, "A bitnet-packed-v1 or -v2 .npz model (published, exported or downloaded).")
_DATA_NAME = flags.DEFINE_string("data_name", "mnist", "--npz: the data set (any IDX data set; see bitnet/input/data.py).")
_SOURCE_DIR = flags.DEFINE_string("source_dir", None, "--npz: folder of its IDX files (mnist: default $BITNET_MNIST_DIR, else download).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "--npz: TFDS cache (default $BITNET_DATA_DIR, else ~/tensorflow_datasets).")
_TEST_SUBSET = flags.DEFINE_integer("test_subset", None, "--npz: only the first N test images.")
_BACKEND = flags.DEFINE_enum(
    "backend", backends.AUTO, [backends.AUTO, *backends.BACKENDS], "Packed inference backend (auto: chosen by platform and shapes)."
)
_OUT = flags.DEFINE_string("out", None, "--npz: also write the result to this JSON file.")
flags.mark_flags_as_mutual_exclusive(["workdir", "npz"], required=True)


def npz_data_kwargs() -> dict:
    """Arguments of `bitnet.input.data.load_splits` from the data flags, defaulted as a config's data fields are."""
    config = default.get_config()
    config.data.name = _DATA_NAME.value
    config.data.source_dir = _SOURCE_DIR.value or ""
    config.data.data_dir = _DATA_DIR.value or ""
    config.data.test_subset = _TEST_SUBSET.value or 0
    return plan.inputs(config).data_kwargs()


def main(argv):
    del argv
    cli.one_cpu_device_per_core()
    if _WORKDIR.value is not None:
        result = cli.run_cleanly(lambda: evaluate.evaluate_workdir(_WORKDIR.value, _OTHER_DATA.value, _BACKEND.value))
    else:
        result = cli.run_cleanly(lambda: evaluate.evaluate_npz(_NPZ.value, npz_data_kwargs(), _BACKEND.value))
        if _OUT.value:
            with open(_OUT.value, "w") as file:
                json.dump(result, file, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
