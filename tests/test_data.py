"""Tests of bitnet.input.data: IDX reading and checks, TFDS preparation without TensorFlow, splits, batching."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bitnet.input import data
from tests.idx_fixtures import idx_bytes, write_idx, write_idx_folder

REAL_MNIST_DIR = os.environ.get(data.MNIST_DIR_ENV)
needs_real_mnist = pytest.mark.skipif(
    not REAL_MNIST_DIR, reason=f"set {data.MNIST_DIR_ENV} to a folder with the real MNIST IDX files"
)
MNIST_FIRST_TRAIN = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
MNIST_FIRST_TEST = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
# `gunzip -c FILE | sha256sum` of the four MNIST files: the identity eval.json records for MNIST.
MNIST_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@pytest.fixture(autouse=True)
def no_mnist_env(monkeypatch):
    """load_splits must not silently pick up the real data set from the environment in these tests."""
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_idx_folder(tmp_path_factory.mktemp("idx") / "synthetic", num_train=200, num_test=100, seed=0)


@pytest.fixture(scope="module")
def synthetic_arrays(synthetic) -> dict[str, np.ndarray]:
    return data.read_idx_folder(synthetic)


def test_preparing_and_loading_never_import_tensorflow(synthetic, tmp_path):
    """bitnet.input.data prepares and reads through tfds without TensorFlow: it must not import it, installed or not.

    In a fresh interpreter, so modules imported by other tests do not count.
    """
    code = (
        "import sys\n"
        "from bitnet.input import data\n"
        "splits = data.load_splits('mnist', sys.argv[1], sys.argv[2], validation_size=50)\n"
        "assert len(splits.train_labels) == 150, len(splits.train_labels)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'tensorflow'))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != data.MNIST_DIR_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code, str(synthetic), str(tmp_path / "tfds")],
        cwd=Path(__file__).resolve().parent.parent, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path, suffix):
    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = write_idx(tmp_path / f"images{suffix}", array)
    out = data.read_idx(path, expected_ndim=3)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, array)
    labels = np.arange(9, dtype=np.uint8)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / f"labels{suffix}", labels), 1), labels)


def test_read_idx_gzip_detected_by_content(tmp_path):
    """TFDS download caches may drop the .gz suffix; gzip content is recognised anyway."""
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "no_suffix"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(data.read_idx(path), array)


def _error(path: Path, content: bytes, compress: bool = True, expected_ndim: int | None = None) -> str:
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(data.DataError) as info:
        data.read_idx(path, expected_ndim=expected_ndim)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_read_idx_bad_magic(tmp_path):
    good = idx_bytes(np.zeros((2, 3), np.uint8))
    assert "magic" in _error(tmp_path / "a.gz", b"\x01" + good[1:])
    assert "dtype code 0x0d" in _error(tmp_path / "b.gz", good[:2] + b"\x0d" + good[3:])
    assert "magic" in _error(tmp_path / "c.gz", b"")


def test_read_idx_truncated_and_oversized(tmp_path):
    good = idx_bytes(np.zeros((4, 5, 6), np.uint8))
    message = _error(tmp_path / "t.gz", good[:-7])
    assert "truncated" in message and "120" in message and "113" in message
    message = _error(tmp_path / "o", good + b"\x00\x00", compress=False)
    assert "oversized" in message and "120" in message and "122" in message
    assert "header" in _error(tmp_path / "h.gz", good[:9])


def test_read_idx_wrong_ndim(tmp_path):
    message = _error(tmp_path / "labels.gz", idx_bytes(np.zeros((4, 5), np.uint8)), expected_ndim=1)
    assert "2 dimensions, expected 1" in message


def test_read_idx_corrupt_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))
    assert "gzip" in _error(tmp_path / "cut.gz", compressed[: len(compressed) // 2], compress=False)
    assert "gzip" in _error(tmp_path / "plain.gz", b"not gzip at all", compress=False)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="cannot read IDX file .*nothing.gz"):
        data.read_idx(tmp_path / "nothing.gz")


# ---------------------------------------------------------------------------------------------
# folders


def test_find_idx_files_gz_or_raw(tmp_path, synthetic):
    folder = tmp_path / "mixed"
    shutil.copytree(synthetic, folder)
    raw = folder / data.IDX_FILES["test_labels"]
    raw.write_bytes(gzip.decompress((folder / f"{raw.name}.gz").read_bytes()))
    (folder / f"{raw.name}.gz").unlink()
    paths = data.find_idx_files(folder)
    assert set(paths) == set(data.IDX_FILES)
    assert paths["test_labels"] == raw and paths["train_images"].name.endswith(".gz")


def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match=f"{tmp_path / 'absent'} does not exist.*{data.MNIST_DIR_ENV}"):
        data.find_idx_files(tmp_path / "absent")


def test_missing_file(tmp_path, synthetic):
    folder = tmp_path / "incomplete"
    shutil.copytree(synthetic, folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match=r"missing t10k-labels-idx1-ubyte\(\.gz\); put the four"):
        data.read_idx_folder(folder)


def test_read_idx_folder(synthetic_arrays):
    arrays = synthetic_arrays
    assert arrays["train_images"].shape == (200, 28, 28) and arrays["test_images"].shape == (100, 28, 28)
    assert arrays["train_labels"].shape == (200,) and arrays["test_labels"].shape == (100,)
    assert set(np.unique(arrays["train_labels"])) == set(range(10))


def test_label_count_mismatch(tmp_path, synthetic):
    folder = tmp_path / "mismatch"
    shutil.copytree(synthetic, folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(199, np.uint8))
    with pytest.raises(data.DataError, match="train split has 200 images but 199 labels"):
        data.read_idx_folder(folder)


def test_image_shape_mismatch(tmp_path, synthetic):
    folder = tmp_path / "shapes"
    shutil.copytree(synthetic, folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((100, 32, 32), np.uint8))
    with pytest.raises(data.DataError, match=r"train images are \(28, 28\) but test images are \(32, 32\)"):
        data.read_idx_folder(folder)


# ---------------------------------------------------------------------------------------------
# TFDS preparation and splits


def test_a_folder_prepared_meanwhile_by_another_process_is_used(tmp_path, synthetic, synthetic_arrays, monkeypatch):
    """Runs started together on a fresh machine all prepare; each loser's final rename finds the folder there."""
    original = data.BitnetIdx.download_and_prepare

    def prepared_by_another_process_first(self, *args, **kwargs):
        original(data.BitnetIdx(config=self.builder_config, data_dir=str(tmp_path / "tfds"), file_format="array_record"), *args, **kwargs)
        raise FileExistsError(f"Cannot rename {self.data_dir}/incomplete. Destination {self.data_path} already exists.")

    monkeypatch.setattr(data.BitnetIdx, "download_and_prepare", prepared_by_another_process_first)
    splits = data.load_splits("mnist", str(synthetic), str(tmp_path / "tfds"), validation_size=50)
    np.testing.assert_array_equal(splits.test_labels, synthetic_arrays["test_labels"])
    assert splits.identity["checksums"] == data.idx_checksums(synthetic_arrays)


