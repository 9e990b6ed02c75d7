"""Issue #24's accelerator check of the inference backends, in one call: exactness on MNIST, then speed.

    bash experiments/device_inference.sh                  # on a lent GPU: wheels, MNIST and $OUT set up, then this
    BITNET_MNIST_DIR=/work/shared/data/mnist python -m experiments.device_inference --repeats=3 --budget_seconds=0.1 \
        --out=/tmp/device_inference.json                  # the same on a CPU (a try of the script, ~5 min on 2 cores)

For each published model (--models: the paper MLP 784-1024x3-10 and the 784-4096x3-10 one, each as
bitnet-packed-v1 and -v2) and each backend of `bitnet.deploy.backends` (popcount, int8, bf16, fp8):
- exactness: `packed_predict(model, inputs, backend)` on the device, on all 10,000 MNIST test
  images, against the popcount path run on this machine's CPU (JAX's CPU backend, always present),
  and the test error against the model's published one;
- speed: seconds per call at --batch_sizes (default 1 and 10,000) against the float32 MLP of the same
  shape (random weights, jitted, as experiments.benchmark), the paths taking turns call by call.
  The matmul backends are timed with their weights unpacked once (`inference.matmul_layers`).
Per model and batch the JSON gives what "auto" picks here, the fastest backend measured, each one's
speed-up over float32, and the issue's targets (>= 2x float32 at batch 10,000; the paper MLP at
batch 1 no slower than float32). Needs JAX, flax, optax and absl, all in the device image (neither
ml_collections nor tensorflow-datasets: MNIST is read by `bitnet.input.idx`); carried wheels in .whl/
are installed by experiments/device_inference.sh when present. Measured once on an H200: BENCHMARKS.md.

Then a Pallas probe (--pallas_probe, `experiments/pallas_probe.py`): one hidden layer as a Pallas
kernel of XOR + popcount, checked against the int8 matmul and timed beside it and float32.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bitnet.core import encodings, models
from bitnet.deploy import backends, export, inference
from bitnet.input import idx
from bitnet.training import steps
from experiments import pallas_probe, timing

MODELS = {
    "paper-v1": "results/sweep_table1/bipolar-bitwise-seed0.npz",
    "paper-v2": "results/sweep_binary_bn/binary_bn-seed0.npz",
    "wide-v1": "results/sweep_width/width4096-fan_in-seed0.npz",
    "wide-v2": "results/sweep_binary_bn_4096/binary_bn-4096-seed0.npz",
}
TARGET_SPEEDUP = 2.0  # over float32 at the largest batch

_MODELS = flags.DEFINE_list("models", list(MODELS), f"Published models to check and time: {list(MODELS)}.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "10000"], "Timed batch sizes (at most the 10,000 test images).")
_REPEATS = flags.DEFINE_integer("repeats", 100, "Most timed calls per path and batch (at least 3).")
_BUDGET = flags.DEFINE_float("budget_seconds", 0.5, "Timed seconds aimed at per path and batch; caps the repeats of slow calls.")
_PALLAS = flags.DEFINE_bool("pallas_probe", True, "Also time a Pallas XOR + popcount layer against the int8 and float32 matmuls.")
_OUT = flags.DEFINE_string("out", None, "Write the JSON here too (on the device: $OUT/device_inference.json).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_split() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images [10000, 784] and labels, from $BITNET_MNIST_DIR."""
    folder = os.environ.get(idx.MNIST_DIR_ENV)
    if not folder:
        raise app.UsageError(f"set {idx.MNIST_DIR_ENV} to the folder of the four MNIST IDX files")
    arrays = idx.read_idx_folder(folder)
    return arrays["test_images"].reshape(len(arrays["test_images"]), -1), arrays["test_labels"]


def cpu_reference(model: inference.PackedModel, inputs: np.ndarray) -> np.ndarray:
    """The popcount path's predictions, run on the CPU of this machine whatever the default device."""
    cpu = jax.devices("cpu")[0]
    return np.asarray(inference.packed_predict(jax.device_put(model, cpu), jax.device_put(inputs, cpu), backends.POPCOUNT))


