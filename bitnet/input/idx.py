"""IDX files of unsigned bytes (MNIST and look-alikes): read, gunzipped when compressed, and checked.

Apart from `bitnet.input.data` because it needs numpy alone, not tensorflow-datasets: a script on a
machine without TFDS (experiments/device_inference.py on a lent GPU) reads the test split with it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bitnet.errors import DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_DIR_ENV = "BITNET_MNIST_DIR"
IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when the name ends in .gz or the content starts like gzip."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read IDX file {path} ({e.strerror or e}); check the path and permissions"
        ) from e
    if path.suffix != ".gz" and not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"IDX file {path} is not a valid gzip file ({e}); download it again or replace it"
        ) from e


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or raw) into a uint8 array of the header's shape.

    Checks everything the format allows us to check, so a truncated download or a wrong file fails
    here with the file name instead of later as a shape error. `expected_ndim` is 3 for images and 1
    for labels.
    """
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}); "
            "use the original IDX file"
        )
    if data[2] != IDX_UINT8:
        raise DataError(
            f"{path} has IDX dtype code 0x{data[2]:02x}, only 0x08 (unsigned byte) is supported; "
            "use a uint8 IDX file"
        )
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{path} has {ndim} dimensions, expected {expected_ndim}; "
            "check that the right file is under this name"
        )
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise DataError(
            f"{path} has a broken IDX header ({ndim} dimensions, {len(data)} bytes); "
            "use the original IDX file"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected, actual = math.prod(shape), len(data) - header_size
    if actual != expected:
        kind = "truncated" if actual < expected else "oversized"
        raise DataError(
            f"{path} is {kind}: shape {shape} needs {expected} payload bytes, found {actual}; "
            "download it again"
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape).copy()


def find_idx_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Paths of the four IDX files in `folder`, each as `name.gz` or uncompressed `name`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"IDX folder {folder} does not exist; put the four IDX files there or set {MNIST_DIR_ENV}"
        )
    found, missing = {}, []
    for key, name in IDX_FILES.items():
        candidates = [folder / f"{name}.gz", folder / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(f"{name}(.gz)")
        else:
            found[key] = path
    if missing:
        raise DataError(
            f"IDX folder {folder} is missing {', '.join(missing)}; "
            f"put the four IDX files there or set {MNIST_DIR_ENV}"
        )
    return found


def check_idx_arrays(arrays: dict[str, np.ndarray], source: Any) -> None:
    """Images [N, H, W] with the same H, W in both splits, and one label per image."""
    train_hw, test_hw = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_hw != test_hw:
        raise DataError(
            f"{source}: train images are {train_hw} but test images are {test_hw}; use files of one data set"
        )
    for split in ("train", "test"):
        num_images, num_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if num_images != num_labels:
            raise DataError(
                f"{source}: {split} split has {num_images} images but {num_labels} labels; "
                "use matching IDX files"
            )


def read_idx_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The four arrays of an IDX folder (keys as in IDX_FILES), checked for consistency."""
    paths = find_idx_files(folder)
    arrays = {
        key: read_idx(path, expected_ndim=3 if key.endswith("images") else 1) for key, path in paths.items()
    }
    check_idx_arrays(arrays, f"IDX folder {Path(folder).expanduser()}")
    return arrays