def test_load_splits_synthetic(tmp_path, synthetic, synthetic_arrays):
    source = tmp_path / "source"
    shutil.copytree(synthetic, source)
    data_dir = tmp_path / "tfds"
    splits = data.load_splits("mnist", str(source), str(data_dir), validation_size=50)
    arrays = synthetic_arrays
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    assert splits.train_images.shape == (150, 784) and splits.train_images.dtype == np.uint8
    assert splits.validation_images.shape == (50, 784) and splits.test_images.shape == (100, 784)
    assert splits.train_labels.dtype == np.int32 and splits.test_labels.dtype == np.int32
    assert splits.image_shape == (28, 28) and splits.num_classes == 10
    # File order; validation is the last 50 of the train file.
    np.testing.assert_array_equal(splits.train_images, flat(arrays["train_images"][:150]))
    np.testing.assert_array_equal(splits.train_labels, arrays["train_labels"][:150])
    np.testing.assert_array_equal(splits.validation_images, flat(arrays["train_images"][150:]))
    np.testing.assert_array_equal(splits.validation_labels, arrays["train_labels"][150:])
    np.testing.assert_array_equal(splits.test_images, flat(arrays["test_images"]))
    np.testing.assert_array_equal(splits.test_labels, arrays["test_labels"])
    prepared = data_dir / "bitnet_idx" / "mnist" / "1.0.0"
    assert (
        sorted(p.name.split(".")[1].split("-")[0] for p in prepared.glob("bitnet_idx-*"))
        == ["array_record"] * 2
    )

    # Second call: only the cache is read, the source folder is no longer needed.
    shutil.rmtree(source)
    again = data.load_splits(
        "mnist", None, str(data_dir), validation_size=20, train_subset=30, test_subset=10
    )
    np.testing.assert_array_equal(again.train_images, flat(arrays["train_images"][:30]))
    np.testing.assert_array_equal(again.validation_labels, arrays["train_labels"][180:190])
    np.testing.assert_array_equal(again.test_labels, arrays["test_labels"][:10])
    assert again.validation_images.shape == (10, 784)

    # Another name is prepared in its own folder: no mixing with the cached "mnist".
    other = write_idx_folder(tmp_path / "other", num_train=60, num_test=30, seed=1)
    kmnist = data.load_splits("kmnist", str(other), str(data_dir), validation_size=10)
    assert kmnist.train_images.shape == (50, 784) and kmnist.test_images.shape == (30, 784)
    assert (data_dir / "bitnet_idx" / "kmnist" / "1.0.0").is_dir()
    np.testing.assert_array_equal(kmnist.test_labels, data.read_idx_folder(other)["test_labels"])
    assert len(data.load_splits("mnist", None, str(data_dir), validation_size=50).test_labels) == 100


