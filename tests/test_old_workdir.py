"""A workdir written by the code before the trainers were merged (commit 62a4262) resumes with today's code."""

import importlib.util
import json
import os
import shutil

import numpy as np

from bitnet.training import binarized, train
from tests import idx_fixtures

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TIMING = ("examples_per_sec", "epoch_seconds")


def _config():
    spec = importlib.util.spec_from_file_location("old_workdir_config", os.path.join(FIXTURES, "old_workdir_config.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as file:
        return [{key: value for key, value in json.loads(line).items() if key not in TIMING} for line in file]


def test_the_old_workdir_resumes_to_the_uninterrupted_model(tmp_path, monkeypatch):
    source = idx_fixtures.write_idx_folder(tmp_path / "idx", num_train=300, num_test=120, seed=1)  # the data it trained on
    monkeypatch.setenv("BITNET_MNIST_DIR", str(source))
    monkeypatch.setenv("BITNET_DATA_DIR", str(tmp_path / "tfds"))
    old = tmp_path / "old"
    shutil.copytree(os.path.join(FIXTURES, "workdir_62a4262"), old)
    assert [(line["stage"], line["epoch"]) for line in _metrics(old)] == [("compressed", 1), ("compressed", 2), ("bitwise", 1)]

    train.train_and_evaluate(_config(), str(old))  # stage 2's second epoch, from the old latest checkpoint
    fresh = tmp_path / "fresh"
    train.train_and_evaluate(_config(), str(fresh))

    assert _metrics(old) == _metrics(fresh)
    segments = json.loads((old / "config.json").read_text())["provenance"]["segments"]
    assert [segment["status"] for segment in segments] == ["stopped", "finished"]
    assert segments[0]["code"]["commit"].startswith("62a4262")
    old_arrays, _ = binarized.load(str(old))
    fresh_arrays, _ = binarized.load(str(fresh))
    assert old_arrays.keys() == fresh_arrays.keys()
    for key in sorted(set(old_arrays) - {"meta"}):  # meta: the training segments differ
        np.testing.assert_array_equal(old_arrays[key], fresh_arrays[key], err_msg=key)
