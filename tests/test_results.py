"""Every published binarized model re-evaluates on the real MNIST test split exactly as published."""

import json
import os

import numpy as np
import pytest

from bitnet import data, evaluate, export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")


def _published() -> list[tuple[str, dict]]:
    path = os.path.join(RESULTS, "results.json")
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [(name, entry) for name, entry in sorted(json.load(file).items()) if "npz" in entry]


@pytest.fixture(scope="module")
def test_split():
    folder = os.environ.get("BITNET_MNIST_DIR")
    if not folder:
        pytest.skip("set BITNET_MNIST_DIR to the real MNIST folder")
    arrays = data.read_idx_folder(folder)
    return arrays["test_images"].reshape(len(arrays["test_images"]), -1), arrays["test_labels"]


@pytest.mark.parametrize("name, entry", _published(), ids=[name for name, _ in _published()])
def test_published_model_error(name, entry, test_split):
    images, labels = test_split
    arrays, meta = export.load_npz(os.path.join(RESULTS, entry["npz"]))
    error = float(np.mean(evaluate.packed_predictions(arrays, meta, images) != labels))
    assert error == entry["packed_error"] == meta["test_error"]
    run = name.rsplit("/", 1)[-1]
    with open(os.path.join(REPO, "RESULTS.md")) as file:
        rows = [line for line in file if f"| {run} |" in line]
    assert rows and all(f"{100 * error:.2f}" in row for row in rows), f"RESULTS.md lacks {run} at {100 * error:.2f} %"