def test_load_splits_custom_name_and_shape(tmp_path):
    folder = tmp_path / "letters"
    folder.mkdir()
    rng = np.random.default_rng(3)
    arrays = {
        "train_images": rng.integers(0, 256, (40, 8, 6), dtype=np.uint8),
        "train_labels": rng.integers(0, 26, 40, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (12, 8, 6), dtype=np.uint8),
        "test_labels": rng.integers(0, 26, 12, dtype=np.uint8),
    }
    arrays["train_labels"][0] = 25
    for key, array in arrays.items():
        write_idx(folder / data.IDX_FILES[key], array)  # uncompressed
    splits = data.load_splits("my_letters", str(folder), str(tmp_path / "tfds"), validation_size=10)
    assert splits.image_shape == (8, 6) and splits.num_classes == 26
    np.testing.assert_array_equal(splits.validation_images, arrays["train_images"][30:].reshape(10, 48))
    shutil.rmtree(folder)
    cached = data.load_splits("my_letters", None, str(tmp_path / "tfds"), validation_size=10)
    np.testing.assert_array_equal(cached.test_images, arrays["test_images"].reshape(12, 48))


def test_mnist_dir_env(tmp_path, synthetic, monkeypatch):
    """$BITNET_MNIST_DIR is MNIST's folder: used for "mnist", never for another name."""
    monkeypatch.setenv(data.MNIST_DIR_ENV, str(synthetic))
    with pytest.raises(data.DataError, match="only mnist can be downloaded"):
        data.load_splits("kmnist", None, str(tmp_path))
    assert len(data.load_splits("mnist", None, str(tmp_path), validation_size=10).test_labels) == 100


def test_load_splits_errors(tmp_path, synthetic):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(data.DataError, match="only mnist can be downloaded; pass source_dir"):
        data.load_splits("fashion_mnist", None, data_dir)
    with pytest.raises(data.DataError, match="is not valid"):
        data.load_splits("../escape", str(synthetic), data_dir)
    with pytest.raises(data.DataError, match=f"{tmp_path / 'absent'} does not exist"):
        data.load_splits("kmnist", str(tmp_path / "absent"), data_dir)
    with pytest.raises(data.DataError, match=r"validation_size 200 must be in \[0, 200\)"):
        data.load_splits("mnist", str(synthetic), data_dir, validation_size=200)
    with pytest.raises(data.DataError, match="train_subset must be between 1 and 150, got 151"):
        data.load_splits("mnist", None, data_dir, validation_size=50, train_subset=151)
    # Errors found while TFDS prepares come out as DataError and leave nothing that looks prepared.
    folder = tmp_path / "big"
    folder.mkdir()
    for key in data.IDX_FILES:
        shape = (5, 32, 32) if key.endswith("images") else (5,)
        write_idx(folder / f"{data.IDX_FILES[key]}.gz", np.zeros(shape, np.uint8))
    with pytest.raises(data.DataError, match=r"fashion_mnist images are \(32, 32\), expected \(28, 28\)"):
        data.load_splits("fashion_mnist", str(folder), data_dir, validation_size=1)
    assert not (tmp_path / "tfds" / "bitnet_idx" / "fashion_mnist" / "1.0.0").exists()


