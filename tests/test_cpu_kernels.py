"""The popcount backend's CPU machinery: Harley-Seal sums, tiles of neurons and a batch split over CPU devices,
each exact against plain popcounts or the NumPy forward."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from bitnet.deploy import inference, packing
from experiments import peaks
from tests.helpers import REPO, numpy_scores, packed_model, random_layers


@pytest.mark.parametrize("count", [1, 7, 15, 16, 17, 32, 33, 47, 129])
def test_popcount_sum_is_the_sum_of_popcounts(count):
    """Blocks of 16 words through the carry-save adders, and the words left over, count every bit once."""
    rng = np.random.default_rng(count)
    words = [rng.integers(0, 2**32, (3, 5), dtype=np.uint32) for _ in range(count)]
    words[0][0, 0] = 0xFFFFFFFF  # every bit set in one lane: the highest sums
    expected = sum(np.bitwise_count(word).astype(np.int64) for word in words)
    got = jax.jit(inference.popcount_sum)([jax.numpy.asarray(word) for word in words])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("n_out", [1, 10, 16, 17, 1000, 1024, 4096])
@pytest.mark.parametrize("words", [1, 2, 25, 32, 128, 300])
def test_column_tiles_cover_every_neuron_and_fit_the_cache(n_out, words):
    tiles, tile = inference.column_tile(n_out, words)
    assert tile % inference.VECTOR_LANES == 0 and tile <= inference.MAX_TILE
    assert tiles * tile >= n_out > (tiles - 1) * tile  # no tile of padding alone
    assert tile * words * 4 <= inference.TILE_BYTES or tile == inference.VECTOR_LANES
    assert inference.column_tile(n_out, words, tiled=False) == (1, tile * tiles) or tiles > 1 or (4 * tile) % 4096 == 0


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 neurons, so small layers run several (compiled anew: the tile size is read when tracing)."""
    jax.clear_caches()
    monkeypatch.setattr(inference, "TILE_BYTES", 64)
    monkeypatch.setattr(inference, "TILE_MIN_ROWS", 1)
    yield
    jax.clear_caches()


@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
@pytest.mark.parametrize("thresholds", [False, True])
def test_several_tiles_equal_the_numpy_forward(small_tiles, bit_values, thresholds):
    """Layers of 65 and 33 neurons in 5 and 3 tiles, the last one mostly padding; ternary weights (the masked
    kernels), both input kinds, threshold neurons."""
    layers, inputs = random_layers(np.random.default_rng(7), (40, 65, 33, 10), bit_values, 50, thresholds)
    packed = packed_model(layers, bit_values)
    assert [inference.column_tile(layer.n_out, layer.sign.shape[1])[0] for layer in packed.layers] == [5, 3, 1]
    expected = numpy_scores(layers, inputs)
    for got, want in zip(inference.packed_scores(packed, packing.pack_bits(inputs)), expected):
        np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(inference.packed_predict(packed, inputs), np.argmax(expected[-1], axis=-1))


def test_a_batch_split_over_two_cpu_devices_is_exact():
    """A child process with two CPU devices splits batches over both (tests/split_batch.py): the same predictions as
    the NumPy forward for dense, ternary, 0/1-input and threshold nets, a batch that does not divide evenly."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    child = subprocess.run([sys.executable, "-m", "tests.split_batch"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["split"] == {"1": 0, "600": 2, "777": 2}  # too small to split, then both devices
    assert report["exact"] == report["cases"] == 4


def test_targets_follow_the_peak_ratio():
    assert peaks.target_ratio(20.0) == peaks.target_ratio(11.0) == 10.0
    assert peaks.target_ratio(9.0) == pytest.approx(8.1)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler cc on PATH")
def test_peaks_build_warning_free_and_measure_both_rates(tmp_path):
    """experiments/peaks.c builds with every warning an error, natively and portably, and reports two positive rates."""
    for extra in ([], ["-march=native"]):
        binary = tmp_path / f"peaks{len(extra)}"
        subprocess.run(["cc", "-O3", "-std=gnu11", "-ffp-contract=fast", "-Wall", "-Wextra", "-Werror", *extra, "-o", binary, peaks.SOURCE], check=True)
    rates = peaks.measure("cc")
    assert rates["float32_fmas_per_s"] > 1e8 and rates["xor_popcount_words_per_s"] > 1e7
    assert rates["popcount_method"] in ("direct", "harley-seal")
    assert rates["peak_ratio"] == pytest.approx(32 * rates["xor_popcount_words_per_s"] / rates["float32_fmas_per_s"])
    assert "error" in peaks.measure("no-such-compiler")
