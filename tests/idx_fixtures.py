"""Synthetic IDX digit data sets for tests: small, learnable, in the standard MNIST file layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 00 00 08 ndim, big-endian uint32 dims, payload."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` as an IDX file, gzip-compressed when `path` ends in .gz."""
    path = Path(path)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def synthetic_digits(
    num: int, rng: np.random.Generator, prototypes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`num` images (prototype of a random class plus noise) and their labels; classes cycle so all appear."""
    labels = (np.arange(num) + rng.integers(NUM_CLASSES)) % NUM_CLASSES
    labels = rng.permutation(labels).astype(np.uint8)
    noise = rng.normal(0.0, 40.0, size=(num, *IMAGE_SHAPE))
    images = np.clip(prototypes[labels].astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_idx_folder(folder: str | Path, num_train: int = 200, num_test: int = 100, seed: int = 0) -> Path:
    """Write the four gzip IDX files of a learnable synthetic 28x28 10-class data set into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prototypes = np.where(rng.random((NUM_CLASSES, *IMAGE_SHAPE)) < 0.3, 230, 20).astype(np.uint8)
    train_images, train_labels = synthetic_digits(num_train, rng, prototypes)
    test_images, test_labels = synthetic_digits(num_test, rng, prototypes)
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    for key, array in arrays.items():
        write_idx(folder / f"{FILE_NAMES[key]}.gz", array)
    return folder
