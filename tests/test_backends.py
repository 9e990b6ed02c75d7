"""Every backend of packed inference (popcount, native, int8, bf16, fp8) gives the simulated forward's integers, and the
rule choosing one is a pure function of platform and shapes (and whether native built: tests/test_native.py)."""

import os
import types

import jax
import numpy as np
import pytest

from bitnet.core import encodings, models
from bitnet.deploy import backends, export, inference, native, packing
from bitnet.runs import evaluate
from tests.helpers import numpy_scores, packed_model, random_layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = [784, 1024, 1024, 1024, 10]
WIDE = [784, 4096, 4096, 4096, 10]


@pytest.mark.parametrize("batch", [1, 100, 10_000])
@pytest.mark.parametrize("sizes", [PAPER, WIDE])
def test_the_cpu_runs_native_where_it_built_else_popcount(sizes, batch):
    assert backends.choose_backend("cpu", batch, sizes, native_built=True) == "native"
    assert backends.choose_backend("cpu", batch, sizes) == "popcount"


@pytest.mark.parametrize(
    "platform, batch, sizes, expected",
    [
        ("gpu", 1, PAPER, "bf16"),
        ("gpu", 10_000, PAPER, "bf16"),  # 2.9e10 multiply-adds: below GPU_INT8_MIN_MACS
        ("gpu", 1, WIDE, "bf16"),
        ("gpu", 10_000, WIDE, "int8"),  # 3.7e11: compute-bound, int8's 2x tensor-core rate
        ("tpu", 10_000, WIDE, "bf16"),  # every MXU takes bf16
        ("gpu", 1, [2**24 + 1, 10], "int8"),  # bf16 would not be exact
        ("tpu", 1, [2**24 + 1, 10], "int8"),
        ("tpu", 1, [2**24, 10], "bf16"),
    ],
)
def test_accelerators_choose_a_matmul(platform, batch, sizes, expected):
    assert backends.choose_backend(platform, batch, sizes) == expected


@pytest.mark.parametrize(
    "batch, sizes, expected",
    [
        (10_000, PAPER, "fp8"),
        (10_000, WIDE, "fp8"),
        (1, PAPER, "fp8"),
        (1, WIDE, "fp8"),
        (10_000, [8192, 8192, 10], "fp8"),  # the largest fan-in fp8 was checked exact for
        (10_000, [8193, 8192, 10], "int8"),  # beyond it: not fp8; compute-bound: int8
    ],
)
def test_gpus_with_fp8_tensor_cores_choose_fp8_where_it_is_exact(batch, sizes, expected):
    assert backends.choose_backend("gpu", batch, sizes, fp8_cores=True) == expected
    assert backends.choose_backend("tpu", batch, sizes, fp8_cores=True) != "fp8"  # fp8_cores speaks of GPUs only


@pytest.mark.parametrize(
    "platform, capability, expected",
    [("gpu", "9.0", True), ("gpu", "8.9", True), ("gpu", "10.0", True), ("gpu", "8.6", False), ("gpu", "8.0", False),
     ("gpu", "gfx90a", False), ("gpu", None, False), ("cpu", None, False), ("tpu", None, False)],
)
def test_fp8_tensor_cores_are_read_from_the_cuda_compute_capability(platform, capability, expected):
    device = types.SimpleNamespace(platform=platform, compute_capability=capability)
    assert inference.has_fp8_tensor_cores(device) == expected


def test_auto_resolves_and_forced_backends_are_checked():
    assert backends.resolve_backend("auto", "cpu", 5, PAPER) == "popcount"
    assert backends.resolve_backend("auto", "cpu", 5, PAPER, native_built=True) == "native"
    assert backends.resolve_backend("int8", "cpu", 5, PAPER) == "int8"
    with pytest.raises(ValueError, match="one of"):
        backends.resolve_backend("int4", "cpu", 5, PAPER)
    with pytest.raises(ValueError, match="exact only"):
        backends.resolve_backend("bf16", "gpu", 1, [2**24 + 1, 10])
    with pytest.raises(ValueError, match="fp8 is exact only for fan-ins <= 8192"):
        backends.resolve_backend("fp8", "gpu", 1, [8193, 10])
    assert backends.resolve_backend("fp8", "cpu", 1, [8192, 10]) == "fp8"  # XLA's CPU upcasts fp8: exact, for tests


