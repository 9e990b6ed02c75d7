"""The exported C runtime (experiments.export_c) against the JAX packed path, side by side in one run.

    python -m experiments.benchmark_c       # the v1 3x1024 bipolar and the v2 binary_bn published models
    python -m experiments.benchmark_c --npz results/sweep_width/width4096-fan_in-seed0.npz --rounds 3

Test images: the MNIST test split from $BITNET_MNIST_DIR (else random pixels). Paths, all from raw or
encoded images to class labels:

    C portable   cc -std=c99 -O2: the runtime's portable bit count (what a target without a popcount
                 instruction runs)
    C native     cc -std=c99 -O2 -march=native: the compiler's popcount instruction
    JAX packed   bitnet.deploy.inference.packed_predict, jitted, on encoded inputs (the C paths encode
                 the raw pixels themselves, inside the timed call)

batch 1: the median seconds of one call on one image (C: bitnet_predict timed in a small driver
linked with the runtime; JAX: one call, ended by block_until_ready). test set: one pass over every
image (C: bitnet_predict image after image; JAX: one call on the whole batch). Each round runs every
path once (the C drivers as child processes), so load from other processes hits all of them alike;
the numbers are medians over rounds. Every path's labels are checked equal. The last line printed
is one JSON object with every number.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bitnet.core import encodings
from bitnet.deploy import c_runtime, export, inference
from bitnet.input import data
from experiments import cli, peaks, timing

_NPZ = flags.DEFINE_list(
    "npz", ["results/sweep_table1/bipolar-bitwise-seed0.npz", "results/sweep_binary_bn/binary_bn-seed0.npz"], "Models to time."
)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds; every path runs once per round.")
_CALLS = flags.DEFINE_integer("batch1_calls", 200, "Timed batch-1 calls per path and round.")

BUILDS = {"C portable": ["-O2"], "C native": ["-O2", "-march=native"]}
JAX = "JAX packed"

DRIVER = """\
/* Times bitnet_predict: argv images file, image count, batch-1 calls. Prints the batch-1 median and
 * the test-set pass in seconds, then the pass's labels, one per line. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bitnet_model.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    static uint32_t work[BITNET_WORK_WORDS];
    long count = atol(argv[2]), calls = atol(argv[3]), i;
    uint8_t *images = malloc((size_t)count * BITNET_PIXELS);
    int *labels = malloc((size_t)count * sizeof(int));
    double *seconds = malloc((size_t)calls * sizeof(double)), start, pass;
    FILE *in = fopen(argv[1], "rb");
    volatile int sink = 0;
    if (argc != 4 || !images || !labels || !seconds || !in || fread(images, BITNET_PIXELS, (size_t)count, in) != (size_t)count) return 1;
    sink += bitnet_predict(images, work); /* warm-up */
    for (i = 0; i < calls; ++i) {
        start = now();
        sink += bitnet_predict(images, work);
        seconds[i] = now() - start;
    }
    qsort(seconds, (size_t)calls, sizeof(double), ascending);
    start = now();
    for (i = 0; i < count; ++i) labels[i] = bitnet_predict(images + i * BITNET_PIXELS, work);
    pass = now() - start;
    printf("%.9f %.9f\\n", seconds[calls / 2], pass);
    for (i = 0; i < count; ++i) printf("%d\\n", labels[i]);
    return 0;
}
"""


def benchmark_images() -> tuple[np.ndarray, str]:
    """uint8 images [N, 784] and their name: the MNIST test split, or random pixels without $BITNET_MNIST_DIR."""
    folder = os.environ.get("BITNET_MNIST_DIR")
    if folder:
        images = data.read_idx_folder(folder)["test_images"]
        return images.reshape(len(images), -1), "MNIST test split"
    return np.random.default_rng(0).integers(0, 256, (10_000, 784), dtype=np.uint8), "random pixels"


def build_drivers(npz: str, folder: str) -> dict[str, str]:
    """The timing driver linked with the model's runtime, per build: {path name: binary}."""
    c_runtime.write_runtime(npz, folder)
    with open(os.path.join(folder, "driver.c"), "w") as file:
        file.write(DRIVER)
    binaries = {}
    for name, flags_ in BUILDS.items():
        binary = os.path.join(folder, name.replace(" ", "_"))
        sources = [os.path.join(folder, "driver.c"), os.path.join(folder, c_runtime.SOURCE)]
        subprocess.run([peaks.CC.value, "-std=c99", "-Wall", "-Wextra", "-Werror", *flags_, "-o", binary, *sources], check=True)
        binaries[name] = binary
    return binaries


