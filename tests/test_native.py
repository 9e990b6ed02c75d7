"""The native backend (bitnet/deploy/native/bitwise_mlp.cc through jax.ffi): exact against the NumPy forward
for every layer kind, both of its kernels, row blocks and chunks that do not divide the batch; built with
-Werror for this CPU, for a portable x86-64 (run) and for AVX-512 (compiled); a clear fallback where no
compiler is found."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from bitnet.deploy import backends, inference, native
from tests.helpers import REPO, dense_layers, numpy_scores, packed_model, random_layers

requires_native = pytest.mark.skipif(not native.available(), reason=f"native backend not built: {native.status()[1]}")
X86 = os.uname().machine in ("x86_64", "AMD64")


def check_exact(sizes, bit_values, thresholds, make_dense, batch, seed=0):
    layers, inputs = random_layers(np.random.default_rng(seed), sizes, bit_values, batch, thresholds)
    layers = dense_layers(layers) if make_dense else layers
    model = packed_model(layers, bit_values)
    assert all(layer.dense == make_dense for layer in model.layers)
    expected = np.argmax(numpy_scores(layers, inputs)[-1], axis=-1)
    got = np.asarray(native.native_predict(model.native_model, inputs))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@requires_native
@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
@pytest.mark.parametrize("thresholds", [False, True])
@pytest.mark.parametrize("make_dense", [False, True])
@pytest.mark.parametrize("batch", [1, 8, 9, 13, 130])
def test_native_equals_the_numpy_forward(bit_values, thresholds, make_dense, batch):
    """Dense, ternary (masked) and 0/1-input layers, sign and threshold neurons; batch <= 8 runs the row kernel,
    larger ones the column kernel in row blocks with a remainder; 65 and 33 neurons leave padded neuron blocks,
    40 and 300 inputs partial words, 300 inputs (10 words) more words than a byte count holds for 0/1 inputs."""
    check_exact((300, 65, 33, 10), bit_values, thresholds, make_dense, batch, seed=batch)


@requires_native
def test_native_splits_a_batch_into_chunks_over_threads():
    """777 rows: chunks of 64 rows over XLA's CPU threads, the last one short; wide enough for several neuron blocks."""
    check_exact((784, 200, 100, 10), "bipolar", False, False, 777)
    check_exact((784, 200, 100, 10), "binary", True, True, 777, seed=1)


@requires_native
@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
@pytest.mark.parametrize("batch", [2, 9])
def test_native_widens_byte_counts_on_long_rows(bit_values, batch):
    """8200 inputs, 257 words a row: more words than byte counts hold before they are widened, in both kernels."""
    check_exact((8200, 40, 10), bit_values, False, False, batch)


@requires_native
def test_the_kernel_refuses_a_layout_outside_its_buffer():
    """The kernel checks every array of a NativeModel lies inside its buffer: an error, never a read past it."""
    layers, inputs = random_layers(np.random.default_rng(4), (40, 33, 10), "bipolar", 3)
    model = packed_model(layers, "bipolar").native_model
    short = native.NativeModel(model.words[:-1], model.layout, model.n_in)
    with pytest.raises(Exception, match="layer 1: an array lies outside the model buffer"):
        np.asarray(native.native_predict(short, inputs))


@requires_native
def test_native_is_chosen_on_the_cpu_and_refuses_bad_inputs():
    layers, inputs = random_layers(np.random.default_rng(3), (40, 33, 10), "bipolar", 20)
    model = packed_model(layers, "bipolar")
    assert inference.backend_for(model, 20, platform="cpu") == "native"
    assert inference.runnable_backends("cpu") == ("popcount", "native", "int8", "bf16", "fp8")
    np.testing.assert_array_equal(inference.packed_predict(model, inputs), inference.packed_predict(model, inputs, "popcount"))
    under_jit = jax.jit(lambda model, inputs: inference.packed_predict(model, inputs, "native"))  # the model buffer made in the trace
    np.testing.assert_array_equal(under_jit(model, inputs), inference.packed_predict(model, inputs, "popcount"))
    with pytest.raises(ValueError, match=r"inputs must be \[batch, 40\]"):
        native.native_predict(model.native_model, inputs[:, :39])
    with pytest.raises(ValueError, match="predictions only"):
        inference.packed_scores(model, inputs, "native")
    np.testing.assert_array_equal(native.native_predict(model.native_model, inputs[:0]), np.zeros(0, np.int32))


