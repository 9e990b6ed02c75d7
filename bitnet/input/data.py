"""IDX-format digit data sets (MNIST and look-alikes) loaded through tensorflow-datasets, without TensorFlow.

The four IDX files of a data set (a local folder, or for MNIST a download) are prepared once by a
TFDS builder into ArrayRecord files under `data_dir/bitnet_idx/<name>/` (one builder config per
data set name, so caches never mix), then read back into numpy with TFDS's random-access data
source, which needs only `array_record`, not TensorFlow. Examples keep the IDX file order.

Identity: a prepared data set records in its `metadata.json` the sha256 of each of its four IDX
files as decoded (`idx_checksum`: equal to `gunzip -c FILE | sha256sum`, so a .gz and a raw copy
agree). A source folder is read and hashed on every load (under a second for MNIST) and is never
answered by a cache of other data: the first data prepared under a name own `bitnet_idx/<name>/`;
different data under the same name are prepared beside them in `bitnet_idx/<name>-<key>/`, `key`
a short hash of the four checksums, so both stay usable and switching folders never re-prepares.
Without a source folder the name's own folder is used as prepared. A cache from before checksums
is read back and hashed once, and its checksums recorded. `load_splits` returns the identity
(name and checksums), which evaluation writes into eval.json and the exported model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from bitnet.errors import DataError  # defined with the other user errors; still importable from here
from bitnet.input.idx import (  # reading IDX files needs no TFDS (idx.py); still importable from here
    IDX_FILES,
    IDX_UINT8,
    MNIST_DIR_ENV,
    check_idx_arrays,
    find_idx_files,
    read_bytes,
    read_idx,
    read_idx_folder,
)

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
# md5 of the DECOMPRESSED files (the .gz headers differ between mirrors; the content must not).
MNIST_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}
KNOWN_DATASETS = ("mnist", "fashion_mnist", "kmnist")
NUM_CLASSES = 10
_READ_CHUNK = 10_000
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]*")
_METADATA_FILE = "metadata.json"  # TFDS's file for DatasetInfo.metadata, in the prepared folder
_KEY_LENGTH = 12  # hex digits of the content key that names a second data set under one name


def md5_decompressed(path: str | os.PathLike) -> str:
    """md5 of the file's content after gunzip, so it does not depend on the gzip header."""
    return hashlib.md5(read_bytes(Path(path))).hexdigest()


def idx_checksum(array: np.ndarray) -> str:
    """sha256 of `array` written as an uncompressed uint8 IDX file, header included.

    Computed from decoded arrays (a source folder or a prepared cache read back), yet equal to
    `gunzip -c FILE | sha256sum` of the file they came from, so a number traces to its files.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    digest = hashlib.sha256(bytes([0, 0, IDX_UINT8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def idx_checksums(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """`idx_checksum` of each of the four arrays, keyed as IDX_FILES."""
    return {key: idx_checksum(arrays[key]) for key in IDX_FILES}


def content_key(checksums: dict[str, str]) -> str:
    """Short hash of the four checksums: names the folder of a second data set under one name."""
    joined = "".join(checksums[key] for key in IDX_FILES)
    return hashlib.sha256(joined.encode()).hexdigest()[:_KEY_LENGTH]


def describe(identity: dict) -> str:
    """A data set's identity (`Splits.identity`) in a message: its name and short content key, "mnist [1a2b3c4d5e6f]"."""
    checksums = identity.get("checksums") or {}
    key = content_key(checksums) if all(name in checksums for name in IDX_FILES) else "no checksums"
    return f"{identity.get('name', '?')} [{key}]"


# ---------------------------------------------------------------------------------------------
# TFDS builder


@dataclasses.dataclass(eq=False)
class IdxConfig(tfds.core.BuilderConfig):
    """One config per data set name (and per other data under a name): each in its own folder."""

    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = NUM_CLASSES


