"""The whole pipeline end to end: train both stages, resume, evaluate, export, recompute."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bitnet.input import data
from bitnet.deploy import export, summary
from bitnet.workdir import checkpoints, preemption
from bitnet.training import binarized, configuration, loop, plan, steps, train
from bitnet.runs import evaluate, registry
from bitnet.runs import sweep as sweep_runs
from configs import smoke
from experiments import summary as summary_command
from tests.helpers import REPO, metric_lines, pipeline_config

def binarized_arrays(workdir):
    arrays, meta = export.load_npz(os.path.join(workdir, "bitwise.npz"))
    return arrays, meta


def test_train_resume_evaluate_export(synthetic, tmp_path):
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
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
    assert segments[0]["data"] == results["data"]  # the data trained on, as the data evaluated on
    # the numbers name the data they were measured on, by the sha256 of each IDX file
    identity = {"name": config.data.name, "checksums": data.idx_checksums(data.read_idx_folder(source))}
    assert results["data"] == identity

    # a config.json written before the fields added since (configuration.ADDED_FIELDS) still fits
    older = str(tmp_path / "older")
    shutil.copytree(workdir, older)
    with open(os.path.join(older, "config.json")) as file:
        stored = json.load(file)
    for name in configuration.ADDED_FIELDS:
        holder, leaf = name.split(".")
        del stored[holder][leaf]
    with open(os.path.join(older, "config.json"), "w") as file:
        json.dump(stored, file)
    train.train_and_evaluate(config, older)  # not refused, nothing left to train
    assert evaluate.evaluate_workdir(older)["packed_error"] == results["packed_error"]

    # recompute the reported errors independently from what was written
    splits = data.load_splits(**plan.inputs(config).data_kwargs())
    encoding = configuration.encoding_of(plan.inputs(config))
    inputs = encoding(splits.test_images)
    arrays, meta = binarized_arrays(workdir)
    assert meta["provenance"] == results["provenance"]
    assert meta["data"] == identity
    numpy_error = float(np.mean(export.numpy_predict(arrays, meta, inputs) != splits.test_labels))
    assert numpy_error == results["packed_error"]
    assert meta["test_error"] == numpy_error  # the exported model's own claim, recomputed with NumPy alone
    from_npz = evaluate.evaluate_npz(os.path.join(workdir, "bitwise.npz"), plan.inputs(config).data_kwargs())
    assert from_npz["packed_error"] == results["packed_error"] and from_npz["num_examples"] == 120
    assert from_npz["data"] == results["data"]
    stage1 = plan.plan(config)[0]
    variables = loop.stage_variables(stage1, workdir, inputs.shape[1])
    predict = steps.make_predict(steps.make_model(stage1))
    assert float(np.mean(np.asarray(predict(variables, inputs)) != splits.test_labels)) == results["compressed_error"]
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


def test_batch_norm_run_gets_a_threshold_model(synthetic, tmp_path):
    """A bitwise run with batch norm stores, evaluates and exports its model like any other: bitnet-packed-v2,
    whose packed and NumPy predictions are the simulated net's on every test image."""
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    config.model.batch_norm = True
    workdir = str(tmp_path / "bn")
    train.train_and_evaluate(config, workdir)
    results = evaluate.evaluate_workdir(workdir)  # fails if the packed path disagrees with the simulated net anywhere
    assert results["packed_error"] == results["bitwise_error"] < 0.5

    arrays, meta = binarized.load(workdir)
    assert str(arrays["format"]) == export.FORMAT_V2 and {"t0", "s0", "t1", "s1", "b2"} <= set(arrays) and "b0" not in arrays
    exported, exported_meta = export.load_npz(os.path.join(workdir, "bitwise.npz"))
    assert str(exported["format"]) == export.FORMAT_V2 and exported_meta["test_error"] == results["packed_error"]
    for key in ("t0", "s0", "t1", "s1", "w0_sign"):
        np.testing.assert_array_equal(exported[key], arrays[key])
    splits = data.load_splits(**plan.inputs(config).data_kwargs())
    inputs = configuration.encoding_of(plan.inputs(config))(splits.test_images)
    stage = plan.plan(config)[-1]
    simulated = steps.predictions(steps.make_predict(steps.make_model(stage)), loop.stage_variables(stage, workdir, inputs.shape[1]), inputs, 64)
    np.testing.assert_array_equal(export.numpy_predict(exported, exported_meta, inputs), np.asarray(simulated))
    command = [sys.executable, "-m", "experiments.evaluate", f"--npz={workdir}/bitwise.npz", f"--source_dir={source}", f"--data_dir={data_dir}"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO).stdout.strip().splitlines()[-1]
    assert json.loads(printed)["packed_error"] == results["packed_error"]  # experiments.evaluate --npz reads v2
    text = summary.format_summary(summary.summarize_arrays(*export.load_npz(summary_command.model_path(None, workdir))))  # --workdir
    assert [line.split()[0] for line in text.splitlines() if line.startswith("dense") and " threshold " in line] == ["dense0", "dense1"]
    assert "no hidden biases (bitnet-packed-v2)" in text