def test_download_mnist_checks_md5(tmp_path, synthetic):
    class LocalDownloads:  # stands in for the TFDS download manager (no internet in tests)
        def __init__(self, folder):
            self.folder = Path(folder)

        def download(self, urls):
            assert all(url.startswith(data.MNIST_URL) for url in urls.values())
            return {key: self.folder / url.rsplit("/", 1)[1] for key, url in urls.items()}

    with pytest.raises(data.DataError, match="train-images-idx3-ubyte.gz .* has md5 .*, expected 6bbc9ace"):
        data._download_mnist(LocalDownloads(synthetic))


def test_download_errors_become_data_error():
    class Offline:
        def download(self, urls):
            raise ConnectionError("no network")

    with pytest.raises(data.DataError, match=f"cannot download MNIST .*set {data.MNIST_DIR_ENV}"):
        data._download_mnist(Offline())


def test_offline_download_fails_at_once(tmp_path, monkeypatch):
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(data, "MNIST_URL", f"http://127.0.0.1:{closed_port.getsockname()[1]}/")
    start = time.perf_counter()
    with pytest.raises(data.DataError, match=f"cannot reach 127.0.0.1:.* to download MNIST .*set {data.MNIST_DIR_ENV}"):
        data.load_splits("mnist", None, str(tmp_path / "tfds"))
    assert time.perf_counter() - start < 10
    closed_port.close()


