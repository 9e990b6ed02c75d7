"""Issue #24's second accelerator probe: where a matmul backend's time goes on a GPU, and which
formulation of the same integers is fastest.

    BITNET_MNIST_DIR=/work/shared/data/mnist python -m experiments.matmul_probe --out=/tmp/probe.json \
        --repeats=3 --budget_seconds=0.02      # a try on the CPU (forms the CPU cannot run are recorded as errors)

The first H200 measurement (BENCHMARKS.md) left the 2x target open: a single 4096-wide int8 layer
ran 2.07x float32, the whole wide net 1.46x, the paper MLP 1.07-1.11x. This script measures, in one
call, what a next backend would be built from:

- `gemm`: single matmuls [10000, K] x [K, N] at the published models' shapes, as float32 (default
  precision, as the float32 MLP), bf16, int8 and float8_e4m3fn operands, weights stored [K, N] ("kn")
  or [N, K] ("nk", the layout cuBLAS wants for int8 / fp8), fp8 with fast accumulation and without
  (`jax.lax.DotAlgorithmPreset`), and an fp8 layer with its threshold epilogue; plus the floor of a
  trivial call. Operands are random +-1 (never zeros).
- `nets`: each published model's whole forward in every form (`FORMS`), checked exact (every
  last-layer integer and every prediction on all 10,000 MNIST test images equal to the int8
  backend's, whose int32 sums are exact by construction), then timed against the float32 MLP at
  batch 1 and 10,000, the paths taking turns (`timing.interleaved_medians`).
- `adversarial`: fp8 sums whose partial sums climb to the fan-in and then step by one (K up to
  8192), where a narrow accumulator would lose the steps: exact or not, per precision.
- `hlo`: the optimized HLO of the wide net's forms (which kernels XLA emits), written beside the JSON.

Every form computes hidden bits as x W' >= t, with the bias and threshold neurons folded in
(`bitnet.deploy.inference.folded`: W' = s W per neuron, t = T - s b; plain neurons s = 1, T = 0),
and the last layer's x W + b.
A form that fails to compile or run is recorded, not raised. The JSON is rewritten after each
section, so a call cut by its deadline still returns what finished.
"""

from __future__ import annotations

import functools
import json
import os
import time
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bitnet.core import encodings, models
from bitnet.deploy import backends, export, inference
from bitnet.training import steps
from experiments import device_inference, timing
from experiments.matmul_forms import FORMS, FP8, PRESETS, dot, net_forward, prepare

GEMM_SHAPES = ((784, 1024), (1024, 1024), (784, 4096), (4096, 4096))
GEMM_ROWS = 10_000

_SECTIONS = flags.DEFINE_list("sections", ["gemm", "adversarial", "nets", "hlo"], "What to run, in this order.")
NET_FORMS = ("int8_kn", "bf16_nk", "fp8_kn", "fp8_nk", "fp8_nk_narrow", "fp8_nk_precise", "fp8_nk_fast", "fp8_nk_highest")
_FORMS = flags.DEFINE_list("forms", list(NET_FORMS), f"Forms of the whole net to check and time, of {list(FORMS)}.")
# --models, --repeats, --budget_seconds and --out (the JSON, rewritten after each section; HLO files go
# beside it) are experiments.device_inference's flags
_MODELS, _REPEATS, _BUDGET, _OUT = device_inference._MODELS, device_inference._REPEATS, device_inference._BUDGET, device_inference._OUT


def attempt(function: Callable, *args) -> Any:
    """function(*args), or {"error": ...} when it raises."""
    try:
        return function(*args)
    except Exception as error:  # a form the platform cannot compile or run is a finding, not a failure
        return {"error": f"{type(error).__name__}: {str(error)[:400]}"}


def random_signs(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0)