def _config(name: str, image_shape: tuple[int, int] = (28, 28), num_classes: int = NUM_CLASSES) -> IdxConfig:
    """Builder config for data set `name`; its prepared files go to data_dir/bitnet_idx/<name>/."""
    return IdxConfig(
        name=name,
        description=f"{name} from four IDX files",
        image_shape=tuple(image_shape),
        num_classes=num_classes,
    )


class BitnetIdx(tfds.core.GeneratorBasedBuilder):
    """28x28-style digit data sets stored as IDX files, prepared in IDX file order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "IDX files to ArrayRecord, file order kept."}
    BUILDER_CONFIGS = [_config(name) for name in KNOWN_DATASETS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put the four IDX files ({', '.join(IDX_FILES.values())}, each optionally .gz) in a folder "
        "and pass it as manual_dir (bitnet: source_dir or $BITNET_MNIST_DIR)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=tuple(self.builder_config.image_shape), dtype=np.uint8, encoding="bytes"
                    ),
                    "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
                    "index": tfds.features.Scalar(dtype=np.int64),
                }
            ),
            metadata=tfds.core.MetadataDict(),  # the checksums, written with the prepared files
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
            # Keep IDX file order (examples sorted by integer key, not by key hash). This is a
            # DatasetInfo argument; a `disable_shuffling` class attribute is ignored by TFDS 4.9.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        arrays = _idx_arrays(self.builder_config, dl_manager)
        # Recorded from the arrays the examples are made of, saved atomically with them.
        self.info.metadata["checksums"] = idx_checksums(arrays)
        return {
            "train": self._generate_examples(arrays["train_images"], arrays["train_labels"]),
            "test": self._generate_examples(arrays["test_images"], arrays["test_labels"]),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[int, dict]]:
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image, "label": int(label), "index": i}


def _manual_folder(dl_manager: tfds.download.DownloadManager) -> Path | None:
    """The manual_dir when one was given and is not empty, else None (TFDS raises in that case)."""
    try:
        return Path(os.fspath(dl_manager.manual_dir))
    except (AssertionError, ValueError):
        return None


def _idx_arrays(builder_config: IdxConfig, dl_manager: tfds.download.DownloadManager) -> dict[str, np.ndarray]:
    """The four arrays from the manual folder, or for MNIST from a checked download."""
    folder = _manual_folder(dl_manager)
    if folder is not None:
        arrays = read_idx_folder(folder)
    elif builder_config.name == "mnist":
        check_reachable(MNIST_URL)
        arrays = _download_mnist(dl_manager)
    else:
        raise DataError(
            f"no IDX folder given for data set {builder_config.name!r} and only mnist can be downloaded; "
            "pass source_dir"
        )
    image_shape = arrays["train_images"].shape[1:]
    if image_shape != tuple(builder_config.image_shape):
        raise DataError(
            f"{builder_config.name} images are {image_shape}, expected {tuple(builder_config.image_shape)}; "
            f"check the IDX folder or use another data set name"
        )
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    if labels.size and labels.max() >= builder_config.num_classes:
        raise DataError(
            f"{builder_config.name} has label {labels.max()} but only {builder_config.num_classes} classes; "
            f"check the IDX folder or use another data set name"
        )
    return arrays


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """DataError at once if `url`'s host cannot be connected to, instead of TFDS retrying each file
    for minutes on an offline machine. Skipped behind a proxy, which only the download can test."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in urllib.request.getproxies():
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise DataError(
            f"cannot reach {parts.hostname}:{port} to download MNIST ({type(e).__name__}: {e}); offline, "
            f"pass source_dir or set {MNIST_DIR_ENV} to a folder with the four IDX files"
        ) from None