def assert_every_backend_exact(packed, inputs, expected_scores):
    """Every backend's integers for every layer (native: predictions only), and its predictions (ties to the lowest
    index), are `expected_scores`'."""
    words = packing.pack_bits(inputs)
    expected = np.argmax(expected_scores[-1], axis=-1)
    for backend in inference.runnable_backends("cpu"):
        np.testing.assert_array_equal(inference.packed_predict(packed, inputs, backend), expected, err_msg=backend)
        if backend == "native":
            continue
        scores = inference.packed_scores(packed, words, backend)
        assert len(scores) == len(expected_scores)
        for got, want in zip(scores, expected_scores):
            assert got.dtype == np.int32
            np.testing.assert_array_equal(np.asarray(got), want, err_msg=backend)
        if backend != "popcount":  # weights unpacked once, reused
            np.testing.assert_array_equal(inference.matmul_predict(inference.matmul_layers(packed, backend), inputs, packed.input_bits), expected)


@pytest.mark.parametrize("encoding_name", ["bipolar", "binary"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_every_backend_equals_the_simulated_forward(encoding_name, sparsity):
    """bitnet-packed-v1 nets (sign neurons, a bias) with +-1 or 0/1 inputs, dense or ternary, sizes not multiples of 32."""
    encoding = encodings.get_encoding(encoding_name)
    model = models.MLP(hidden_sizes=(65, 33), num_classes=10, mode="bitwise", sparsity=sparsity)
    inputs = encoding(np.random.default_rng(0).integers(0, 256, (40, 37), dtype=np.uint8))
    params = model.init(jax.random.key(0), inputs[:1])["params"]
    params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), params)
    params["dense1"]["bias"] = params["dense1"]["bias"].at[:5].set(0.0)
    _, state = model.apply({"params": params}, inputs, mutable=["intermediates"])
    simulated = [np.asarray(a).astype(np.int64) for a in state["intermediates"]["preactivations"]]
    packed = inference.pack_params(params, sparsity, encoding.bit_values)
    assert all(layer.dense == (sparsity == 0) for layer in packed.layers)
    assert_every_backend_exact(packed, inputs, simulated)


@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
def test_every_backend_on_threshold_neurons(bit_values):
    """bitnet-packed-v2 nets: hidden threshold neurons (s, T) of both polarities, many exactly on their threshold."""
    layers, inputs = random_layers(np.random.default_rng(1), (45, 70, 31, 10), bit_values, 60, thresholds=True)
    packed = packed_model(layers, bit_values)
    expected = numpy_scores(layers, inputs)
    on_threshold = sum(int(np.sum(polarity * a == threshold)) for (_, _, polarity, threshold), a in zip(layers[:-1], expected))
    assert on_threshold > 50
    assert_every_backend_exact(packed, inputs, expected)


def test_bf16_accumulates_in_float32():
    """Sums past 256 (bf16's exact integers) stay exact: a 5001-input layer of +1 weights on mostly +1 inputs."""
    n_in = 5001
    weights = np.ones((n_in, 3), np.int8)
    weights[:, 1] = -1
    inputs = np.ones((2, n_in), np.float32)
    inputs[1, :7] = -1
    layers = [(weights, np.array([1, 0, -1], np.int8), None, None)]
    packed = inference.pack_model([layer[:2] for layer in layers], "bipolar")
    assert_every_backend_exact(packed, inputs, numpy_scores(layers, inputs))
    assert int(inference.packed_scores(packed, packing.pack_bits(inputs), "bf16")[0][1, 0]) == n_in - 14 + 1


def test_ties_go_to_the_lowest_index_on_every_backend():
    w0, b0 = np.array([[1], [-1]], np.int8), np.array([0], np.int8)  # x = (+1, +1): a = 0 -> +1
    w1, b1 = np.array([[1, 1, -1]], np.int8), np.array([0, 0, 0], np.int8)  # scores (1, 1, -1)
    packed = inference.pack_model([(w0, b0), (w1, b1)], "bipolar")
    for backend in inference.runnable_backends("cpu"):
        assert int(inference.packed_predict(packed, np.array([[1.0, 1.0]]), backend)[0]) == 0


PUBLISHED = ["results/sweep_table1/bipolar-bitwise-seed0.npz", "results/sweep_binary_bn/binary_bn-seed0.npz"]  # v1, v2


