"""The C runtime (issue #24): compiled with the system C compiler, it encodes as bitnet does and predicts
exactly the labels of the JAX packed path; it calls no library and needs no heap.

Default tier: synthetic models (every kernel: +-1 and 0/1 inputs, dense and masked layers, sign and
threshold neurons, sizes that are not multiples of 32), the encodings on all 256 pixel values, one
sanitizer build, `nm -u`, and one v1 and one v2 published model on the 10,000 MNIST test images.
The full tier (-m slow) adds every published model.
"""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bitnet.core import encodings
from bitnet.deploy import c_runtime, export, inference
from bitnet.runs import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILER = shutil.which("cc")
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
SANITIZERS = ("-fsanitize=undefined,address", "-fno-sanitize-recover=all", "-g")
DEFAULT_MODELS = ("results/sweep_table1/bipolar-bitwise-seed0.npz", "results/sweep_binary_bn/binary_bn-seed0.npz")  # v1 +-1, v2 0/1
PUBLISHED = sorted(os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, "results", "**", "*.npz"), recursive=True))
# What the harness main.c may call (its I/O) and what the C library's start-up code references.
HARNESS_SYMBOLS = {"fopen", "fread", "ferror", "fprintf", "perror", "printf", "putc", "putchar", "stdin", "stderr"}
STARTUP_SYMBOLS = {"__libc_start_main", "__cxa_finalize", "__gmon_start__", "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable"}

pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler (cc) on PATH")


def random_layer(rng, n_in: int, n_out: int, dense: bool, threshold: bool) -> inference.PackedLayer:
    """A packed layer of random weights (+-1, or ternary with zeros), bias or threshold neurons."""
    weights = rng.choice([-1, 1] if dense else [-1, 0, 1], (n_in, n_out)).astype(np.float32)
    bias = np.zeros(n_out, np.float32) if threshold else rng.choice([-1, 0, 1], n_out).astype(np.float32)
    if not threshold:
        return inference.pack_layer(weights, bias)
    polarity = rng.choice([-1, 1], n_out).astype(np.int32)
    return inference.pack_layer(weights, bias, polarity, rng.integers(-3, 4, n_out).astype(np.int32))


def save_random_model(path, encoding, pixels: int, hidden: tuple[int, ...], masked: set[int], v2: bool, seed: int = 0):
    """A random bitnet-packed model for `pixels`-pixel images, saved at `path` (v2: threshold hidden neurons)."""
    rng = np.random.default_rng(seed)
    sizes = [encoding.input_size(pixels), *hidden, 10]
    layers = [
        random_layer(rng, n_in, n_out, index not in masked, v2 and index < len(sizes) - 2)
        for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))
    ]
    export.save_npz(path, inference.PackedModel(tuple(layers), encoding.bit_values), encoding)
    return path


def build(folder, *flags: str, name: str = "bitnet") -> str:
    """Compile the harness and the runtime in `folder` (warnings are errors); the binary's path."""
    binary = os.path.join(folder, name)
    sources = [os.path.join(folder, c_runtime.HARNESS), os.path.join(folder, c_runtime.SOURCE)]
    subprocess.run([COMPILER, *CFLAGS, *flags, "-o", binary, *sources], check=True, capture_output=True, text=True)
    return binary


def run_binary(binary: str, images: np.ndarray, *args: str) -> list[str]:
    """The harness's output lines for raw uint8 images [N, pixels] on stdin."""
    result = subprocess.run([binary, *args], input=np.ascontiguousarray(images, np.uint8).tobytes(), capture_output=True, check=True)
    return result.stdout.decode().split()


def c_predictions(binary: str, images: np.ndarray) -> np.ndarray:
    return np.array([int(label) for label in run_binary(binary, images)])


def jax_predictions(path, images: np.ndarray) -> np.ndarray:
    """The labels of the JAX packed path, as evaluation computes them."""
    return evaluate.packed_predictions(*export.load_npz(path), images)


ENCODINGS = [  # (name, thresholds): each kind of code, and thresholds on and next to k/255
    ("bipolar", None), ("binary", None), ("bipolar", [128 / 255]), ("binary", [0.0]), ("fixed2", None), ("thermo2", None),
    ("fixed2_01", None), ("thermo3_01", None), ("fixed3", [0.0, 1 / 255, 100 / 255, 127.5 / 255, 128 / 255, 254 / 255, 1.0]),
]


@pytest.mark.parametrize("name, thresholds", ENCODINGS, ids=lambda value: str(value))
def test_the_encoding_equals_bitnets_for_every_pixel_value(tmp_path, name, thresholds):
    encoding = encodings.get_encoding(name, thresholds)
    path = save_random_model(tmp_path / "model.npz", encoding, pixels=256, hidden=(), masked=set(), v2=False)
    c_runtime.write_runtime(path, tmp_path)
    images = np.stack([np.arange(256), np.arange(256)[::-1]]).astype(np.uint8)
    expected = ["".join("1" if bit > 0 else "0" for bit in row) for row in encoding(images)]
    assert run_binary(build(tmp_path), images, "-e") == expected