def exactness(model: inference.PackedModel, inputs: jax.Array, reference: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per backend on the default device: mismatches against the CPU reference, and the test error."""
    result = {}
    for backend in inference.runnable_backends():
        predictions = np.asarray(inference.packed_predict(model, inputs, backend))
        mismatches = int(np.sum(predictions != reference))
        result[backend] = {"mismatches": mismatches, "exact": mismatches == 0, "test_error": float(np.mean(predictions != labels))}
    return result


def timed_paths(model: inference.PackedModel, width: int) -> dict[str, tuple]:
    """(function, weights) of every backend and of the float32 MLP of the model's shape (random weights)."""
    sizes = model.layer_sizes
    float_model = models.MLP(hidden_sizes=tuple(sizes[1:-1]), num_classes=sizes[-1], mode="float")
    params = float_model.init(jax.random.key(0), jnp.zeros((1, width), jnp.float32))["params"]
    matmul = functools.partial(inference.matmul_predict, input_bits=model.input_bits)
    native = {backends.NATIVE: (functools.partial(inference.packed_predict, backend=backends.NATIVE), model)}
    return {
        backends.POPCOUNT: (functools.partial(inference.packed_predict, backend=backends.POPCOUNT), model),
        **(native if backends.NATIVE in inference.runnable_backends() else {}),
        **{backend: (matmul, inference.matmul_layers(model, backend)) for backend in backends.MATMUL_TYPES},
        timing.FLOAT32: (steps.make_predict(float_model), {"params": params}),
    }


def speeds(model: inference.PackedModel, inputs: jax.Array, batch_sizes: list[int], repeats: int, budget: float) -> dict[str, Any]:
    """Median seconds of every path per batch size, the auto choice, the fastest backend and the speed-ups."""
    paths = timed_paths(model, int(inputs.shape[1]))
    result = {}
    for batch in batch_sizes:
        x = inputs[:batch]
        medians = timing.interleaved_medians({name: (function, (weights, x)) for name, (function, weights) in paths.items()}, repeats, budget)
        seconds = {name: value for name, (value, _) in medians.items()}
        auto = inference.backend_for(model, batch)
        fastest = min((name for name in seconds if name != timing.FLOAT32), key=seconds.get)
        result[str(batch)] = {
            "seconds": seconds,
            "calls": {name: calls for name, (_, calls) in medians.items()},
            "over_float32": {name: seconds[timing.FLOAT32] / seconds[name] for name in seconds if name != timing.FLOAT32},
            "auto": auto,
            "auto_over_float32": seconds[timing.FLOAT32] / seconds[auto],
            "fastest": fastest,
            "auto_is_fastest": auto == fastest,
        }
        print(f"  batch {batch}: " + ", ".join(f"{name} {value * 1e3:.3f} ms" for name, value in seconds.items()) + f"; auto {auto}, fastest {fastest}", flush=True)
    return result


def check_model(path: str, images: np.ndarray, labels: np.ndarray, batch_sizes: list[int], repeats: int, budget: float) -> dict[str, Any]:
    """Exactness on every test image, then speed, of one published model."""
    arrays, meta = export.load_npz(os.path.join(REPO, path))
    model = export.to_packed_model(arrays, meta)
    encoded = encodings.get_encoding(meta["encoding"], meta["thresholds"])(images)
    start = time.perf_counter()
    reference = cpu_reference(model, encoded)
    result: dict[str, Any] = {"npz": path, "format": str(arrays["format"]), "layer_sizes": model.layer_sizes, "published_error": meta["test_error"]}
    result["cpu_popcount_error"] = float(np.mean(reference != labels))
    result["cpu_reference_seconds"] = time.perf_counter() - start
    inputs = jnp.asarray(encoded, jnp.float32)
    result["backends"] = exactness(model, inputs, reference, labels)
    print("  exact on all test images: " + ", ".join(f"{name} {entry['exact']}" for name, entry in result["backends"].items()), flush=True)
    result["batches"] = speeds(model, inputs, batch_sizes, repeats, budget)
    return result


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue #24's targets, per model: auto >= 2x float32 at the largest batch; the paper MLP's auto at batch 1 no slower."""
    met = {}
    for name, result in results.items():
        largest = max(result["batches"], key=int)
        met[f"{name}: auto >= {TARGET_SPEEDUP}x float32 at batch {largest}"] = result["batches"][largest]["auto_over_float32"] >= TARGET_SPEEDUP
        if name.startswith("paper") and "1" in result["batches"]:
            met[f"{name}: auto no slower than float32 at batch 1"] = result["batches"]["1"]["auto_over_float32"] >= 1.0
    return met


def main(argv):
    del argv
    unknown = sorted(set(_MODELS.value) - set(MODELS))
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; choose from {list(MODELS)}")
    batch_sizes = [int(size) for size in _BATCH_SIZES.value]
    images, labels = test_split()
    if max(batch_sizes) > len(images):
        raise app.UsageError(f"batch sizes must be at most {len(images)} (the test images)")
    output: dict[str, Any] = {"device": timing.device_info(), "devices": [str(device) for device in jax.devices()]}
    output["settings"] = {"batch_sizes": batch_sizes, "repeats": _REPEATS.value, "budget_seconds": _BUDGET.value, "gpu_int8_min_macs": backends.GPU_INT8_MIN_MACS}
    start = time.perf_counter()
    output["models"] = {}
    for name in _MODELS.value:
        print(f"{name} ({MODELS[name]}):", flush=True)
        output["models"][name] = check_model(MODELS[name], images, labels, batch_sizes, _REPEATS.value, _BUDGET.value)
    output["all_exact"] = all(entry["exact"] for result in output["models"].values() for entry in result["backends"].values())
    output["targets"] = targets(output["models"])
    if _PALLAS.value:
        print("pallas probe (one +-1 layer):", flush=True)
        output["pallas_probe"] = pallas_probe.pallas_probe([(10_000, 1024), (10_000, 4096)], _REPEATS.value, _BUDGET.value)
    output["device"]["load_average_1min_at_end"] = os.getloadavg()[0]
    output["total_seconds"] = time.perf_counter() - start
    line = json.dumps(output, sort_keys=True)
    print(line)
    if _OUT.value:
        with open(_OUT.value, "w") as file:
            file.write(line + "\n")
    if not output["all_exact"]:
        raise SystemExit("error: a backend's predictions differ from the CPU popcount path's (see 'backends' in the JSON)")


if __name__ == "__main__":
    app.run(main)