def _download_mnist(dl_manager: Any) -> dict[str, np.ndarray]:
    """Download the four MNIST files and check the md5 of their decompressed content.

    `check_reachable` runs first: offline, TFDS would retry each file for about 3 minutes.
    """
    urls = {key: f"{MNIST_URL}{name}.gz" for key, name in IDX_FILES.items()}
    try:
        paths = dl_manager.download(urls)
    except (
        OSError,
        tfds.download.DownloadError,
    ) as e:  # requests' errors are OSErrors; HTTP status -> DownloadError
        raise DataError(
            f"cannot download MNIST from {MNIST_URL} ({type(e).__name__}); "
            f"pass source_dir or set {MNIST_DIR_ENV} to a folder with the four IDX files"
        ) from e
    arrays = {}
    for key, path in paths.items():
        path = Path(os.fspath(path))
        digest = md5_decompressed(path)
        if digest != MNIST_MD5[key]:
            raise DataError(
                f"downloaded {IDX_FILES[key]}.gz ({path}) has md5 {digest}, expected {MNIST_MD5[key]}; "
                f"delete it and retry, or pass a folder with the IDX files"
            )
        arrays[key] = read_idx(path, expected_ndim=3 if key.endswith("images") else 1)
    check_idx_arrays(arrays, f"MNIST download from {MNIST_URL}")
    return arrays


# ---------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """Train / validation / test arrays: images flattened uint8 [N, H*W], labels int32 [N]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = NUM_CLASSES
    # {"name", "checksums": {train_images, ...: `idx_checksum` of the whole file}}: which data these
    # are, whatever subset was taken (subsets and validation_size are in the run's config).
    identity: dict = dataclasses.field(default_factory=dict)


def _check_name(name: str) -> None:
    """Data set names become folder names, so keep them to one safe path component."""
    if not _NAME_PATTERN.fullmatch(name):
        raise DataError(f"data set name {name!r} is not valid; use lowercase letters, digits and underscores")


def _folder_config(name: str, arrays: dict[str, np.ndarray]) -> IdxConfig:
    """Config of a data set not known in advance: image shape and class count from its arrays."""
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    num_classes = max(NUM_CLASSES, int(labels.max()) + 1 if labels.size else 0)
    return _config(name, arrays["train_images"].shape[1:], num_classes)


def _builder(config_name: str, data_dir: str | None) -> BitnetIdx:
    """The builder of data_dir/bitnet_idx/<config_name>/ (a default config for names not known in code)."""
    config = config_name if config_name in KNOWN_DATASETS else _config(config_name)
    return BitnetIdx(config=config, data_dir=data_dir, file_format="array_record")


def _existing_builder(config_name: str, data_dir: str | None) -> tfds.core.DatasetBuilder | None:
    """The builder of the prepared folder data_dir/bitnet_idx/<config_name>/, None if there is none."""
    builder = _builder(config_name, data_dir)
    # TFDS writes into an `incomplete.*` folder and renames it, so the folder exists only when complete
    # (`is_prepared()` would log a warning for a folder that does not exist yet).
    if not builder.data_path.exists():
        return None
    # The shape of an unknown data set is stored with its prepared files, not in code.
    return builder if config_name in KNOWN_DATASETS else tfds.builder_from_directory(builder.data_path)


def _prepare(builder_config: str | IdxConfig, source_dir: str | None, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """Prepare the ArrayRecord files of the TFDS `builder_config` from source_dir (None: download MNIST)."""
    builder = BitnetIdx(config=builder_config, data_dir=data_dir, file_format="array_record")
    tfds.disable_progress_bar()  # one-time preparation: the log line is enough, no bars in logs
    logging.info("preparing %s once into %s", source_dir or "the MNIST download", builder.data_dir)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=source_dir))
    except FileExistsError:
        # Another process (a sweep's parallel runs on a fresh machine) prepared the same folder first
        # and TFDS's final rename found it: use that one; the caller checks its checksums.
        logging.info("%s was prepared by another process meanwhile: using it", builder.data_path)
        return BitnetIdx(config=builder_config, data_dir=data_dir, file_format="array_record")
    return builder


