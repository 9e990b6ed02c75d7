"""Fixtures shared by the test modules: data sets written once per module, an uninterrupted reference run."""

import os

import numpy as np
import pytest

from bitnet.input import data
from tests import helpers, idx_fixtures


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(IDX folder, TFDS data_dir) of a synthetic 300 + 120 image data set (tests.helpers.pipeline_config trains on it)."""
    root = tmp_path_factory.mktemp("pipeline")
    source = idx_fixtures.write_idx_folder(root / "idx", num_train=300, num_test=120, seed=1)
    return source, root / "tfds"


@pytest.fixture(scope="module")
def test_split():
    """The real MNIST test images (flattened) and labels, from $BITNET_MNIST_DIR."""
    folder = os.environ.get("BITNET_MNIST_DIR")
    if not folder:
        pytest.skip("set BITNET_MNIST_DIR to the real MNIST folder")
    arrays = data.read_idx_folder(folder)
    return arrays["test_images"].reshape(len(arrays["test_images"]), -1), arrays["test_labels"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Synthetic IDX folder, TFDS data_dir, and the environment of every subprocess."""
    root = tmp_path_factory.mktemp("reliability")
    source = idx_fixtures.write_idx_folder(root / "idx", num_train=300, num_test=100, seed=3)
    # relabel half of the training images at random, so validation error (and the best epoch) moves
    labels_path = source / "train-labels-idx1-ubyte.gz"
    labels = data.read_idx(labels_path)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(labels)) < 0.5
    labels[noisy] = rng.integers(0, 10, noisy.sum())
    idx_fixtures.write_idx(labels_path, labels)
    variables = {
        **os.environ,
        "BITNET_MNIST_DIR": "",
        "BITNET_DATA_DIR": str(root / "tfds"),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    return {"source": source, "data_dir": root / "tfds", "root": root, "env": variables}


@pytest.fixture(scope="module")
def reference(env):
    """An uninterrupted run (it also fills the compilation cache and prepares the data)."""
    workdir = env["root"] / "reference"
    result = helpers.run(env, helpers.train_args(env, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = helpers.lines_without_timing(workdir)
    assert [(m["stage"], m["epoch"]) for m in lines] == [(s, e) for s in ("compressed", "bitwise") for e in range(1, helpers.EPOCHS + 1)]
    assert len({m["val_error"] for m in lines}) > 2  # the best epoch depends on the whole run
    return workdir