@pytest.mark.parametrize("path", PUBLISHED)
def test_published_models_on_mnist(path, test_split):
    """One published v1 and one v2 model on the first 2,000 real MNIST test images: every backend's predictions are the
    popcount path's (the full test set: experiments/device_inference.py and tests/test_results.py)."""
    images, _ = test_split
    arrays, meta = export.load_npz(os.path.join(REPO, path))
    expected = evaluate.packed_predictions(arrays, meta, images[:2000], "popcount")
    for backend in inference.runnable_backends("cpu"):
        np.testing.assert_array_equal(evaluate.packed_predictions(arrays, meta, images[:2000], backend), expected, err_msg=backend)


def test_evaluation_names_the_backend_it_ran(test_split):
    """eval.json's `backend`: auto is native on the CPU (popcount where native did not build); a forced backend is the
    one that ran, with the same predictions."""
    images, _ = test_split
    arrays, meta = export.load_npz(os.path.join(REPO, PUBLISHED[0]))
    auto, chosen = evaluate.packed_run(arrays, meta, images[:50])
    forced, name = evaluate.packed_run(arrays, meta, images[:50], "bf16")
    assert (chosen, name) == ("native" if native.available() else "popcount", "bf16")
    np.testing.assert_array_equal(auto, forced)


def test_the_pallas_probe_kernel_gives_the_int8_sums_in_interpret_mode():
    """experiments/pallas_probe.py's Pallas XOR + popcount layer (run for real on a lent GPU by device_inference): exact on the CPU."""
    from experiments import pallas_probe

    result = pallas_probe.pallas_probe([(80, 100)], repeats=3, budget=0.01, interpret=True)  # partial tiles of rows and neurons
    entry = result["80x100"]
    assert "error" not in entry, entry["error"]
    assert entry["exact"] is True, entry


@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
def test_the_matmul_probe_forms_give_the_exact_integers_on_the_cpu(bit_values):
    """experiments/matmul_probe.py's forms of the folded net (run for real on a lent GPU), on threshold neurons many exactly on
    their threshold: every form the CPU can compile gives the int64 NumPy forward's last-layer integers."""
    from experiments import matmul_forms

    layers, inputs = random_layers(np.random.default_rng(2), (45, 70, 31, 10), bit_values, 60, thresholds=True)
    model = packed_model(layers, bit_values)
    expected = numpy_scores(layers, inputs)[-1]
    for form, (_, _, precision) in matmul_forms.FORMS.items():
        if precision in ("precise", "fast"):  # cuBLASLt algorithm presets: no CPU lowering
            continue
        folded, narrow = matmul_forms.prepare(model, form)
        predictions, scores = matmul_forms.net_forward(folded, inputs, form, bit_values, narrow)
        np.testing.assert_array_equal(np.asarray(scores).astype(np.int64), expected, err_msg=form)
        np.testing.assert_array_equal(predictions, np.argmax(expected, axis=-1), err_msg=form)


def test_the_probes_narrow_comparisons_stop_where_t_or_t_minus_1_is_not_held():
    """bf16 holds every integer up to 256 in magnitude, f16 up to 2048: a threshold t needs t and t - 1 held."""
    from experiments import matmul_forms

    assert matmul_forms.narrow_dtype(np.array([-255, 256])) == "bfloat16"
    assert matmul_forms.narrow_dtype(np.array([257])) == "float16"
    assert matmul_forms.narrow_dtype(np.array([-256])) == "float16"
    assert matmul_forms.narrow_dtype(np.array([-2047, 2048])) == "float16"
    assert matmul_forms.narrow_dtype(np.array([2049])) == "float32"


@pytest.mark.slow
def test_the_benchmark_times_the_backend_it_is_asked_for():
    """`experiments.benchmark --backend=fp8` (a backend the CPU never chooses) times the fp8 matmul path and reports it
    as each batch's backend, with its ratio to float32 (a forced backend once had no timed path and crashed)."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "experiments.benchmark", "--models=paper", "--batch_sizes=1,20", "--repeats=3",
               "--budget_seconds=0.01", "--runs=1", "--nopeaks", "--backend=fp8"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for entry in report["models"]["paper"]["batches"].values():
        assert entry["backend"] == "fp8"
        assert "+-1 fp8 matmul" in entry["seconds"] and entry["backend_over_float32"] > 0