def test_the_backend_rule_with_and_without_native():
    """A pure function: native on the CPU where it built, popcount where not, never off the CPU."""
    sizes = [784, 1024, 10]
    assert backends.choose_backend("cpu", 1, sizes, native_built=True) == "native"
    assert backends.choose_backend("cpu", 10_000, sizes, native_built=False) == "popcount"
    assert backends.choose_backend("gpu", 1, sizes, native_built=True) == "bf16"
    with pytest.raises(ValueError, match="CPU only"):
        backends.resolve_backend("native", "gpu", 1, sizes, native_built=True)
    with pytest.raises(ValueError, match=r"unavailable here \(no compiler\)"):
        backends.resolve_backend("native", "cpu", 1, sizes, native_built=False, native_detail="no compiler")
    assert backends.platform_backends("gpu") == ("popcount", "int8", "bf16", "fp8")


def compile_kernel(tmp_path, *flags):
    """Compiles the kernel with -Werror and `flags` (after -march=native); the compiler's output on failure."""
    cxx = native.compiler()
    output = tmp_path / "kernel.so"
    result = subprocess.run(native.build_command(cxx, output, ("-Werror", *flags)), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


@pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler")
def test_the_kernel_compiles_without_warnings(tmp_path):
    assert compile_kernel(tmp_path).stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(native.compiler() is None or not X86, reason="needs a C++ compiler for x86-64")
@pytest.mark.parametrize("march", ["skylake-avx512", "icelake-server"])
def test_the_avx512_kernels_compile(tmp_path, march):
    """AVX-512BW byte counts and VPOPCNTDQ lane counts: compiled only (this CPU may not run them)."""
    assert compile_kernel(tmp_path, f"-march={march}").stat().st_size > 0


CHILD = """
import numpy as np
from bitnet.deploy import backends, inference, native
from tests.test_native import check_exact
from tests.helpers import packed_model, random_layers
built, detail = native.status()
print("STATUS", built, detail)
layers, inputs = random_layers(np.random.default_rng(0), (40, 33, 10), "bipolar", 5)
model = packed_model(layers, "bipolar")
print("AUTO", inference.backend_for(model, 5, platform="cpu"))
print("RUNNABLE", inference.runnable_backends("cpu"))
if built:
    for bits in ("bipolar", "binary"):
        for thresholds in (False, True):
            check_exact((300, 65, 33, 10), bits, thresholds, False, 130)
            check_exact((300, 65, 33, 10), bits, thresholds, True, 5)
    print("EXACT")
else:
    try:
        inference.packed_predict(model, inputs, "native")
    except ValueError as error:
        print("REFUSED", error)
"""


def run_child(tmp_path, **env):
    environment = {**os.environ, native.CACHE_ENV: str(tmp_path / "cache"), **env}
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, env=environment, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(native.compiler() is None or not X86, reason="needs a C++ compiler for x86-64")
def test_the_portable_kernel_is_exact(tmp_path):
    """-march=x86-64 (SSE2, no popcount instruction): the kernel's portable path, built and run."""
    out = run_child(tmp_path, **{native.MARCH_ENV: "x86-64"})
    assert "STATUS True" in out and "AUTO native" in out and "EXACT" in out, out
    assert list((tmp_path / "cache").glob("bitwise_mlp-*.so"))


def test_without_a_compiler_auto_falls_back_and_native_is_refused(tmp_path):
    out = run_child(tmp_path, PATH=str(tmp_path), CXX="")
    assert "STATUS False no C++ compiler found" in out, out
    assert "AUTO popcount" in out and "RUNNABLE ('popcount', 'int8', 'bf16', 'fp8')" in out, out
    assert "REFUSED backend 'native' is unavailable here (no C++ compiler found" in out, out


@pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler")
def test_a_failed_build_is_reported_not_raised(tmp_path):
    out = run_child(tmp_path, CXX="false")
    assert "STATUS False false failed on bitwise_mlp.cc" in out, out
    assert "AUTO popcount" in out, out
