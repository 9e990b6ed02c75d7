"""Helpers shared by the test modules (fixtures are in tests/conftest.py); test modules never import each other.

    configs     pipeline_config: the tiny config with two hidden layers
    workdirs    metric_lines, lines_without_timing, saved_steps, stored_state, assert_trees_equal, assert_same_run
    commands    train_args, run, start, signal_when, assert_one_line_error: the real entry points in subprocesses
    steps       step_stage, step_parts, assert_same, NUM_TRAIN, BATCH, INPUTS: a stage and its step on random data
    packed nets random_layers, numpy_scores: random ternary layers (threshold neurons too) and their forward in NumPy
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from bitnet.deploy import inference
from bitnet.training import plan, steps
from bitnet.workdir import checkpoints
from configs import smoke
from tests import tiny

NUM_TRAIN, BATCH, INPUTS = 96, 8, 20


def pipeline_config(source_dir, data_dir):
    """The shared tiny config with two hidden layers (48, 40), so the export covers a hidden-to-hidden layer."""
    config = tiny.tiny_config(source_dir, data_dir)
    config.model.hidden_sizes = (48, 40)
    return config


def metric_lines(workdir):
    """A workdir's metrics.jsonl, one dict per line."""
    with open(os.path.join(workdir, "metrics.jsonl")) as file:
        return [json.loads(line) for line in file]


REPO = Path(__file__).resolve().parent.parent
TIMING = ("examples_per_sec", "epoch_seconds")
EPOCHS = 2  # per stage; 240 training images in batches of 20: 12 steps per epoch
STEPS_PER_EPOCH = 12





def train_args(env, workdir, *overrides):
    """The training command on the synthetic data; `overrides` ("--config.x=v", "--overwrite") replace the defaults.

    (Each flag is given once: ml_collections joins the values of a repeated tuple flag.)
    """
    flags = {
        "--config.data.source_dir": env["source"], "--config.data.data_dir": env["data_dir"],
        "--config.data.train_subset": 0, "--config.data.test_subset": 0, "--config.data.validation_size": 60,
        "--config.model.hidden_sizes": "(32,)", "--config.eval_batch_size": 64,
        "--config.stage1.batch_size": 20, "--config.stage2.batch_size": 20,
        "--config.stage1.epochs": EPOCHS, "--config.stage2.epochs": EPOCHS,
    }  # fmt: skip
    for override in overrides:
        name, _, value = override.partition("=")
        flags[name] = value
    named = [f"{name}={value}" if value != "" else name for name, value in flags.items()]
    return [sys.executable, "-m", "experiments.train", "--config=configs/smoke.py", *named, f"--workdir={workdir}"]


def run(env, args, timeout=240):
    return subprocess.run(args, cwd=REPO, env=env["env"], capture_output=True, text=True, timeout=timeout)


def start(env, args, log):
    """A subprocess with stderr to a file (a pipe nobody reads while polling could fill and block it)."""
    with open(log, "w") as stderr:
        return subprocess.Popen(args, cwd=REPO, env=env["env"], stdout=subprocess.DEVNULL, stderr=stderr)


def signal_when(process, condition, signum, log, timeout=240):
    """Send `signum` as soon as `condition()` holds; return (exit status, stderr)."""
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before the signal:\n{Path(log).read_text()[-3000:]}"
        assert time.time() < deadline, "the run never reached the point to interrupt"
        time.sleep(0.005)
    process.send_signal(signum)
    process.wait(timeout=120)
    return process.returncode, Path(log).read_text()


def saved_steps(workdir, stage, which="latest"):
    """Steps of the finished checkpoints (orbax renames a step folder into place once it is complete)."""
    folder = Path(workdir, "checkpoints", stage, which)
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if folder.is_dir() else []


def stored_state(workdir, stage, which):
    """The arrays of a stage checkpoint as stored (no config needed), and its step."""
    step = saved_steps(workdir, stage, which)[-1]
    return step, checkpoints.read_arrays(str(Path(workdir, "checkpoints", stage, which, str(step), "state")))


def lines_without_timing(workdir):
    """A workdir's metric lines without their timing fields (which no two runs share)."""
    return [{key: value for key, value in line.items() if key not in TIMING} for line in metric_lines(workdir)]


def assert_trees_equal(actual, expected):
    paths_a, paths_e = jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree_util.tree_flatten_with_path(expected)[0]
    assert [path for path, _ in paths_a] == [path for path, _ in paths_e]
    for (path, a), (_, e) in zip(paths_a, paths_e):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape and np.array_equal(a, e), jax.tree_util.keystr(path)


FLOAT32_ULP = 2.0**-23  # relative spacing of float32 numbers in [1, 2)