def time_driver(binary: str, images_file: str, count: int) -> tuple[float, float, np.ndarray]:
    """(batch-1 median seconds, test-set pass seconds, labels) of one run of a C driver."""
    lines = subprocess.run([binary, images_file, str(count), str(_CALLS.value)], check=True, capture_output=True, text=True).stdout.split("\n")
    batch1, loop = map(float, lines[0].split())
    return batch1, loop, np.array([int(line) for line in lines[1:] if line])


def time_jax(model, inputs: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(batch-1 median seconds, test-set call seconds, labels) of the JAX packed path."""
    one = inputs[:1]
    jax.block_until_ready(inference.packed_predict(model, one))
    seconds = []
    for _ in range(_CALLS.value):
        start = time.perf_counter()
        jax.block_until_ready(inference.packed_predict(model, one))
        seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    labels = jax.block_until_ready(inference.packed_predict(model, inputs))
    return statistics.median(seconds), time.perf_counter() - start, np.asarray(labels)


def benchmark_model(npz: str, images: np.ndarray, folder: str) -> dict:
    """Every path's medians over rounds, and the ratios to the JAX packed path."""
    arrays, meta = export.load_npz(npz)
    model = export.to_packed_model(arrays, meta)
    inputs = jnp.asarray(encodings.get_encoding(meta["encoding"], meta["thresholds"])(images))
    jax.block_until_ready(inference.packed_predict(model, inputs))  # compile the test-set shape
    binaries = build_drivers(npz, folder)
    images_file = os.path.join(folder, "images.u8")
    images.tofile(images_file)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in [*binaries, JAX]}
    labels = {}
    for _ in range(_ROUNDS.value):
        for name, binary in binaries.items():
            *measured, labels[name] = time_driver(binary, images_file, len(images))
            times[name].append(tuple(measured))
        *measured, labels[JAX] = time_jax(model, inputs)
        times[JAX].append(tuple(measured))
    for name in binaries:
        if not np.array_equal(labels[name], labels[JAX]):
            raise RuntimeError(f"{npz}: {name} disagrees with the JAX packed path on {int(np.sum(labels[name] != labels[JAX]))} images")
    medians = {name: [statistics.median(t[i] for t in values) for i in range(2)] for name, values in times.items()}
    return {
        "format": str(arrays["format"]), "encoding": meta["encoding"], "layer_sizes": meta["layer_sizes"], "images": len(images),
        "read_only_bytes": c_runtime.read_only_bytes(model, encodings.get_encoding(meta["encoding"], meta["thresholds"])),
        "working_bytes": c_runtime.working_bytes(model),
        "batch1_seconds": {name: m[0] for name, m in medians.items()},
        "test_set_seconds": {name: m[1] for name, m in medians.items()},
    }


def table(results: dict[str, dict]) -> str:
    """One line per model and path: batch-1 latency, test-set time, and each against the JAX packed path."""
    lines = ["model | path | batch 1 us | vs JAX batch 1 | test set s | images/s | vs JAX test set", "---|---|---|---|---|---|---"]
    for npz, result in results.items():
        batch1, loop = result["batch1_seconds"], result["test_set_seconds"]
        for name in batch1:
            lines.append(
                f"{os.path.basename(npz)} | {name} | {1e6 * batch1[name]:,.1f} | {batch1[JAX] / batch1[name]:.2f}x | "
                f"{loop[name]:.3f} | {result['images'] / loop[name]:,.0f} | {loop[JAX] / loop[name]:.2f}x"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    cli.one_cpu_device_per_core()
    images, source = cli.run_cleanly(benchmark_images)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as root:
        results = {
            npz: cli.run_cleanly(lambda npz=npz, i=i: benchmark_model(npz, images, os.path.join(root, str(i))))
            for i, npz in enumerate(_NPZ.value)
        }
    print(table(results))
    print("(ratios: JAX packed time / this path's time; > 1 means faster than JAX)")
    machine = {**timing.device_info(), "load_average_1min_at_start": load_start, "load_average_1min_at_end": os.getloadavg()[0]}
    print(json.dumps({"images": source, "rounds": _ROUNDS.value, "batch1_calls": _CALLS.value, "machine": machine,
                      "models": results, "total_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