@pytest.fixture
def http_server(synthetic):
    """Serves the synthetic folder over HTTP on localhost, as a stand-in for the MNIST mirror."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(synthetic))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_load_splits_downloads_mnist(tmp_path, monkeypatch, synthetic, synthetic_arrays, http_server):
    """Without a folder, "mnist" goes through the TFDS download manager and the md5 check."""
    md5 = {key: data.md5_decompressed(path) for key, path in data.find_idx_files(synthetic).items()}
    monkeypatch.setattr(data, "MNIST_URL", http_server)
    monkeypatch.setattr(data, "MNIST_MD5", md5)
    splits = data.load_splits("mnist", None, str(tmp_path / "tfds"), validation_size=40)
    np.testing.assert_array_equal(splits.test_labels, synthetic_arrays["test_labels"])
    np.testing.assert_array_equal(splits.validation_labels, synthetic_arrays["train_labels"][160:])
    monkeypatch.setattr(data, "MNIST_MD5", {**md5, "test_labels": "0" * 32})
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz .* has md5 .*, expected 0000"):
        data.load_splits("mnist", None, str(tmp_path / "tfds2"))


# ---------------------------------------------------------------------------------------------
# identity of the prepared data


def _identity(name: str, folder: Path) -> dict:
    return {"name": name, "checksums": data.idx_checksums(data.read_idx_folder(folder))}


def _prepared_folders(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "bitnet_idx").iterdir() if not p.name.startswith("."))


def _load(name: str, data_dir: Path, folder: Path | None) -> data.Splits:
    return data.load_splits(name, folder and str(folder), str(data_dir), validation_size=10)


def _assert_loads(splits: data.Splits, folder: Path, name: str) -> None:
    """`splits` (validation_size 10) are the data of `folder`, and say so."""
    arrays = data.read_idx_folder(folder)
    np.testing.assert_array_equal(splits.train_images, arrays["train_images"][:-10].reshape(-1, 784))
    np.testing.assert_array_equal(splits.validation_labels, arrays["train_labels"][-10:])
    np.testing.assert_array_equal(splits.test_labels, arrays["test_labels"])
    assert splits.identity == _identity(name, folder)


def test_idx_checksum_is_sha256_of_the_file(tmp_path, synthetic, synthetic_arrays):
    """The checksum of a decoded array is `gunzip -c FILE | sha256sum`: a number traces to its files."""
    for key, path in data.find_idx_files(synthetic).items():
        expected = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
        assert data.idx_checksum(synthetic_arrays[key]) == expected
    other = data.idx_checksums(data.read_idx_folder(write_idx_folder(tmp_path / "b", 200, 100, seed=1)))
    assert all(other[key] != value for key, value in data.idx_checksums(synthetic_arrays).items())
    # The shape is part of the file: the same bytes under another shape are other data.
    images = synthetic_arrays["train_images"]
    assert data.idx_checksum(images) != data.idx_checksum(images.reshape(-1, 14, 56))


@pytest.mark.parametrize("name", ["mnist", "my_digits"])
@pytest.mark.parametrize("first_seed", [0, 1])
def test_two_folders_under_one_name(tmp_path, name, first_seed):
    """Other data under a prepared name are prepared beside it, never answered by its cache."""
    first = write_idx_folder(tmp_path / "first", num_train=60, num_test=30, seed=first_seed)
    second = write_idx_folder(tmp_path / "second", num_train=60, num_test=30, seed=1 - first_seed)
    data_dir = tmp_path / "tfds"
    load = functools.partial(_load, name, data_dir)
    _assert_loads(load(first), first, name)
    _assert_loads(load(second), second, name)
    key = data.content_key(_identity(name, second)["checksums"])
    assert _prepared_folders(data_dir) == sorted([name, f"{name}-{key}"])
    # Both stay usable, in any order, without preparing again; no folder means the name's own data.
    _assert_loads(load(first), first, name)
    _assert_loads(load(second), second, name)
    _assert_loads(load(None), first, name)
    assert len(_prepared_folders(data_dir)) == 2


def test_gz_and_raw_copy_share_one_cache(tmp_path, synthetic, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in data.find_idx_files(synthetic).values():
        (raw / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    data_dir = str(tmp_path / "tfds")
    gz_splits = data.load_splits("mnist", str(synthetic), data_dir, validation_size=10)
    monkeypatch.setattr(data, "_prepare", lambda *args: pytest.fail("the raw copy was prepared again"))
    raw_splits = data.load_splits("mnist", str(raw), data_dir, validation_size=10)
    assert raw_splits.identity == gz_splits.identity == _identity("mnist", synthetic)
    np.testing.assert_array_equal(raw_splits.train_images, gz_splits.train_images)
    assert _prepared_folders(tmp_path / "tfds") == ["mnist"]


def _forget_checksums(data_dir: Path, folder_name: str) -> Path:
    """Make a prepared folder look like one prepared before checksums were recorded."""
    path = data_dir / "bitnet_idx" / folder_name / "1.0.0" / "metadata.json"
    path.unlink()
    return path


@pytest.mark.parametrize("name", ["mnist", "my_digits"])
def test_cache_without_checksums_is_verified(tmp_path, name):
    first = write_idx_folder(tmp_path / "first", num_train=60, num_test=30, seed=0)
    second = write_idx_folder(tmp_path / "second", num_train=60, num_test=30, seed=1)
    data_dir = tmp_path / "tfds"
    load = functools.partial(_load, name, data_dir)
    load(first)
    # No source: the old cache is read back and hashed; its identity is recorded for next time.
    metadata = _forget_checksums(data_dir, name)
    _assert_loads(load(None), first, name)
    assert json.loads(metadata.read_text())["checksums"] == _identity(name, first)["checksums"]
    # Its own folder: accepted once hashed, nothing prepared again.
    _forget_checksums(data_dir, name)
    _assert_loads(load(first), first, name)
    assert _prepared_folders(data_dir) == [name]
    # Another folder: the old cache is not taken for it, and keeps its own identity.
    _forget_checksums(data_dir, name)
    _assert_loads(load(second), second, name)
    _assert_loads(load(None), first, name)
    assert len(_prepared_folders(data_dir)) == 2


def test_checksums_that_cannot_be_recorded(tmp_path, synthetic, monkeypatch):
    """A read-only or full cache without checksums still loads, hashed, and is left as it was."""
    data_dir = tmp_path / "tfds"
    _load("mnist", data_dir, synthetic)
    metadata = _forget_checksums(data_dir, "mnist")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.os, "replace", full_disk)
    assert _load("mnist", data_dir, None).identity == _identity("mnist", synthetic)
    assert sorted(p.name for p in metadata.parent.iterdir() if "metadata" in p.name) == []


def test_prepared_data_that_differ_from_their_key_are_refused(tmp_path):
    first = write_idx_folder(tmp_path / "first", num_train=60, num_test=30, seed=0)
    second = write_idx_folder(tmp_path / "second", num_train=60, num_test=30, seed=1)
    data_dir = tmp_path / "tfds"
    for folder in (first, second):
        data.load_splits("mnist", str(folder), str(data_dir), validation_size=10)
    keyed = f"mnist-{data.content_key(_identity('mnist', second)['checksums'])}"
    metadata = data_dir / "bitnet_idx" / keyed / "1.0.0" / "metadata.json"
    metadata.write_text(json.dumps({"checksums": _identity("mnist", first)["checksums"]}))
    with pytest.raises(data.DataError) as info:
        data.load_splits("mnist", str(second), str(data_dir), validation_size=10)
    message = str(info.value)
    assert f"{keyed}/1.0.0 differ from the IDX files" in message and "delete that folder and retry" in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------
# batching


def test_batch_indices():
    batches = data.batch_indices(seed=1, epoch=0, n=103, batch_size=10)
    assert batches.shape == (10, 10)
    assert len(np.unique(batches)) == 100 and batches.min() >= 0 and batches.max() < 103
    np.testing.assert_array_equal(batches, data.batch_indices(1, 0, 103, 10))
    assert not np.array_equal(batches, data.batch_indices(1, 1, 103, 10))
    assert not np.array_equal(batches, data.batch_indices(2, 0, 103, 10))
    np.testing.assert_array_equal(batches.ravel(), data.epoch_permutation(1, 0, 103)[:100])
    assert sorted(data.epoch_permutation(5, 3, 50)) == list(range(50))
    assert data.batch_indices(0, 0, 7, 7).shape == (1, 7)
    with pytest.raises(data.DataError, match="batch_size 11 .* 10 examples"):
        data.batch_indices(0, 0, 10, 11)


# ---------------------------------------------------------------------------------------------
# real MNIST


@needs_real_mnist
def test_real_mnist_folder():
    arrays = data.read_idx_folder(REAL_MNIST_DIR)
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["test_images"].shape == (10000, 28, 28)
    assert arrays["train_labels"][:10].tolist() == MNIST_FIRST_TRAIN
    assert arrays["test_labels"][:10].tolist() == MNIST_FIRST_TEST
    assert np.bincount(arrays["train_labels"], minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(arrays["test_labels"], minlength=10).tolist() == MNIST_TEST_COUNTS


@needs_real_mnist
def test_real_mnist_md5():
    class LocalDownloads:
        def download(self, urls):
            return {key: Path(REAL_MNIST_DIR) / url.rsplit("/", 1)[1] for key, url in urls.items()}

    arrays = data._download_mnist(LocalDownloads())
    assert len(arrays["train_labels"]) == 60000


@needs_real_mnist
def test_real_mnist_load_splits(tmp_path):
    start = time.perf_counter()
    splits = data.load_splits("mnist", REAL_MNIST_DIR, str(tmp_path))
    print(f"prepare + load real MNIST: {time.perf_counter() - start:.1f} s")
    assert splits.train_images.shape == (50000, 784) and splits.validation_images.shape == (10000, 784)
    assert splits.test_images.shape == (10000, 784)
    assert splits.train_labels[:10].tolist() == MNIST_FIRST_TRAIN
    assert splits.test_labels[:10].tolist() == MNIST_FIRST_TEST
    all_train = np.concatenate([splits.train_labels, splits.validation_labels])
    assert np.bincount(all_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(splits.test_labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert splits.identity == {"name": "mnist", "checksums": MNIST_SHA256}