SYNTHETIC = {  # hidden sizes not multiples of 32; layers 0 and 2 masked (zero weights), the others dense
    "v1 +-1": ("fixed2", False),
    "v1 0/1": ("binary", False),
    "v2 +-1": ("thermo2", True),
    "v2 0/1": ("fixed2_01", True),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """{name: (folder with the C runtime, .npz path)} and random images of 50 pixels."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (300, 50), dtype=np.uint8)
    images[:50] = rng.choice([0, 255], (50, 50))  # saturated pixels, as most of MNIST's
    models = {}
    for name, (encoding_name, v2) in SYNTHETIC.items():
        folder = tmp_path_factory.mktemp(encoding_name)
        path = save_random_model(folder / "model.npz", encodings.get_encoding(encoding_name), 50, (37, 45, 33), {0, 2}, v2)
        c_runtime.write_runtime(path, folder)
        models[name] = (folder, path)
    return models, images


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_models_predict_exactly_as_the_packed_path(synthetic, name):
    models, images = synthetic
    folder, path = models[name]
    expected = jax_predictions(path, images)
    assert len(set(expected)) > 3  # the models are not constant
    np.testing.assert_array_equal(c_predictions(build(folder), images), expected)


@pytest.mark.parametrize("name", ["v1 +-1", "v2 0/1"])  # together: every kernel loop, sign and threshold neurons
def test_the_sanitized_build_runs_clean_and_exact(synthetic, name):
    models, images = synthetic
    folder, path = models[name]
    try:
        binary = build(folder, *SANITIZERS, name="bitnet-sanitized")
    except subprocess.CalledProcessError as error:
        pytest.skip(f"this compiler cannot build with sanitizers: {error.stderr[-300:]}")
    np.testing.assert_array_equal(c_predictions(binary, images), jax_predictions(path, images))


def undefined_symbols(path: str) -> set[str]:
    lines = subprocess.run(["nm", "-u", path], check=True, capture_output=True, text=True).stdout.split("\n")
    return {line.split()[-1].split("@")[0] for line in lines if line.strip()}


@pytest.mark.skipif(shutil.which("nm") is None, reason="no nm on PATH")
def test_the_runtime_calls_no_library(synthetic, tmp_path):
    models, _ = synthetic
    folder, _ = models["v2 0/1"]
    runtime = str(tmp_path / "bitnet_model.o")
    for flags in ([], ["-march=native"]):  # the portable popcount, and the popcount instruction where the machine has one
        subprocess.run([COMPILER, *CFLAGS, *flags, "-c", "-o", runtime, str(folder / c_runtime.SOURCE)], check=True)
        assert undefined_symbols(runtime) == set()
    assert undefined_symbols(build(folder)) <= HARNESS_SYMBOLS | STARTUP_SYMBOLS


def test_the_header_states_its_memory(synthetic):
    models, _ = synthetic
    folder, _ = models["v1 +-1"]
    header = (folder / c_runtime.HEADER).read_text()
    assert "#define BITNET_WORK_WORDS (BITNET_EVEN_WORDS + BITNET_ODD_WORDS)" in header
    assert "#define BITNET_EVEN_WORDS 4 " in header and "#define BITNET_ODD_WORDS 2 " in header  # 100 inputs, 37 and 45 hidden: 4 + 2 words
    # fixed2's 3 thresholds (2 bytes each); sign planes of 4 layers; masks of layers 0 and 2; int8 biases
    words = 37 * 4 + 45 * 2 + 33 * 2 + 10 * 2
    assert f"#define BITNET_READ_ONLY_BYTES {3 * 2 + 4 * words + 4 * (37 * 4 + 33 * 2) + 37 + 45 + 33 + 10}" in header


def test_pixel_thresholds_are_the_least_pixel_above_each_threshold():
    assert c_runtime.pixel_thresholds(encodings.get_encoding("bipolar")) == (128,)
    assert c_runtime.pixel_thresholds(encodings.get_encoding("fixed2")) == (64, 128, 192)
    assert c_runtime.pixel_thresholds(encodings.get_encoding("binary", [1.0])) == (c_runtime.NEVER,)
    for name in ("fixed8", "thermo8"):
        encoding = encodings.get_encoding(name)
        pixels = np.arange(256, dtype=np.uint8)
        on = pixels[:, None] >= np.asarray(c_runtime.pixel_thresholds(encoding))[None, :]
        assert np.array_equal(on.sum(axis=1), np.arange(256))  # #{i : p/255 > i/256} = p: one threshold per pixel value


def assert_exact_on_mnist(relative: str, test_split, folder, *flags: str) -> None:
    images, labels = test_split
    path = os.path.join(REPO, relative)
    c_runtime.write_runtime(path, folder)
    predictions = c_predictions(build(folder, *flags), images)
    np.testing.assert_array_equal(predictions, jax_predictions(path, images))
    assert np.mean(predictions != labels) < 0.05


def test_the_command_writes_a_runtime_that_matches_the_packed_path_on_mnist(test_split, tmp_path):
    """The v1 published model, through the command a user runs; its summary gives the memory."""
    command = [sys.executable, "-m", "experiments.export_c", "--npz", DEFAULT_MODELS[0], "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    assert "read-only bytes: 368,908" in result.stdout and "working-memory bytes: 256" in result.stdout
    images, _ = test_split
    np.testing.assert_array_equal(c_predictions(build(tmp_path), images), jax_predictions(os.path.join(REPO, DEFAULT_MODELS[0]), images))


def test_a_v2_model_matches_the_packed_path_on_mnist(test_split, tmp_path):
    assert_exact_on_mnist(DEFAULT_MODELS[1], test_split, tmp_path)


@pytest.mark.slow  # full tier: ./launch.sh test --full
@pytest.mark.parametrize("relative", [path for path in PUBLISHED if path not in DEFAULT_MODELS])
def test_every_published_model_matches_the_packed_path_on_mnist(test_split, tmp_path, relative):
    """Built for this machine's CPU (its popcount instruction): the portable bit count is tested in the default tier,
    and this way the 4096-wide models take a third of the time."""
    assert_exact_on_mnist(relative, test_split, tmp_path, "-march=native")