def _read_prepared(builder: tfds.core.DatasetBuilder) -> dict[str, np.ndarray]:
    """The four arrays of a prepared data set, read back whole, shaped and typed as in the IDX files."""
    sources = builder.as_data_source()
    arrays = {}
    for split in ("train", "test"):
        images, labels = _read_range(sources[split], 0, len(sources[split]), builder.data_dir)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.uint8)
    return arrays


def _prepared_checksums(builder: tfds.core.DatasetBuilder) -> dict[str, str]:
    """The checksums recorded with a prepared data set.

    A cache prepared before checksums were recorded is read back and hashed (a few seconds for
    MNIST), and the result recorded, so it is identified like any other from then on.
    """
    path = Path(os.fspath(builder.data_path)) / _METADATA_FILE
    try:
        recorded = json.loads(path.read_text()).get("checksums")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        recorded = None
    if recorded:
        return recorded
    logging.info("%s has no checksums (prepared before they were recorded): hashing it once", path.parent)
    checksums = idx_checksums(_read_prepared(builder))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent runs may hash it at once
    try:
        tmp.write_text(json.dumps({"checksums": checksums}))
        os.replace(tmp, path)
    except OSError as e:  # a read-only or full cache still loads, hashed again next time
        logging.warning("cannot record the checksums in %s (%s); they will be computed again next time", path, e)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return checksums


def _checked(
    builder: tfds.core.DatasetBuilder, wanted: dict[str, str] | None
) -> tuple[tfds.core.DatasetBuilder, dict[str, str]]:
    """(builder, its checksums), which must be `wanted` when a source folder was given."""
    checksums = _prepared_checksums(builder)
    if wanted is not None and checksums != wanted:
        raise DataError(
            f"prepared data in {builder.data_dir} differ from the IDX files they were prepared from "
            "(were the files replaced while preparing?); delete that folder and retry"
        )
    return builder, checksums


def _prepared_builder(
    name: str, source_dir: str | None, data_dir: str | None
) -> tuple[tfds.core.DatasetBuilder, dict[str, str]]:
    """A builder whose ArrayRecord files hold the data of source_dir, preparing them when needed,
    and their checksums. Without source_dir: the name's own prepared data, or MNIST's download.

    The first data prepared under `name` own bitnet_idx/<name>/; a source folder with other data is
    prepared beside them in bitnet_idx/<name>-<content key>/, so no folder is answered by the cache
    of another and both stay usable.
    """
    _check_name(name)
    arrays = read_idx_folder(source_dir) if source_dir is not None else None  # clear errors before TFDS
    wanted = idx_checksums(arrays) if arrays is not None else None
    known = name in KNOWN_DATASETS
    own = _existing_builder(name, data_dir)
    if own is None:
        if arrays is None and name != "mnist":
            raise DataError(
                f"data set {name!r} is not prepared in {_builder(name, data_dir).data_dir} and only mnist can "
                f"be downloaded; pass source_dir (a folder with the four IDX files) or set {MNIST_DIR_ENV}"
            )
        return _checked(_prepare(name if known else _folder_config(name, arrays), source_dir, data_dir), wanted)
    checksums = _prepared_checksums(own)
    if wanted is None or checksums == wanted:
        return own, checksums
    keyed = f"{name}-{content_key(wanted)}"
    builder = _existing_builder(keyed, data_dir)
    if builder is None:
        logging.info(
            "IDX folder %s holds other data than the %s prepared in %s: preparing it beside it",
            source_dir, name, own.data_dir,
        )
        builder = _prepare(_config(keyed) if known else _folder_config(keyed, arrays), source_dir, data_dir)
    return _checked(builder, wanted)