def gemm_section(repeats: int, budget: float) -> dict[str, Any]:
    """Seconds and T(FL)OP/s of single matmuls per shape and form, the float32 matmul beside them."""
    keys = jax.random.split(jax.random.key(0), 3)
    result: dict[str, Any] = {}
    floor_x = random_signs(keys[2], (GEMM_ROWS, 784))
    floor = jax.jit(lambda x: jnp.argmax(x[:, :10], axis=-1))
    result["floor_seconds"] = timing.interleaved_medians({"floor": (floor, (floor_x,))}, repeats, budget)["floor"][0]
    for k, n in GEMM_SHAPES:
        x = random_signs(keys[0], (GEMM_ROWS, k))
        w = random_signs(keys[1], (k, n))
        calls: dict[str, tuple] = {timing.FLOAT32: (jax.jit(lambda a, b: a @ b), (x, w))}
        for form, (dtype, layout, key) in FORMS.items():
            ws = w if layout == "kn" else w.T
            function = jax.jit(functools.partial(dot, layout=layout, key=key))
            args = (x.astype(dtype), jnp.asarray(ws).astype(dtype))
            tried = attempt(lambda: jax.block_until_ready(function(*args)))
            if isinstance(tried, dict):
                result.setdefault("errors", {})[f"{k}x{n} {form}"] = tried["error"]
            else:
                calls[form] = (function, args)
        threshold = jnp.zeros((n,), jnp.float32)
        epilogue = jax.jit(lambda a, b, t: jnp.where(dot(a, b, "nk", "default") >= t, 1, -1).astype(FP8))
        calls["fp8_nk+sign"] = (epilogue, (x.astype(FP8), w.T.astype(FP8), threshold))
        medians = timing.interleaved_medians(calls, repeats, budget)
        operations = 2 * GEMM_ROWS * k * n
        result[f"{k}x{n}"] = {
            name: {"seconds": seconds, "tops": operations / seconds / 1e12, "over_float32": medians[timing.FLOAT32][0] / seconds}
            for name, (seconds, _) in medians.items()
        }
        print(f"  gemm {GEMM_ROWS}x{k}x{n}: " + ", ".join(f"{name} {seconds * 1e3:.3f} ms" for name, (seconds, _) in medians.items()), flush=True)
    return result


