"""A workdir written by the code before the trainers were merged (commit 62a4262) resumes with today's code
(bit for bit with a fresh run on the kind of CPU that wrote it)."""

import importlib.util
import json
import os
import shutil

import numpy as np

from bitnet.training import binarized, train
from bitnet.workdir import provenance
from tests import idx_fixtures

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TIMING = ("examples_per_sec", "epoch_seconds")
# The fixture's epochs were trained on this kind of CPU (its segment says "AMD EPYC", recorded before a CPU's kind
# named its vector instruction set; that machine had AVX2, and tests/invariants/amd-epyc-avx2.json is its record).
# Float results differ between kinds (an AVX-512 AMD EPYC gives other train losses from the first epoch), so the
# resumed run is checked bit for bit against a fresh one only on this kind; elsewhere its format, kept lines,
# schedule and model shapes.
FIXTURE_CPU_KIND = "AMD EPYC, AVX2"


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

    segments = json.loads((old / "config.json").read_text())["provenance"]["segments"]
    assert [segment["status"] for segment in segments] == ["stopped", "finished"]
    assert segments[0]["code"]["commit"].startswith("62a4262")
    old_lines, fresh_lines = _metrics(old), _metrics(fresh)
    assert old_lines[:3] == _metrics(os.path.join(FIXTURES, "workdir_62a4262"))  # the old lines kept as they were
    old_arrays, _ = binarized.load(str(old))
    fresh_arrays, _ = binarized.load(str(fresh))
    assert old_arrays.keys() == fresh_arrays.keys()
    if provenance.cpu_kind() != FIXTURE_CPU_KIND:  # the old epochs were computed on another kind of CPU: no bit-exact reference
        assert [(line["stage"], line["epoch"], line["step"]) for line in old_lines] == [(line["stage"], line["epoch"], line["step"]) for line in fresh_lines]
        for key in sorted(set(old_arrays) - {"meta"}):
            assert old_arrays[key].dtype == fresh_arrays[key].dtype and old_arrays[key].shape == fresh_arrays[key].shape, key
        return
    assert old_lines == fresh_lines
    for key in sorted(set(old_arrays) - {"meta"}):  # meta: the training segments differ
        np.testing.assert_array_equal(old_arrays[key], fresh_arrays[key], err_msg=key)