def assert_same_run(workdir, reference, loss_ulps=0):
    """Same metrics (timing aside), final states of both stages and binarized model, bit for bit; with `loss_ulps`,
    each epoch's train_loss (a float32 sum of the steps' losses) within that many float32 ulps, every other field exact."""
    lines, reference_lines = lines_without_timing(workdir), lines_without_timing(reference)
    if loss_ulps:
        assert len(lines) == len(reference_lines)
        for line, reference_line in zip(lines, reference_lines):
            loss, reference_loss = line.pop("train_loss"), reference_line.pop("train_loss")
            assert abs(loss - reference_loss) <= loss_ulps * FLOAT32_ULP * max(abs(loss), abs(reference_loss)), (loss, reference_loss)
    assert lines == reference_lines
    for stage in ("compressed", "bitwise"):
        for which in ("latest", "best"):
            step, state = stored_state(workdir, stage, which)
            reference_step, reference_state = stored_state(reference, stage, which)
            assert step == reference_step, (stage, which)
            assert_trees_equal(state, reference_state)
    arrays, meta = checkpoints.restore_binarized(workdir)
    reference_arrays, reference_meta = checkpoints.restore_binarized(reference)
    assert meta.pop("provenance")["training_segments"] and reference_meta.pop("provenance")["training_segments"]
    assert meta == reference_meta  # the model itself; its provenance records each run's own processes
    assert sorted(arrays) == sorted(reference_arrays)
    for key in arrays:
        assert arrays[key].dtype == reference_arrays[key].dtype and np.array_equal(arrays[key], reference_arrays[key]), key


def assert_one_line_error(result_or_stderr, *words):
    """Exit status != 0, no traceback, last stderr line `error: ...` containing `words`."""
    if isinstance(result_or_stderr, subprocess.CompletedProcess):
        assert result_or_stderr.returncode != 0
        stderr = result_or_stderr.stderr
    else:
        stderr = result_or_stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr[-3000:]
    for word in words:
        assert word in last, (word, last)
    return last





# ---------------------------------------------------------------------------------------------
# Resume and preemption


def step_stage(mode="bitwise", **changes):
    """A stage of a 20-16-12-10 net (lambda 0.25 in stage 2) with batches of BATCH; `changes` replace Stage fields."""
    config = smoke.get_config()
    config.model.hidden_sizes = (16, 12)
    config.stage2.sparsity = 0.25
    config.run_kind = "float" if mode == "float" else "bitwise"
    stage = {s.name: s for s in plan.plan(config)}[mode]
    return dataclasses.replace(stage, batch_size=BATCH, **changes)


def step_parts(stage):
    """(model, optimizer, key, state at step 0, inputs, labels, steps per epoch) of `stage` on NUM_TRAIN random +-1 examples.

    (Not named `setup`: pytest 7's nose plugin runs a module-level `setup` as the module's setup.)"""
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(np.where(rng.random((NUM_TRAIN, INPUTS)) < 0.5, 1.0, -1.0), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, NUM_TRAIN), jnp.int32)
    spe = NUM_TRAIN // BATCH
    model = steps.make_model(stage)
    optimizer = steps.make_optimizer(stage, steps.make_schedule(stage, spe))
    key = steps.stage_key(stage)
    return model, optimizer, key, steps.init_state(model, optimizer, key, inputs[:1]), inputs, labels, spe


def assert_same(a, b):
    """Two pytrees equal leaf by leaf, bit for bit (the first differing leaf's path on failure)."""
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def random_layers(rng, sizes, bit_values, batch, thresholds=False):
    """Random ternary layers (W, b, s, T) of an MLP `sizes` and `batch` random inputs of `bit_values`; with
    `thresholds` the hidden layers are threshold neurons of both polarities (bias 0), many exactly on T."""
    inputs = rng.integers(0, 2, (batch, sizes[0])).astype(np.float32)
    inputs = 2 * inputs - 1 if bit_values == "bipolar" else inputs
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        weights = rng.integers(-1, 2, (n_in, n_out)).astype(np.int8)
        hidden = thresholds and index < len(sizes) - 2
        bias = np.zeros(n_out, np.int8) if hidden else rng.integers(-1, 2, n_out).astype(np.int8)
        polarity = rng.choice([-1, 1], n_out).astype(np.int32) if hidden else None
        threshold = rng.integers(-3, 4, n_out).astype(np.int32) if hidden else None
        layers.append((weights, bias, polarity, threshold))
    return layers, inputs


def numpy_scores(layers, inputs):
    """The bitwise forward in int64 NumPy: a = x W + b; hidden outputs sign(a) (sign(0) = +1) or s a >= T."""
    x, scores = np.asarray(inputs, np.int64), []
    for weights, bias, polarity, threshold in layers:
        scores.append(x @ weights.astype(np.int64) + bias)
        fires = scores[-1] >= 0 if threshold is None else polarity * scores[-1] >= threshold
        x = np.where(fires, 1, -1)
    return scores


def dense_layers(layers):
    """The same (W, b, s, T) layers with every zero weight made +1: dense layers, no mask."""
    return [(np.where(weights == 0, 1, weights).astype(np.int8), *rest) for weights, *rest in layers]


def packed_model(layers, bit_values):
    """The PackedModel of (W, b, s, T) layers seeing `bit_values` inputs."""
    return inference.PackedModel(tuple(inference.pack_layer(*layer) for layer in layers), bit_values)
