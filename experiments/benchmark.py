"""Throughput of bitwise inference against real-valued baselines, and training step times.

    python -m experiments.benchmark                      # paper + wide MLP, batch 1, 100, 10000
    python -m experiments.benchmark --quick              # smoke run: paper MLP, batch 1 and 100
    python -m experiments.benchmark --backend=int8       # packed_predict's backend to report (default auto)
    python -m experiments.benchmark --models=wide --batch_sizes=10000 --runs=3   # one target alone

All paths run in one process on the same device, on random weights (timing only) and random
bipolar (+-1) inputs. Each time is the median of repeated calls after a warm-up call, each call
ended by `block_until_ready`; the paths being compared take turns call by call. Inference paths,
all returning class predictions:

    packed XNOR-popcount   bitnet.deploy.inference.packed_predict with the CPU's packed backend: "native"
                           (the C++ kernel, bitnet.deploy.native) where it builds, else "popcount"
                           (packing of the input included)
    packed, XLA loops      backend "popcount" (the XLA kernels), timed beside native when native runs
    float32 MLP            flax MLP, mode="float", jitted (bitnet.training.steps.make_predict)
    +-1 bf16 matmul        backend "bf16": inference.matmul_predict, weights unpacked once (f32 accumulation, exact)
    +-1 int8 matmul        backend "int8": the same with int8 dots and int32 accumulation

The process asks JAX for one CPU device per core (`cli.one_cpu_device_per_core`): the popcount
backend splits a large batch over them (XLA runs its loops on one thread per device); the native
kernel, the float32 and the matmul paths run on the first device with every core (XLA's thread pool). Each batch size is
timed in --runs runs; ratios are the median of the runs' ratios. With --peaks (default) this
machine's peak rates are measured first (experiments.peaks) and the last lines say whether issue
#24's targets hold: packed/float32 at batch 10,000 >= 10x, or >= 90 % of a peak ratio below 11x;
the paper MLP at batch 1 >= 5x.

Every path must give identical predictions (checked). Each batch's `backend` is the one
`packed_predict` runs there (--backend, or the choice of "auto" on this platform), and
`backend_over_float32` its throughput against float32. Training: one jitted Adam step
(bitnet.training.steps.make_train_step) of mode="bitwise" (STE) vs mode="float", batch 100.
The last line of output is one JSON object with every number.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from bitnet.core import models
from bitnet.deploy import backends, inference, native, summary
from bitnet.training import steps
from experiments import cli, peaks, timing

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "100", "10000"], "Inference batch sizes.")
_MODELS = flags.DEFINE_list("models", ["paper", "wide"], "Models to time: paper (784-1024x3-10), wide (784-4096x3-10).")
_REPEATS = flags.DEFINE_integer("repeats", 100, "Most timed calls per measurement (at least 3; fewer once the budget is spent).")
_BUDGET = flags.DEFINE_float("budget_seconds", 1.0, "Timed seconds aimed at per path and batch size; caps the repeats of slow calls.")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 100, "Batch size of the training step.")
_TRAIN_SPARSITY = flags.DEFINE_float("train_sparsity", 0.0, "Sparsity lambda of the bitwise training step.")
_BACKEND = flags.DEFINE_enum(
    "backend", backends.AUTO, [backends.AUTO, *backends.BACKENDS], "packed_predict's backend reported per batch (auto: chosen by platform and shapes)."
)
_QUICK = flags.DEFINE_bool("quick", False, "Smoke run: paper model, batch 1 and 100, at most 20 repeats, one run, no peaks.")
_RUNS = flags.DEFINE_integer("runs", 3, "Timed runs per model and batch size (each a round-robin of every path); ratios are their median.")
_PEAKS = flags.DEFINE_bool("peaks", True, "Measure this machine's peak rates (experiments.peaks, needs a C compiler) and the targets they set.")

MODELS = {"paper": (1024, 1024, 1024), "wide": (4096, 4096, 4096)}
INPUT_SIZE, NUM_CLASSES = 784, 10
PACKED = "packed XNOR-popcount"
XLA_LOOPS = "packed, XLA loops"
FLOAT32 = "float32 MLP"
BF16 = "+-1 bf16 matmul"
INT8 = "+-1 int8 matmul"
FP8 = "+-1 fp8 matmul"  # timed where fp8 can be chosen: off the CPU, or when --backend=fp8 asks for it
MATMUL_PATHS = {backends.BF16: BF16, backends.INT8: INT8, backends.FP8: FP8}  # the same +-1 network without packing
ALTERNATIVES = tuple(MATMUL_PATHS.values())  # (those timed)
BATCH1_TARGET = 5.0  # the paper MLP's packed/float32 at batch 1 (issue #24)


def bipolar_inputs(batch: int, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.where(np.random.default_rng(seed).random((batch, INPUT_SIZE)) < 0.5, 1.0, -1.0), jnp.float32)


def packed_backend() -> str:
    """The backend of the "packed" path: the CPU's choice (native where it builds, else popcount)."""
    return backends.choose_backend("cpu", 1, [1, 1], native.available())


