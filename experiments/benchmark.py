"""Throughput of bitwise inference against real-valued baselines, and training step times.

    python -m experiments.benchmark                      # paper + wide MLP, batch 1, 100, 10000
    python -m experiments.benchmark --quick              # smoke run: paper MLP, batch 1 and 100

All paths run in one process on the same device, on random weights (timing only) and random
bipolar (+-1) inputs. Each time is the median of repeated calls after a warm-up call, each call
ended by `block_until_ready`; the paths being compared take turns call by call. Inference paths,
all returning class predictions:

    packed XNOR-popcount   bitnet.deploy.inference.packed_predict (packing of the input included)
    float32 MLP            flax MLP, mode="float", jitted (bitnet.training.steps.make_predict)
    +-1 bf16 matmul        the same +-1 network as bf16 dots (f32 accumulation, exact here)
    +-1 int8 matmul        the same +-1 network as int8 dots with int32 accumulation

The three +-1 paths must give identical predictions (checked). Training: one jitted Adam step
(bitnet.training.steps.make_train_step) of mode="bitwise" (STE) vs mode="float", batch 100.
The last line of output is one JSON object with every number.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from bitnet.core import models, quantizers
from bitnet.deploy import inference, summary
from bitnet.training import steps
from experiments import cli

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "100", "10000"], "Inference batch sizes.")
_MODELS = flags.DEFINE_list("models", ["paper", "wide"], "Models to time: paper (784-1024x3-10), wide (784-4096x3-10).")
_REPEATS = flags.DEFINE_integer("repeats", 100, "Most timed calls per measurement (at least 3; fewer once the budget is spent).")
_BUDGET = flags.DEFINE_float("budget_seconds", 1.0, "Timed seconds aimed at per path and batch size; caps the repeats of slow calls.")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 100, "Batch size of the training step.")
_TRAIN_SPARSITY = flags.DEFINE_float("train_sparsity", 0.0, "Sparsity lambda of the bitwise training step.")
_QUICK = flags.DEFINE_bool("quick", False, "Smoke run: paper model, batch 1 and 100, at most 20 repeats.")

MODELS = {"paper": (1024, 1024, 1024), "wide": (4096, 4096, 4096)}
INPUT_SIZE, NUM_CLASSES = 784, 10
PACKED = "packed XNOR-popcount"
FLOAT32 = "float32 MLP"
BF16 = "+-1 bf16 matmul"
INT8 = "+-1 int8 matmul"
PATHS = (PACKED, FLOAT32, BF16, INT8)
ALTERNATIVES = (BF16, INT8)  # the same +-1 network without packing


def interleaved_medians(calls: dict[str, tuple[Callable, tuple]], repeats: int, budget: float) -> dict[str, tuple[float, int]]:
    """Median wall seconds of each `function(*args)` and its number of timed calls.

    After one warm-up call each, the calls take turns (round robin), so load from other processes
    hits all of them alike. At least 3 rounds; then rounds go on up to `repeats` while the time
    spent stays under `budget` seconds per call.
    """
    for function, args in calls.values():
        jax.block_until_ready(function(*args))  # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in calls}
    rounds, spent = 0, 0.0
    while rounds < 3 or (rounds < repeats and spent < budget * len(calls)):
        for name, (function, args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(function(*args))
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        rounds += 1
    return {name: (statistics.median(values), len(values)) for name, values in times.items()}


def matmul_predict(dtype: jnp.dtype, accumulate: jnp.dtype) -> Callable:
    """Predictions of a +-1 network [(W, b)] run as `dtype` dots accumulated in `accumulate`."""

    @jax.jit
    def predict(layers: list[tuple[jax.Array, jax.Array]], inputs: jax.Array) -> jax.Array:
        x = inputs.astype(dtype)
        for index, (kernel, bias) in enumerate(layers):
            a = jax.lax.dot_general(x, kernel, (((1,), (0,)), ((), ())), preferred_element_type=accumulate) + bias
            if index < len(layers) - 1:
                x = quantizers.sign(a).astype(dtype)
        return jnp.argmax(a, axis=-1)

    return predict


def bipolar_inputs(batch: int, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.where(np.random.default_rng(seed).random((batch, INPUT_SIZE)) < 0.5, 1.0, -1.0), jnp.float32)


def time_inference(hidden: tuple[int, ...], batch_sizes: list[int], repeats: int, budget: float) -> dict[str, Any]:
    """Throughput of every path at every batch size, and the model bytes, for one MLP shape."""
    float_model = models.MLP(hidden_sizes=hidden, num_classes=NUM_CLASSES, mode="float")
    params = float_model.init(jax.random.key(0), bipolar_inputs(1))["params"]
    ternary = models.ternary_layers(params, 0.0)  # dense +-1 network of the same shape
    packed = inference.pack_model(ternary, "bipolar")
    runners = {
        PACKED: (inference.packed_predict, packed),
        FLOAT32: (steps.make_predict(float_model), {"params": params}),
        BF16: (matmul_predict(jnp.bfloat16, jnp.float32), [(w.astype(jnp.bfloat16), b) for w, b in ternary]),
        INT8: (matmul_predict(jnp.int8, jnp.int32), [(w.astype(jnp.int8), b.astype(jnp.int32)) for w, b in ternary]),
    }
    rows = summary.summarize_params(params, 0.0, "bipolar")
    total = summary.totals(rows)
    result: dict[str, Any] = {
        "layers": [INPUT_SIZE, *hidden, NUM_CLASSES],
        "bytes": {"float32": total["float32_bytes"], "packed": total["packed_bytes"], "float32_over_packed": summary.compression_ratio(rows)},
        "batches": {},
    }
    for batch in batch_sizes:
        inputs = bipolar_inputs(batch, seed=batch)
        reference = np.asarray(inference.packed_predict(packed, inputs))
        for name in ALTERNATIVES:
            function, weights = runners[name]
            if not np.array_equal(np.asarray(function(weights, inputs)), reference):
                raise AssertionError(f"{name} disagrees with {PACKED} at batch {batch}")
        medians = interleaved_medians({name: (function, (weights, inputs)) for name, (function, weights) in runners.items()}, repeats, budget)
        entry: dict[str, Any] = {
            "packed_kernel": "column" if inference.use_columns(batch) else "row",
            "seconds": {name: seconds for name, (seconds, _) in medians.items()},
            "calls": {name: calls for name, (_, calls) in medians.items()},
            "throughput": {name: batch / seconds for name, (seconds, _) in medians.items()},
        }
        best = max(ALTERNATIVES, key=lambda name: entry["throughput"][name])
        entry["best_alternative"] = best
        entry["packed_over_float32"] = entry["throughput"][PACKED] / entry["throughput"][FLOAT32]
        entry["packed_over_best_alternative"] = entry["throughput"][PACKED] / entry["throughput"][best]
        entry["packed_binary_ops_per_s"] = batch * total["binary_ops"] / entry["seconds"][PACKED]
        entry["float32_macs_per_s"] = batch * total["binary_ops"] / entry["seconds"][FLOAT32]  # one MAC per weight
        result["batches"][str(batch)] = entry
        print(f"  batch {batch}: " + ", ".join(f"{name} {entry['seconds'][name] * 1e3:.3f} ms" for name in PATHS), flush=True)
    return result


def time_training(hidden: tuple[int, ...], batch: int, sparsity: float, repeats: int, budget: float) -> dict[str, float]:
    """Median seconds of one jitted Adam step, bitwise (STE) and float, on a random batch."""
    inputs = bipolar_inputs(batch, seed=1)
    labels = jnp.asarray(np.random.default_rng(2).integers(0, NUM_CLASSES, batch), jnp.int32)
    indices, key = jnp.arange(batch), jax.random.key(3)
    calls = {}
    for mode in ("float", "bitwise"):
        model = models.MLP(hidden_sizes=hidden, num_classes=NUM_CLASSES, mode=mode, sparsity=sparsity if mode == "bitwise" else 0.0)
        params = model.init(jax.random.key(0), inputs[:1])["params"]
        optimizer = optax.adam(1e-3)
        state = {"params": params, "opt_state": optimizer.init(params), "step": jnp.zeros((), jnp.int32), "totals": steps.zero_totals()}
        calls[mode] = (steps.make_train_step(model, optimizer), (state, inputs, labels, indices, key))
    medians = interleaved_medians(calls, repeats, budget)
    float_s, bitwise_s = medians["float"][0], medians["bitwise"][0]
    return {"float_step_s": float_s, "bitwise_step_s": bitwise_s, "bitwise_over_float": bitwise_s / float_s, "calls": medians["float"][1]}


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "load_average_1min_at_start": os.getloadavg()[0],
    }


def format_table(results: dict[str, Any]) -> str:
    """One line per model and batch size: throughput of each path and the ratios."""
    header = ["model", "batch", *[f"{name} ex/s" for name in PATHS], "packed/float32", "packed/best +-1 matmul"]
    lines = []
    for model_name, result in results["models"].items():
        for batch, entry in result["batches"].items():
            lines.append([
                model_name, batch, *[f"{entry['throughput'][name]:,.0f}" for name in PATHS],
                f"{entry['packed_over_float32']:.1f}x", f"{entry['packed_over_best_alternative']:.1f}x ({entry['best_alternative']})",
            ])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        return " | ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths)))

    table = [render(header), "-+-".join("-" * width for width in widths), *map(render, lines), ""]
    for model_name, result in results["models"].items():
        size = result["bytes"]
        table.append(f"{model_name}: bytes float32 {size['float32']:,} / packed {size['packed']:,} = {size['float32_over_packed']:.1f}x")
        if "train" in result:
            step = result["train"]
            table.append(
                f"{model_name}: train step (batch {results['train_batch']}) float {step['float_step_s'] * 1e3:.2f} ms, "
                f"bitwise STE {step['bitwise_step_s'] * 1e3:.2f} ms = {step['bitwise_over_float']:.2f}x"
            )
    return "\n".join(table)


def main(argv):
    del argv
    quick = _QUICK.value
    batch_sizes = [1, 100] if quick else [int(size) for size in _BATCH_SIZES.value]
    model_names = ["paper"] if quick else _MODELS.value
    unknown = sorted(set(model_names) - set(MODELS))
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    repeats, budget = (20, 0.2) if quick else (_REPEATS.value, _BUDGET.value)
    results: dict[str, Any] = {
        "device": device_info(),
        "packed_predict_uses": (
            f"{PACKED} only (bitnet.deploy.inference: uint32 words, XOR + popcount, int32 sums; row kernel for batch <= "
            f"{inference.ROW_KERNEL_MAX_BATCH}, column kernel above); it never runs a matmul"
        ),
        "train_batch": _TRAIN_BATCH.value,
        "train_sparsity": _TRAIN_SPARSITY.value,
        "models": {},
    }
    start = time.perf_counter()
    for name in model_names:
        print(f"{name} MLP {MODELS[name]}:", flush=True)
        results["models"][name] = time_inference(MODELS[name], batch_sizes, repeats, budget)
        results["models"][name]["train"] = time_training(MODELS[name], _TRAIN_BATCH.value, _TRAIN_SPARSITY.value, repeats, budget)
    results["device"]["load_average_1min_at_end"] = os.getloadavg()[0]
    results["total_seconds"] = time.perf_counter() - start
    print()
    print(format_table(results))
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