def timeless(lines):
    return [{key: value for key, value in line.items() if key not in ("examples_per_sec", "epoch_seconds")} for line in lines]


@pytest.mark.slow  # full tier: ./launch.sh test --full (end to end, ~20-40 s each on 2 cores)
def test_chunk_sizes_do_not_change_the_run(synthetic, tmp_path, monkeypatch):
    """Steps in chunks of one (as in a stage's first chunk, or on a slow device) or of whole epochs: the same run."""
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    whole = str(tmp_path / "whole")
    train.train_and_evaluate(config, whole)
    monkeypatch.setattr(loop, "CHUNK_SECONDS", 0.0)  # every chunk one step
    single = str(tmp_path / "single")
    train.train_and_evaluate(config, single)
    assert timeless(metric_lines(single)) == timeless(metric_lines(whole))
    arrays, meta = binarized.load(whole)
    for key in export.layer_keys(len(meta["layer_sizes"])):
        np.testing.assert_array_equal(binarized.load(single)[0][key], arrays[key])


def test_validation_and_checkpoint_intervals(synthetic, tmp_path):
    """Every 2 epochs (and after the last): validation, latest checkpoint; a rerun resumes from epoch 2."""
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    config.run_kind, config.encoding = "float", "float"
    config.stage1.epochs = 3
    config.stage1.eval_every_epochs = config.stage1.checkpoint_every_epochs = 2
    workdir = str(tmp_path / "intervals")
    train.train_and_evaluate(config, workdir)
    lines = metric_lines(workdir)
    assert [m["val_error"] is not None for m in lines] == [False, True, True]
    assert lines[0]["best_val_error"] is None and lines[2]["best_val_error"] == min(lines[1]["val_error"], lines[2]["val_error"])
    assert os.listdir(os.path.join(workdir, "checkpoints", "float", "latest")) == [str(3 * 12)]  # 240 / 20 steps per epoch
    # losing the latest checkpoint (a kill before its save) trains again and writes the same lines
    shutil.rmtree(os.path.join(workdir, "checkpoints", "float", "latest"))
    train.train_and_evaluate(config, workdir)
    assert timeless(metric_lines(workdir)) == timeless(lines)