def _read_range(source: Any, start: int, stop: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Examples start..stop-1 of a TFDS data source as (images [n, H, W] uint8, labels int32), in chunks."""
    images, labels, index = [], [], []
    for chunk_start in range(start, stop, _READ_CHUNK):
        examples = source.__getitems__(range(chunk_start, min(stop, chunk_start + _READ_CHUNK)))
        images.extend(e["image"] for e in examples)
        labels.extend(e["label"] for e in examples)
        index.extend(e["index"] for e in examples)
    if not np.array_equal(np.asarray(index, np.int64), np.arange(start, stop)):
        raise DataError(
            f"prepared {name} is not in IDX file order; delete its folder under data_dir and retry"
        )
    shape = tuple(source.dataset_info.features["image"].shape)
    images = np.stack(images) if images else np.zeros((0, *shape), np.uint8)
    return images.astype(np.uint8, copy=False), np.asarray(labels, np.int32)


def _subset_size(subset: int | None, available: int, what: str) -> int:
    """`subset` examples out of `available`; None means all."""
    if subset is None:
        return available
    if not 0 < subset <= available:
        raise DataError(
            f"{what} must be between 1 and {available}, got {subset}; lower it or use a larger data set"
        )
    return subset


def load_splits(
    name: str = "mnist",
    source_dir: str | None = None,
    data_dir: str | None = None,
    validation_size: int = 10000,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> Splits:
    """Train / validation / test numpy arrays of an IDX data set, prepared once with TFDS, in file order.

    source_dir: folder with the four IDX files; for "mnist" it defaults to $BITNET_MNIST_DIR, else
    MNIST is downloaded (other names need a folder). It is read and hashed on every call: the data
    loaded are always its data (see the module docstring for where each data set is prepared).
    data_dir: TFDS cache (default ~/tensorflow_datasets); the first call prepares ArrayRecord files
    there, later calls only read them. Without source_dir the name's prepared data are used as they
    are. The returned `identity` names the data and the checksums of their whole files. Validation
    is the last `validation_size` images of the train file, train the rest. Subsets keep the first k
    of train and test (smoke runs) and cap validation to the smaller subset, so a smoke run never
    reads a whole split.
    """
    if source_dir is None and name == "mnist":  # the variable names MNIST's folder, never another set's
        source_dir = os.environ.get(MNIST_DIR_ENV) or None
    builder, checksums = _prepared_builder(name, source_dir, data_dir)
    sources = builder.as_data_source()
    train_source, test_source = sources["train"], sources["test"]
    num_train_file = len(train_source)
    if not 0 <= validation_size < num_train_file:
        raise DataError(
            f"validation_size {validation_size} must be in [0, {num_train_file}) for {name}'s "
            f"{num_train_file} training images; lower it"
        )
    num_train = _subset_size(train_subset, num_train_file - validation_size, "train_subset")
    num_test = _subset_size(test_subset, len(test_source), "test_subset")
    subsets = [s for s in (train_subset, test_subset) if s is not None]
    num_validation = min([validation_size, *subsets])
    first_validation = num_train_file - validation_size

    train = _read_range(train_source, 0, num_train, name)
    validation = _read_range(train_source, first_validation, first_validation + num_validation, name)
    test = _read_range(test_source, 0, num_test, name)
    image_shape = tuple(train_source.dataset_info.features["image"].shape)
    flat = lambda images: images.reshape(len(images), int(np.prod(images.shape[1:])))  # noqa: E731  (0 images: a final fit's validation)
    return Splits(
        train_images=flat(train[0]),
        train_labels=train[1],
        validation_images=flat(validation[0]),
        validation_labels=validation[1],
        test_images=flat(test[0]),
        test_labels=test[1],
        image_shape=image_shape,
        num_classes=builder.info.features["label"].num_classes,
        identity={"name": name, "checksums": checksums},
    )


# ---------------------------------------------------------------------------------------------
# Batching


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Order of the n examples in one epoch, a pure function of (seed, epoch) so runs can resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """Example indices of an epoch's batches, [n // batch_size, batch_size]; the remainder is dropped.

    Resuming at step k of an epoch is `batch_indices(...)[k:]`.
    """
    if not 0 < batch_size <= n:
        raise DataError(f"batch_size {batch_size} must be between 1 and the {n} examples; lower it")
    num_batches = n // batch_size
    return epoch_permutation(seed, epoch, n)[: num_batches * batch_size].reshape(num_batches, batch_size)
