"""Write a bitnet-packed-v1 or -v2 model as a dependency-free C99 runtime (bitnet/deploy/c_runtime.py).

    python -m experiments.export_c --npz results/sweep_table1/bipolar-bitwise-seed0.npz --out model_c
    cc -std=c99 -O2 -o model_c/bitnet model_c/main.c model_c/bitnet_model.c
    gunzip -c $BITNET_MNIST_DIR/t10k-images-idx3-ubyte.gz | tail -c +17 | model_c/bitnet   # one label per line

The model is read by the loader evaluation uses (`export.load_npz`, `export.to_packed_model`); the
summary printed gives the files, the read-only bytes (the model's arrays) and the working-memory bytes
(the buffer the caller passes): what a microcontroller needs besides the code.
"""

from typing import Any

from absl import app, flags

from bitnet.deploy import c_runtime
from experiments import cli

_NPZ = flags.DEFINE_string("npz", None, "A bitnet-packed-v1 or -v2 .npz file.", required=True)
_OUT = flags.DEFINE_string("out", None, "Folder for bitnet_model.h, bitnet_model.c and main.c (made if absent).", required=True)


def summary(out: str, written: dict[str, Any]) -> str:
    """What the export wrote and what a device needs to run it."""
    sizes = "-".join(map(str, written["sizes"]))
    return "\n".join([
        f"wrote {out}/: {c_runtime.HEADER}, {c_runtime.SOURCE}, {c_runtime.HARNESS}",
        f"model: {sizes}, {written['format']}, {written['encoding']} encoding of {written['pixels']} pixels",
        f"read-only bytes: {written['read_only_bytes']:,} (the arrays; the code and a small layer table come on top)",
        f"working-memory bytes: {written['working_bytes']:,} (BITNET_WORK_BYTES, a buffer the caller passes; no heap)",
        f"compile: cc -std=c99 -O2 -o {out}/bitnet {out}/main.c {out}/{c_runtime.SOURCE}",
        f"run: {out}/bitnet IMAGES   (raw uint8 images, {written['pixels']} bytes each, no header; or on stdin)",
    ])


def main(argv):
    del argv
    print(summary(_OUT.value, cli.run_cleanly(lambda: c_runtime.write_runtime(_NPZ.value, _OUT.value))))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