def test_float_run(synthetic, tmp_path):
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    config.run_kind = "float"
    config.encoding = "float"
    workdir = str(tmp_path / "float")
    train.train_and_evaluate(config, workdir)
    results = evaluate.evaluate_workdir(workdir)
    assert set(results) == {"run_kind", "encoding", "num_examples", "float_error", "provenance", "data"}
    assert not os.path.exists(os.path.join(workdir, "bitwise.npz"))
    # the value: the best float checkpoint's error on the 120 test images, computed here by the model's own apply
    (stage,) = plan.plan(config)
    splits = data.load_splits(**plan.inputs(config).data_kwargs())
    variables = loop.stage_variables(stage, workdir, 784)
    inputs = (2.0 * (np.asarray(splits.test_images, np.float64) / 255.0) - 1.0).astype(np.float32)  # the float encoding, in [-1, 1]
    logits = steps.make_model(stage).apply(variables, inputs)
    expected = float(np.mean(np.argmax(np.asarray(logits), axis=-1) != splits.test_labels))
    assert (results["num_examples"], results["encoding"], results["run_kind"]) == (120, "float", "float")
    assert results["float_error"] == expected < 0.5  # it learned the 10 synthetic classes (chance: 0.9)


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


@pytest.mark.slow  # full tier: ./launch.sh test --full
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


@pytest.mark.slow  # full tier: ./launch.sh test --full (end to end, ~20-40 s each on 2 cores)
def test_stage2_ablation_shares_stage1(synthetic, tmp_path):
    source, data_dir = synthetic
    base = pipeline_config(source, data_dir)
    base.stage1.epochs = base.stage2.epochs = 1
    first = str(tmp_path / "lambda0")
    train.train_and_evaluate(base, first)
    first_results = evaluate.evaluate_workdir(first)

    sparse = pipeline_config(source, data_dir)
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

    other = pipeline_config(source, data_dir)
    other.stage1.epochs = 1
    other.stage1.learning_rate = 0.01
    other.stage2.stage1_workdir = first
    with pytest.raises(configuration.ConfigError, match="differs in: stage1.learning_rate"):
        train.train_and_evaluate(other, str(tmp_path / "mismatch"))


def stored_states(workdir):
    """Every stage checkpoint's stored arrays (latest and best), by stage, kind and dotted path."""
    flat = {}
    for stage in ("compressed", "bitwise"):
        for which in ("latest", "best"):
            folder = os.path.join(workdir, "checkpoints", stage, which)
            (step,) = [name for name in os.listdir(folder) if name.isdigit()]
            with ocp.StandardCheckpointer() as checkpointer:
                state = checkpointer.restore(os.path.join(os.path.abspath(folder), step, "state"))
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
                flat[f"{stage}/{which}/{step}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return flat


@pytest.mark.slow  # full tier: ./launch.sh test --full
def test_accuracy_options_train_resume_and_evaluate(synthetic, tmp_path, monkeypatch):
    """Issue #12 section 5, all on: batch norm, squared hinge, exponential and step schedules, Glorot
    learning-rate scales, clipping (absolute and Glorot). Preempted mid-epoch in stage 2 and resumed,
    the run ends bit for bit as an uninterrupted one; its binarized model has threshold neurons (bitnet-packed-v2)."""
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    config.model.batch_norm = True
    config.stage1.update(loss="squared_hinge", schedule="exponential", final_learning_rate=1e-5, layer_lr_scale="glorot",
                         clip_weights=2.0, clip_unit="glorot")  # fmt: skip
    config.stage2.update(loss="squared_hinge", schedule="step", decay_factor=0.5, decay_every_epochs=1, layer_lr_scale="glorot",
                         clip_weights=1.0)  # fmt: skip
    reference = str(tmp_path / "reference")
    train.train_and_evaluate(config, reference)

    workdir = str(tmp_path / "interrupted")
    monkeypatch.setattr(loop, "CHUNK_SECONDS", 0.0)  # one step per chunk: a stop request is seen after every step
    reached = {}  # the stage and step of the last chunk
    chunk_of = steps.make_train_chunk

    def recording_chunk(model, *args, **kwargs):
        chunk = chunk_of(model, *args, **kwargs)

        def run(state, *chunk_args):
            state = chunk(state, *chunk_args)
            reached.update(mode=model.mode, step=int(state["step"]))
            return state

        return run

    monkeypatch.setattr(steps, "make_train_chunk", recording_chunk)
    monkeypatch.setattr(preemption, "requested", lambda: "SIGTERM" if reached == {"mode": "bitwise", "step": 5} else None)
    with pytest.raises(preemption.Preempted, match="in stage bitwise at step 5;"):
        train.train_and_evaluate(config, workdir)
    monkeypatch.undo()
    train.train_and_evaluate(config, workdir)

    timeless = lambda lines: [{k: v for k, v in m.items() if k not in ("examples_per_sec", "epoch_seconds")} for m in lines]  # noqa: E731
    assert timeless(metric_lines(workdir)) == timeless(metric_lines(reference))
    resumed, uninterrupted = stored_states(workdir), stored_states(reference)
    assert sorted(resumed) == sorted(uninterrupted)
    assert any("batch_stats" in key and key.endswith("['bn1']['var']") for key in resumed)  # BN statistics are checkpointed
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)

    results = evaluate.evaluate_workdir(workdir)
    assert set(results) == {"run_kind", "encoding", "num_examples", "compressed_error", "bitwise_error", "packed_error", "backend", "provenance", "data"}
    assert results["packed_error"] == results["bitwise_error"]  # threshold neurons: the packed path is the simulated net
    assert results["compressed_error"] < 0.5 and results["bitwise_error"] < 0.5  # it learned the easy synthetic classes
    arrays, _ = export.load_npz(summary_command.model_path(None, workdir))
    assert str(arrays["format"]) == export.FORMAT_V2
    lines = metric_lines(workdir)
    assert [m["learning_rate"] for m in lines if m["stage"] == "bitwise"] == pytest.approx([3e-4, 1.5e-4])  # halved after epoch 1
    assert lines[1]["learning_rate"] == pytest.approx(1e-3 * 0.01 ** (23 / 24), rel=1e-5)  # exponential: 1e-3 -> 1e-5 over 24 steps