def path_of_backend(packed: str) -> dict[str, str]:
    """The timed path that runs each backend, when `packed` is the packed path's backend."""
    return {
        packed: PACKED,
        backends.POPCOUNT: PACKED if packed == backends.POPCOUNT else XLA_LOOPS,
        **MATMUL_PATHS,
    }


def time_inference(
    hidden: tuple[int, ...], batch_sizes: list[int], repeats: int, budget: float, backend: str = backends.AUTO, runs: int = 1
) -> dict[str, Any]:
    """Throughput of every path at every batch size, and the model bytes, for one MLP shape; `backend`: what
    packed_predict is asked for (its resolution is each batch's `backend`). Each batch size is timed in
    `runs` runs; a path's seconds are the median over the runs of each run's median, a ratio the median
    of the runs' ratios."""
    float_model = models.MLP(hidden_sizes=hidden, num_classes=NUM_CLASSES, mode="float")
    params = float_model.init(jax.random.key(0), bipolar_inputs(1))["params"]
    ternary = models.ternary_layers(params, 0.0)  # dense +-1 network of the same shape
    packed = inference.pack_model(ternary, "bipolar")
    packed_with = packed_backend()
    xla_loops = {XLA_LOOPS: (functools.partial(inference.packed_predict, backend=backends.POPCOUNT), packed)}
    runners = {
        PACKED: (functools.partial(inference.packed_predict, backend=packed_with), packed),
        **(xla_loops if packed_with != backends.POPCOUNT else {}),
        FLOAT32: (steps.make_predict(float_model), {"params": params}),
    }
    matmul = functools.partial(inference.matmul_predict, input_bits="bipolar")
    for name, path in MATMUL_PATHS.items():  # on a CPU fp8 is upcast: slow, and never chosen, so timed only when asked for
        if name != backends.FP8 or backend == backends.FP8 or jax.default_backend() != "cpu":
            runners[path] = (matmul, inference.matmul_layers(packed, name))
    paths = tuple(runners)
    rows = summary.summarize_params(params, 0.0, "bipolar")
    total = summary.totals(rows)
    result: dict[str, Any] = {
        "layers": [INPUT_SIZE, *hidden, NUM_CLASSES],
        "paths": paths,
        "packed_backend": packed_with,
        "bytes": {"float32": total["float32_bytes"], "packed": total["packed_bytes"], "float32_over_packed": summary.compression_ratio(rows)},
        "batches": {},
    }
    for batch in batch_sizes:
        inputs = bipolar_inputs(batch, seed=batch)
        reference = np.asarray(inference.packed_predict(packed, inputs, packed_with))
        for name in paths[1:]:
            if name == FLOAT32:
                continue
            function, weights = runners[name]
            if not np.array_equal(np.asarray(function(weights, inputs)), reference):
                raise AssertionError(f"{name} disagrees with {PACKED} at batch {batch}")
        timed = [
            timing.interleaved_medians({name: (function, (weights, inputs)) for name, (function, weights) in runners.items()}, repeats, budget)
            for _ in range(runs)
        ]
        chosen = inference.backend_for(packed, batch, backend)
        print(f"  batch {batch}: packed_predict backend {chosen} (asked for {backend}, platform {jax.default_backend()})", flush=True)
        seconds = {name: statistics.median(run[name][0] for run in timed) for name in paths}
        entry: dict[str, Any] = {
            "backend": chosen,
            "packed_kernel": "column" if inference.use_columns(batch) else "row",
            "packed_devices": 1 if packed_with == backends.NATIVE else max(1, len(inference.split_devices(batch))),
            "runs": runs,
            "seconds": seconds,
            "calls": {name: sum(run[name][1] for run in timed) for name in paths},
            "throughput": {name: batch / seconds[name] for name in paths},
            "packed_over_float32_per_run": [run[FLOAT32][0] / run[PACKED][0] for run in timed],
        }
        best = max((name for name in ALTERNATIVES if name in paths), key=lambda name: entry["throughput"][name])
        entry["best_alternative"] = best
        entry["packed_over_float32"] = statistics.median(entry["packed_over_float32_per_run"])
        entry["backend_over_float32"] = statistics.median(run[FLOAT32][0] / run[path_of_backend(packed_with)[chosen]][0] for run in timed)
        if XLA_LOOPS in paths:
            entry["packed_over_xla_loops"] = statistics.median(run[XLA_LOOPS][0] / run[PACKED][0] for run in timed)
        entry["packed_over_best_alternative"] = statistics.median(run[best][0] / run[PACKED][0] for run in timed)
        entry["packed_binary_ops_per_s"] = batch * total["binary_ops"] / seconds[PACKED]
        entry["float32_macs_per_s"] = batch * total["binary_ops"] / seconds[FLOAT32]  # one MAC per weight
        result["batches"][str(batch)] = entry
        print(
            f"  batch {batch}: " + ", ".join(f"{name} {seconds[name] * 1e3:.3f} ms" for name in paths)
            + f"; packed/float32 per run: {', '.join(f'{ratio:.2f}x' for ratio in entry['packed_over_float32_per_run'])}",
            flush=True,
        )
    return result


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #24's CPU targets met or not by these results: packed/float32 at batch 10,000 for each model
    (10x, or 90 % of a lower peak ratio; none without a peak measurement) and 5x for the paper MLP at batch 1."""
    goal = results.get("peaks", {}).get("target_ratio")
    wanted = [(name, "10000", goal) for name in results["models"]] + [("paper", "1", BATCH1_TARGET)]
    found = []
    for model_name, batch, target in wanted:
        entry = results["models"].get(model_name, {}).get("batches", {}).get(batch)
        if entry is not None and target is not None:
            found.append({"model": model_name, "batch": int(batch), "packed_over_float32": entry["packed_over_float32"], "target": target,
                          "met": entry["packed_over_float32"] >= target})
    return found


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
    medians = timing.interleaved_medians(calls, repeats, budget)
    float_s, bitwise_s = medians["float"][0], medians["bitwise"][0]
    return {"float_step_s": float_s, "bitwise_step_s": bitwise_s, "bitwise_over_float": bitwise_s / float_s, "calls": medians["float"][1]}


def format_table(results: dict[str, Any]) -> str:
    """One line per model and batch size: throughput of each path and the ratios."""
    paths = next(iter(results["models"].values()))["paths"]
    header = ["model", "batch", *[f"{name} ex/s" for name in paths], "packed/float32", "packed/best +-1 matmul", "backend", "backend/float32"]
    lines = []
    for model_name, result in results["models"].items():
        for batch, entry in result["batches"].items():
            lines.append([
                model_name, batch, *[f"{entry['throughput'][name]:,.0f}" for name in paths],
                f"{entry['packed_over_float32']:.1f}x", f"{entry['packed_over_best_alternative']:.1f}x ({entry['best_alternative']})",
                entry["backend"], f"{entry['backend_over_float32']:.1f}x",
            ])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        return " | ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths)))

    table = [render(header), "-+-".join("-" * width for width in widths), *map(render, lines), ""]
    if "peaks" in results:
        table.append(peaks.describe(results["peaks"]))
    for target in results.get("targets", []):
        table.append(
            f"target: {target['model']} batch {target['batch']} packed/float32 {target['packed_over_float32']:.2f}x "
            f"{'>=' if target['met'] else '<'} {target['target']:.2f}x: {'met' if target['met'] else 'NOT met'}"
        )
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
    cli.one_cpu_device_per_core()
    quick = _QUICK.value
    batch_sizes = [1, 100] if quick else [int(size) for size in _BATCH_SIZES.value]
    model_names = ["paper"] if quick else _MODELS.value
    unknown = sorted(set(model_names) - set(MODELS))
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    repeats, budget, runs = (20, 0.2, 1) if quick else (_REPEATS.value, _BUDGET.value, _RUNS.value)
    results: dict[str, Any] = {
        "device": timing.device_info(),
        "packed_predict_uses": (
            f"the backend named by each batch's 'backend' (--backend={_BACKEND.value}; auto: bitnet.deploy.backends.choose_backend): "
            f"native = {PACKED} where it builds (bitnet/deploy/native/bitwise_mlp.cc: one XLA FFI call, row kernel for batch <= 8, "
            f"register-blocked column kernel above, chunks of rows over XLA's CPU threads); popcount = {XLA_LOOPS} (or {PACKED} "
            f"where native does not build: uint32 words, XOR + popcount, int32 sums; row kernel for batch <= "
            f"{inference.ROW_KERNEL_MAX_BATCH}, column kernel above: L1-sized tiles of neurons, Harley-Seal popcount sums, the batch split "
            f"over the local CPU devices, one per core), int8 = {INT8}, bf16 = {BF16}, fp8 = {FP8}"
        ),
        "backend_flag": _BACKEND.value,
        "train_batch": _TRAIN_BATCH.value,
        "train_sparsity": _TRAIN_SPARSITY.value,
        "models": {},
    }
    start = time.perf_counter()
    if _PEAKS.value and not quick:
        results["peaks"] = peaks.measure(peaks.CC.value)
        print(peaks.describe(results["peaks"]), flush=True)
    for name in model_names:
        print(f"{name} MLP {MODELS[name]}:", flush=True)
        results["models"][name] = time_inference(MODELS[name], batch_sizes, repeats, budget, _BACKEND.value, runs)
        results["models"][name]["train"] = time_training(MODELS[name], _TRAIN_BATCH.value, _TRAIN_SPARSITY.value, repeats, budget)
    results["targets"] = targets(results)
    results["device"]["load_average_1min_at_end"] = os.getloadavg()[0]
    results["total_seconds"] = time.perf_counter() - start
    print()
    print(format_table(results))
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
