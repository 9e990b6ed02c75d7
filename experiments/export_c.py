"""Write a bitnet-packed-v1 or -v2 model as a dependency-free C99 runtime (bitnet/deploy/c_runtime.py).

    python -m experiments.export_c --npz results/sweep_table1/bipolar-bitwise-seed0.npz --out model_c
    cc -std=c99 -O2 -o model_c/bitnet model_c/main.c model_c/bitnet_model.c
    gunzip -c $BITNET_MNIST_DIR/t10k-images-idx3-ubyte.gz | tail -c +17 | model_c/bitnet   # one label per line

The model is read by the loader evaluation uses (`export.load_npz`, `export.to_packed_model`); the
summary printed gives the files, the read-only bytes (the model's arrays) and the working-memory bytes
(the buffer the caller passes): what a microcontroller needs besides the code.
"""

import os

from absl import app, flags

from bitnet.core import encodings
from bitnet.deploy import c_runtime, export
from experiments import cli

_NPZ = flags.DEFINE_string("npz", None, "A bitnet-packed-v1 or -v2 .npz file.", required=True)
_OUT = flags.DEFINE_string("out", None, "Folder for bitnet_model.h, bitnet_model.c and main.c (made if absent).", required=True)


def export_c(npz: str, out: str) -> str:
    """Write the C runtime of the model at `npz` into `out`; return the summary to print."""
    arrays, meta = export.load_npz(npz)
    model = export.to_packed_model(arrays, meta)
    encoding = encodings.get_encoding(meta["encoding"], meta["thresholds"])
    description = f"{os.path.basename(npz)} ({arrays['format']}, {encoding.name} input)"
    os.makedirs(out, exist_ok=True)
    for name, text in c_runtime.sources(model, encoding, description).items():
        with open(os.path.join(out, name), "w") as file:
            file.write(text)
    sizes = "-".join(str(size) for size in [model.layers[0].n_in, *meta["layer_sizes"]])
    return "\n".join([
        f"wrote {out}/: {c_runtime.HEADER}, {c_runtime.SOURCE}, {c_runtime.HARNESS}",
        f"model: {sizes}, {arrays['format']}, {encoding.name} encoding of {model.layers[0].n_in // encoding.planes} pixels",
        f"read-only bytes: {c_runtime.read_only_bytes(model, encoding):,} (arrays; the code and a small layer table come on top)",
        f"working-memory bytes: {c_runtime.working_bytes(model):,} (BITNET_WORK_BYTES, a buffer the caller passes; no heap)",
        f"compile: cc -std=c99 -O2 -o {out}/bitnet {out}/main.c {out}/{c_runtime.SOURCE}",
        f"run: {out}/bitnet IMAGES.u8   (raw uint8 images, {model.layers[0].n_in // encoding.planes} bytes each; or on stdin)",
    ])


def main(argv):
    del argv
    print(cli.run_cleanly(lambda: export_c(_NPZ.value, _OUT.value)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