def test_final_fit_trains_on_every_image_and_ends_with_the_last_states(synthetic, tmp_path):
    """validation_size = 0 (issue #26 section 2): no validation, no best checkpoint; stage 2 starts from stage 1's last
    state and the model is stage 2's last state."""
    source, data_dir = synthetic
    config = pipeline_config(source, data_dir)
    config.data.validation_size = 0
    with pytest.raises(configuration.ConfigError, match=r"validation_size=0 \(the final fit\) needs config.stage1.select='last'"):
        configuration.check(config)
    config.stage1.select = config.stage2.select = "last"
    workdir = str(tmp_path / "final_fit")
    train.train_and_evaluate(config, workdir)

    lines = metric_lines(workdir)
    assert [(m["stage"], m["epoch"]) for m in lines] == [("compressed", 1), ("compressed", 2), ("bitwise", 1), ("bitwise", 2)]
    assert all(m["val_error"] is None and m["best_val_error"] is None for m in lines)
    assert all(m["step"] == m["epoch"] * 300 // config.stage1.batch_size for m in lines)  # all 300 training images
    assert not any(os.path.exists(os.path.join(workdir, "checkpoints", stage, "best")) for stage in ("compressed", "bitwise"))

    stage1, stage2 = plan.plan(config)
    last = loop.stage_variables(stage2, workdir, 784)  # the latest state: select = "last"
    arrays, _ = binarized.binarize(stage2, last, configuration.encoding_of(plan.inputs(config)))
    stored = {key: np.asarray(value) for key, value in checkpoints.restore_binarized(workdir)[0].items()}
    assert sorted(arrays) == sorted(stored) and all(np.array_equal(arrays[key], stored[key]) for key in arrays)
    results = evaluate.evaluate_workdir(workdir)
    assert results["bitwise_error"] == results["packed_error"]

    record = sweep_runs.run_record(workdir, "sweep_table1_final_fit", "final-fit-seed0")  # published without validation lines
    assert record["best_val_error"] is None and registry.runs_table([record]).count("|") > 14