def adversarial_section() -> dict[str, Any]:
    """fp8 sums that climb to K then step by one: column j of W is +1 for the first K - j rows and
    alternates after, x all +1, so a narrow accumulator holding ~K would drop the +-1 steps."""
    result = {}
    for k in (1024, 4096, 8192):
        columns = 256
        rows = np.arange(k)[:, None]
        cut = k - np.arange(columns)[None, :] * (k // columns) // 2
        w = np.where(rows < cut, 1, np.where((rows % 2) == 0, 1, -1)).astype(np.float32)
        x = np.ones((2048, k), np.float32)  # rows enough for the large-matmul kernels
        x[1::2, k // 2 :] = -1  # rows that climb and then cancel
        exact = x.astype(np.int64) @ w.astype(np.int64)
        entry = {}
        for key in PRESETS:
            got = attempt(lambda key=key: np.asarray(jax.jit(functools.partial(dot, layout="nk", key=key))(jnp.asarray(x).astype(FP8), jnp.asarray(w.T).astype(FP8))))
            entry[key] = got if isinstance(got, dict) else {"mismatches": int(np.sum(got.astype(np.int64) != exact)), "max_abs_sum": int(np.abs(exact).max())}
        result[str(k)] = entry
        print(f"  adversarial K={k}: {entry}", flush=True)
    return result


def nets_section(forms: list[str], model_names: list[str], repeats: int, budget: float) -> dict[str, Any]:
    """Per published model: every form checked exact on all test images against the int8 backend, then timed."""
    images, labels = device_inference.test_split()
    result = {}
    for name in model_names:
        arrays, meta = export.load_npz(os.path.join(device_inference.REPO, device_inference.MODELS[name]))
        model = export.to_packed_model(arrays, meta)
        encoded = jnp.asarray(encodings.get_encoding(meta["encoding"], meta["thresholds"])(images), jnp.float32)
        reference_layers = inference.matmul_layers(model, backends.INT8)
        reference_scores = np.asarray(jax.jit(inference._matmul_outputs, static_argnums=2)(reference_layers, encoded, model.input_bits))
        reference = np.argmax(reference_scores, axis=-1)
        entry: dict[str, Any] = {"layer_sizes": model.layer_sizes, "test_error": float(np.mean(reference != labels)), "forms": {}}
        sizes = model.layer_sizes
        float_model = models.MLP(hidden_sizes=tuple(sizes[1:-1]), num_classes=sizes[-1], mode="float")
        params = float_model.init(jax.random.key(0), jnp.zeros((1, sizes[0]), jnp.float32))["params"]
        paths: dict[str, tuple] = {
            timing.FLOAT32: (steps.make_predict(float_model), {"params": params}),
            "fp8_library": (functools.partial(inference.matmul_predict, input_bits=model.input_bits), inference.matmul_layers(model, backends.FP8)),
        }
        for form in forms:
            layers, narrow = prepare(model, form)
            if any(narrow):
                entry.setdefault("narrow", {})[form] = narrow
            outputs = attempt(lambda: [np.asarray(value) for value in net_forward(layers, encoded, form, model.input_bits, narrow)])
            if isinstance(outputs, dict):
                entry["forms"][form] = outputs
                continue
            predictions, scores = outputs
            entry["forms"][form] = {
                "score_mismatches": int(np.sum(scores.astype(np.int64) != reference_scores)),
                "prediction_mismatches": int(np.sum(predictions != reference)),
            }
            paths[form] = (functools.partial(net_forward, form=form, input_bits=model.input_bits, narrow=narrow), layers)
        print(f"  {name} exact: " + ", ".join(f"{form} {value}" for form, value in entry["forms"].items()), flush=True)
        entry["batches"] = {}
        for batch in (1, GEMM_ROWS):
            x = encoded[:batch]
            runnable = {}
            for path, (function, weights) in paths.items():  # a path that fails to compile at this batch is recorded
                tried = attempt(lambda: jax.block_until_ready(function(weights, x)))
                if isinstance(tried, dict):
                    entry.setdefault("errors", {})[f"{path} batch {batch}"] = tried["error"]
                else:
                    runnable[path] = (function, (weights, x))
            medians = timing.interleaved_medians(runnable, repeats, budget)
            seconds = {path: value for path, (value, _) in medians.items()}
            entry["batches"][str(batch)] = {"seconds": seconds, "over_float32": {path: seconds[timing.FLOAT32] / value for path, value in seconds.items()}}
            print(f"  {name} batch {batch}: " + ", ".join(f"{path} {value * 1e3:.3f} ms ({seconds[timing.FLOAT32] / value:.2f}x)" for path, value in seconds.items()), flush=True)
        result[name] = entry
    return result


def hlo_section(forms: list[str], folder: str) -> dict[str, Any]:
    """The optimized HLO of the wide v1 net's forms at batch 10,000, one file each; the custom calls and fusions counted."""
    arrays, meta = export.load_npz(os.path.join(device_inference.REPO, device_inference.MODELS["wide-v1"]))
    model = export.to_packed_model(arrays, meta)
    x = jnp.ones((GEMM_ROWS, model.layer_sizes[0]), jnp.float32)
    result = {}
    for form in ["int8_library", "fp8_library", *forms]:
        if form.endswith("_library"):
            layers = inference.matmul_layers(model, form.split("_")[0])
            text = attempt(lambda: inference.matmul_predict.lower(layers, x, model.input_bits).compile().as_text())
        else:
            layers, narrow = prepare(model, form)
            text = attempt(lambda: net_forward.lower(layers, x, form, model.input_bits, narrow).compile().as_text())
        if isinstance(text, dict):
            result[form] = text
            continue
        with open(os.path.join(folder, f"hlo_{form}.txt"), "w") as file:
            file.write(text)
        targets = [line.split('custom_call_target="')[1].split('"')[0] for line in text.splitlines() if 'custom_call_target="' in line]
        lines = text.splitlines()
        result[form] = {"custom_calls": targets, "fusions": sum(" fusion(" in line for line in lines), "triton_gemms": sum("__triton_gemm" in line for line in lines)}
    return result


def main(argv):
    del argv
    if not _OUT.value:
        raise app.UsageError("--out: where to write the JSON")
    unknown = sorted(set(_FORMS.value) - set(FORMS))
    if unknown:
        raise app.UsageError(f"unknown forms {unknown}; choose from {list(FORMS)}")
    output: dict[str, Any] = {"device": timing.device_info(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "sections": {}}
    folder = os.path.dirname(os.path.abspath(_OUT.value))
    start = time.perf_counter()
    runs = {
        "gemm": lambda: gemm_section(_REPEATS.value, _BUDGET.value),
        "adversarial": adversarial_section,
        "nets": lambda: nets_section(_FORMS.value, _MODELS.value, _REPEATS.value, _BUDGET.value),
        "hlo": lambda: hlo_section(_FORMS.value, folder),
    }
    for section in _SECTIONS.value:
        print(f"{section}:", flush=True)
        began = time.perf_counter()
        try:
            output["sections"][section] = runs[section]()
        except Exception:
            output["sections"][section] = {"error": traceback.format_exc()[-2000:]}
            print(output["sections"][section]["error"], flush=True)
        output["sections"][section + "_seconds"] = time.perf_counter() - began
        output["total_seconds"] = time.perf_counter() - start
        with open(_OUT.value, "w") as file:
            json.dump(output, file, sort_keys=True, default=str)
    print(json.dumps({"total_seconds": output["total_seconds"]}))


if __name__ == "__main__":
    app.run(main)
