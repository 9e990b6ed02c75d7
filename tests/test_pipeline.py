"""The whole pipeline end to end: train both stages, resume, evaluate, export, recompute."""

import json
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from bitnet import configuration, data, evaluate, export, train
from configs import smoke
from tests import idx_fixtures, tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(source_dir, data_dir):
    """The shared tiny config with two hidden layers (48, 40), so the export covers a hidden-to-hidden layer."""
    config = tiny.tiny_config(source_dir, data_dir)
    config.model.hidden_sizes = (48, 40)
    return config


def metric_lines(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as file:
        return [json.loads(line) for line in file]


def binarized_arrays(workdir):
    arrays, meta = export.load_npz(os.path.join(workdir, "bitwise.npz"))
    return arrays, meta


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    source = idx_fixtures.write_idx_folder(root / "idx", num_train=300, num_test=120, seed=1)
    return source, root / "tfds"


def test_train_resume_evaluate_export(synthetic, tmp_path):
    source, data_dir = synthetic
    config = tiny_config(source, data_dir)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir)

    lines = metric_lines(workdir)
    assert [(m["stage"], m["epoch"]) for m in lines] == [("compressed", 1), ("compressed", 2), ("bitwise", 1), ("bitwise", 2)]
    assert all(np.isfinite(m["train_loss"]) and 0 <= m["val_error"] <= 1 for m in lines)
    assert os.listdir(os.path.join(workdir, "tensorboard"))

    # a rerun of a finished run trains nothing more
    train.train_and_evaluate(config, workdir)
    assert len(metric_lines(workdir)) == 4

    results = evaluate.evaluate_workdir(workdir)
    with open(os.path.join(workdir, "eval.json")) as file:
        assert json.load(file) == results
    assert results["num_examples"] == 120
    assert results["bitwise_error"] == results["packed_error"]
    # provenance: the two training processes (train, then the rerun) and the evaluation
    segments = results["provenance"]["training_segments"]
    assert [(s["status"], s["epochs"]) for s in segments] == [("finished", 4), ("finished", 0)]
    assert results["provenance"]["evaluation"]["code"] == segments[0]["code"]
    # the numbers name the data they were measured on, by the sha256 of each IDX file
    identity = {"name": config.data.name, "checksums": data.idx_checksums(data.read_idx_folder(source))}
    assert results["data"] == identity

    # recompute the reported errors independently from what was written
    splits = data.load_splits(**configuration.data_kwargs(config))
    encoding = configuration.encoding_of(config)
    inputs = encoding(splits.test_images)
    arrays, meta = binarized_arrays(workdir)
    assert meta["provenance"] == results["provenance"]
    assert meta["data"] == identity
    numpy_error = float(np.mean(export.numpy_predict(arrays, meta, inputs) != splits.test_labels))
    assert numpy_error == results["packed_error"]
    assert meta["test_error"] == numpy_error  # the exported model's own claim, recomputed with NumPy alone
    params = train.load_best_params(config, workdir, "compressed", jnp.asarray(inputs[:1]))
    predict = train.make_predict(train.make_model(config, "compressed", config.stage1))
    assert float(np.mean(np.asarray(predict(params, inputs)) != splits.test_labels)) == results["compressed_error"]
    assert results["compressed_error"] < 0.5  # the synthetic classes are easy: it learned something

    # losing stage 2 (e.g. a crash before it finished) redoes stage 2 only, with the same result
    shutil.rmtree(os.path.join(workdir, "checkpoints", "bitwise"))
    shutil.rmtree(os.path.join(workdir, "checkpoints", "binarized"))
    before = {key: value.copy() for key, value in arrays.items()}
    train.train_and_evaluate(config, workdir)
    lines = metric_lines(workdir)
    assert [(m["stage"], m["epoch"]) for m in lines].count(("compressed", 1)) == 1
    evaluate.evaluate_workdir(workdir)
    after, _ = binarized_arrays(workdir)
    for key in before:
        if key not in ("meta", "format"):
            np.testing.assert_array_equal(after[key], before[key])


def test_float_run(synthetic, tmp_path):
    source, data_dir = synthetic
    config = tiny_config(source, data_dir)
    config.run_kind = "float"
    config.encoding = "float"
    workdir = str(tmp_path / "float")
    train.train_and_evaluate(config, workdir)
    results = evaluate.evaluate_workdir(workdir)
    assert set(results) == {"run_kind", "encoding", "num_examples", "float_error", "provenance", "data"}
    assert not os.path.exists(os.path.join(workdir, "bitwise.npz"))


def test_command_line_errors_are_one_line(synthetic, tmp_path):
    source, data_dir = synthetic
    command = [
        sys.executable, "-m", "experiments.train", "--config=configs/smoke.py",
        "--config.encoding=float", f"--workdir={tmp_path / 'bad'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: config.encoding='float' is real-valued but a bitwise network needs binary inputs" in result.stderr


@pytest.mark.skipif(not os.environ.get("BITNET_MNIST_DIR"), reason="set BITNET_MNIST_DIR to the real MNIST folder")
def test_smoke_config_on_real_mnist(tmp_path):
    """configs/smoke.py as shipped, on a subset of the real MNIST: every path runs and agrees."""
    config = smoke.get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    workdir = str(tmp_path / "smoke")
    train.train_and_evaluate(config, workdir)
    results = evaluate.evaluate_workdir(workdir)
    assert results["num_examples"] == config.data.test_subset
    assert results["bitwise_error"] == results["packed_error"]
    assert results["compressed_error"] < 0.2  # real digits are learned even from a small subset


def test_stage2_ablation_shares_stage1(synthetic, tmp_path):
    source, data_dir = synthetic
    base = tiny_config(source, data_dir)
    base.stage1.epochs = base.stage2.epochs = 1
    first = str(tmp_path / "lambda0")
    train.train_and_evaluate(base, first)
    first_results = evaluate.evaluate_workdir(first)

    sparse = tiny_config(source, data_dir)
    sparse.stage1.epochs = sparse.stage2.epochs = 1
    sparse.stage2.sparsity = 0.5
    sparse.stage2.stage1_workdir = first
    second = str(tmp_path / "lambda05")
    train.train_and_evaluate(sparse, second)
    assert [m["stage"] for m in metric_lines(second)] == ["bitwise"]  # stage 1 was not retrained
    results = evaluate.evaluate_workdir(second)
    assert results["compressed_error"] == first_results["compressed_error"]
    arrays, meta = binarized_arrays(second)
    nonzero = np.bitwise_count(arrays["w0_mask"]).sum()
    assert nonzero == arrays["w0_mask"].shape[0] * arrays["n_in0"] // 2  # lambda = 0.5 of 784 x 48

    other = tiny_config(source, data_dir)
    other.stage1.epochs = 1
    other.stage1.learning_rate = 0.01
    other.stage2.stage1_workdir = first
    with pytest.raises(configuration.ConfigError, match="differs in: stage1.learning_rate"):
        train.train_and_evaluate(other, str(tmp_path / "mismatch"))
