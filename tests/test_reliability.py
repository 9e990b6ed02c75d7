"""Reliability: resume after SIGKILL / SIGTERM, determinism, workdir safety, one-line errors on bad input.

Most tests run the real entry points (`python -m experiments.train` / `experiments.evaluate`) in
subprocesses on a tiny synthetic IDX data set. The subprocesses share a persistent JAX compilation
cache, so only the first one pays for compiling; a cached executable computes exactly what a fresh
compile does, so the comparisons stay bit for bit.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bitnet import checkpoints, data, evaluate, export, train
from configs import smoke
from experiments import cli
from tests import idx_fixtures

REPO = Path(__file__).resolve().parent.parent
TIMING = ("examples_per_sec", "epoch_seconds")
EPOCHS = 2  # per stage; 240 training images in batches of 20: 12 steps per epoch
STEPS_PER_EPOCH = 12


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Synthetic IDX folder, TFDS data_dir, and the environment of every subprocess."""
    root = tmp_path_factory.mktemp("reliability")
    source = idx_fixtures.write_idx_folder(root / "idx", num_train=300, num_test=100, seed=3)
    # relabel half of the training images at random, so validation error (and the best epoch) moves
    labels_path = source / "train-labels-idx1-ubyte.gz"
    labels = data.read_idx(labels_path)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(labels)) < 0.5
    labels[noisy] = rng.integers(0, 10, noisy.sum())
    idx_fixtures.write_idx(labels_path, labels)
    variables = {
        **os.environ,
        "BITNET_MNIST_DIR": "",
        "BITNET_DATA_DIR": str(root / "tfds"),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    return {"source": source, "data_dir": root / "tfds", "root": root, "env": variables}


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
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(Path(workdir, "checkpoints", stage, which, str(step), "state").resolve())
    return step, state


def metric_lines(workdir):
    lines = Path(workdir, "metrics.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key not in TIMING} for line in lines]


def assert_trees_equal(actual, expected):
    paths_a, paths_e = jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree_util.tree_flatten_with_path(expected)[0]
    assert [path for path, _ in paths_a] == [path for path, _ in paths_e]
    for (path, a), (_, e) in zip(paths_a, paths_e):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape and np.array_equal(a, e), jax.tree_util.keystr(path)


def assert_same_run(workdir, reference):
    """Same metrics (timing aside), final states of both stages and binarized model, bit for bit."""
    assert metric_lines(workdir) == metric_lines(reference)
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


@pytest.fixture(scope="module")
def reference(env):
    """An uninterrupted run (it also fills the compilation cache and prepares the data)."""
    workdir = env["root"] / "reference"
    result = run(env, train_args(env, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = metric_lines(workdir)
    assert [(m["stage"], m["epoch"]) for m in lines] == [(s, e) for s in ("compressed", "bitwise") for e in range(1, EPOCHS + 1)]
    assert len({m["val_error"] for m in lines}) > 2  # the best epoch depends on the whole run
    return workdir


# ---------------------------------------------------------------------------------------------
# Resume and preemption


def test_killed_and_preempted_run_resumes_to_the_same_model(env, reference, tmp_path):
    """SIGKILL in stage 1, SIGTERM right after resuming, SIGKILL in stage 2, then the same command to the end."""
    workdir = tmp_path / "interrupted"
    args = train_args(env, workdir)
    logs = [tmp_path / f"run{index}.log" for index in range(3)]

    # 1. SIGKILL in stage 1, as soon as it has a checkpoint
    process = start(env, args, logs[0])
    status, _ = signal_when(process, lambda: saved_steps(workdir, "compressed"), signal.SIGKILL, logs[0])
    assert status == -signal.SIGKILL
    assert not saved_steps(workdir, "bitwise"), "the kill was meant for stage 1"
    good = saved_steps(workdir, "compressed")[-1]

    # a save interrupted mid-write leaves orbax's temporary folder: it must never count as a checkpoint
    fake = Path(workdir, "checkpoints", "compressed", "latest", f"{good + 1000}.orbax-checkpoint-tmp")
    (fake / "state").mkdir(parents=True)
    (fake / "state" / "manifest.ocdbt").write_bytes(b"half a file")
    _, state = stored_state(workdir, "compressed", "latest")
    _, meta = checkpoints.restore_stage(workdir, "compressed", "latest", state)
    assert meta["step"] == good

    # 2. SIGTERM (preemption) as soon as the rerun has resumed: it saves mid-epoch and stops cleanly
    process = start(env, args, logs[1])
    resumed = f"compressed: resumed at step {good} "
    status, stderr = signal_when(process, lambda: resumed in logs[1].read_text(), signal.SIGTERM, logs[1])
    assert status == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    pattern = r"stopped: stopped by SIGTERM in stage (\w+) at step (\d+); checkpoint saved in (\S+); rerun the same command to resume"
    match = re.fullmatch(pattern, last)
    assert match, last
    stage, step = match[1], int(match[2])
    assert step > good and saved_steps(workdir, stage) == [step]  # typically mid-epoch: step % 12 != 0
    assert match[3] == checkpoints.stage_dir(str(workdir), stage, "latest")

    # 3. SIGKILL in stage 2, as soon as it has a checkpoint
    process = start(env, args, logs[2])
    status, stderr = signal_when(process, lambda: saved_steps(workdir, "bitwise"), signal.SIGKILL, logs[2])
    assert status == -signal.SIGKILL
    assert f"{stage}: resumed at step {step} " in stderr
    assert not Path(workdir, "checkpoints", "binarized", "0").exists(), "the kill was meant for stage 2"

    # 4. the same command once more finishes the run, exactly as if nothing had happened
    result = run(env, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bitwise: resumed at step" in result.stderr
    assert_same_run(workdir, reference)


def test_metric_lines_of_a_killed_run_are_cut_back_to_the_checkpoint(tmp_path):
    """Lines past the checkpoint, and half a line from a kill mid-write, go; the rest stays."""
    lines = [{"stage": stage, "epoch": epoch} for stage in ("compressed", "bitwise") for epoch in (1, 2)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"stage": "bitwise", "ep')
    train.MetricWriter(str(tmp_path)).drop_after("bitwise", 1)
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]


# ---------------------------------------------------------------------------------------------
# Determinism and workdir safety


def test_same_config_and_seed_give_the_same_metrics_and_model(env, reference, tmp_path):
    result = run(env, train_args(env, tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(tmp_path / "again", reference)


def test_workdir_with_another_config_is_refused_and_checkpoints_must_fit(env, reference, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(reference, workdir)
    config_before = Path(workdir, "config.json").read_text()

    changed = train_args(env, workdir, "--config.model.hidden_sizes=(48,)", "--config.seed=1")
    assert_one_line_error(run(env, changed), "holds a run with another config", "model.hidden_sizes", "seed", "--overwrite")
    assert Path(workdir, "config.json").read_text() == config_before

    # --overwrite replaces config.json, but the checkpoints (hidden 32) cannot feed a hidden-48 net
    result = run(env, train_args(env, workdir, "--config.model.hidden_sizes=(48,)", "--overwrite"))
    assert_one_line_error(result, "does not fit this config", "params.dense0", "float32[32]", "float32[48]")
    assert Path(workdir, "config.previous.json").read_text() == config_before  # the replaced config is kept


# ---------------------------------------------------------------------------------------------
# Bad input through the real command line


def test_unknown_config_field_is_one_line(env, tmp_path):
    result = run(env, train_args(env, tmp_path / "run", "--config.stage1.epoch=3"))
    assert_one_line_error(result, "--config.stage1.epoch", "no field 'epoch'", 'Did you mean "epochs"')


def test_damaged_latest_checkpoint(env, reference, tmp_path):
    workdir = tmp_path / "damaged"
    shutil.copytree(reference, workdir)
    step = saved_steps(workdir, "bitwise")[-1]
    for path in Path(workdir, "checkpoints", "bitwise", "latest", str(step), "state").rglob("ocdbt.process_0/d/*"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk
    result = run(env, train_args(env, workdir))
    assert_one_line_error(result, f"checkpoint {checkpoints.stage_dir(str(workdir), 'bitwise', 'latest')}/{step}", "damaged")


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(env, tmp_path):
    workdir = tmp_path / "diverges"
    float_run = ["--config.run_kind=float", "--config.stage1.optimizer=sgd"]
    result = run(env, train_args(env, workdir, *float_run, "--config.stage1.epochs=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    _, good_state = stored_state(workdir, "float", "latest")

    result = run(env, train_args(env, workdir, *float_run, "--config.stage1.learning_rate=1e30", "--overwrite"))
    last = assert_one_line_error(result, "loss became non-finite at step", "(epoch 2)", "last good checkpoint")
    assert int(re.search(r"at step (\d+)", last)[1]) > STEPS_PER_EPOCH
    assert saved_steps(workdir, "float") == [STEPS_PER_EPOCH]
    assert_trees_equal(stored_state(workdir, "float", "latest")[1], good_state)
    assert [m["epoch"] for m in metric_lines(workdir)] == [1]


# ---------------------------------------------------------------------------------------------
# Bad input in-process: the same `error: ...` path (cli.run_cleanly), without a process per case


def tiny_config(env):
    config = smoke.get_config()
    config.data.source_dir = str(env["source"])
    config.data.data_dir = str(env["data_dir"])
    config.data.train_subset = 0
    config.data.test_subset = 0
    config.data.validation_size = 60
    config.model.hidden_sizes = (32,)
    config.stage1.batch_size = config.stage2.batch_size = 20
    return config


def fails_cleanly(capsys, function):
    """Run `function` as the entry points do; return the one `error:` line it printed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.run_cleanly(function)
    assert exit_info.value.code == 1
    return assert_one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("encoding", "bogus", ["config.encoding", "bogus"]),
        ("run_kind", "ternary", ["config.run_kind='ternary' is unknown", "bitwise"]),
        ("stage2.sparsity", 1.0, ["config.stage2.sparsity", "=1.0", "[0, 1)"]),
        ("stage2.sparsity", -0.1, ["config.stage2.sparsity", "=-0.1", "[0, 1)"]),
        ("model.hidden_sizes", (0,), ["config.model.hidden_sizes=(0,)", "positive"]),
        ("model.hidden_sizes", (32, -4), ["config.model.hidden_sizes=(32, -4)", "positive"]),
        ("stage1.batch_size", 241, ["config.stage1.batch_size=241", "240 training examples"]),
        ("stage2.batch_size", 1000, ["config.stage2.batch_size=1000", "240 training examples"]),
    ],
)
def test_bad_config_fails_before_any_work(env, capsys, tmp_path, field, value, words):
    config = tiny_config(env)
    holder, _, name = field.rpartition(".")
    (config[holder] if holder else config)[name] = value
    workdir = tmp_path / "run"
    line = fails_cleanly(capsys, lambda: train.train_and_evaluate(config, str(workdir)))
    for word in words:
        assert word in line, (word, line)
    assert not workdir.exists()  # nothing written, not even config.json: fixing the field and rerunning just works


def corrupt_folder(folder, case):
    """Damage one file of a copy of the synthetic IDX folder in the way `case` names."""
    images = folder / "train-images-idx3-ubyte.gz"
    if case == "no folder":
        shutil.rmtree(folder)
    elif case == "missing file":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    elif case == "bad magic":
        images.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + bytes(64)))
    elif case == "truncated":
        raw = idx_fixtures.idx_bytes(np.zeros((300, 28, 28), np.uint8))
        images.write_bytes(raw[: len(raw) - 100])
        images.rename(folder / "train-images-idx3-ubyte")  # an uncompressed file works the same
    elif case == "wrong dimensions":
        idx_fixtures.write_idx(images, np.zeros((300, 784), np.uint8))
    elif case == "count mismatch":
        idx_fixtures.write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(299, np.uint8))


@pytest.mark.parametrize(
    "case, words",
    [
        ("no folder", ["IDX folder", "does not exist"]),
        ("missing file", ["is missing t10k-labels-idx1-ubyte(.gz)"]),
        ("bad magic", ["train-images-idx3-ubyte.gz is not an IDX file", "bad magic number"]),
        ("truncated", ["train-images-idx3-ubyte is truncated", "needs 235200 payload bytes, found 235100"]),
        ("wrong dimensions", ["train-images-idx3-ubyte.gz has 2 dimensions, expected 3"]),
        ("count mismatch", ["train split has 300 images but 299 labels"]),
    ],
)
def test_bad_data_folder_fails_before_any_work(env, capsys, tmp_path, case, words):
    folder = Path(shutil.copytree(env["source"], tmp_path / "idx"))
    corrupt_folder(folder, case)
    config = tiny_config(env)
    config.data.source_dir = str(folder)
    config.data.data_dir = str(tmp_path / "tfds")  # not prepared yet: the files are read
    workdir = tmp_path / "run"
    line = fails_cleanly(capsys, lambda: train.train_and_evaluate(config, str(workdir)))
    for word in words:
        assert word in line, (word, line)
    assert not workdir.exists()


def test_evaluate_needs_a_trained_workdir(env, reference, capsys, tmp_path):
    line = fails_cleanly(capsys, lambda: evaluate.evaluate_workdir(str(tmp_path)))
    assert "has no config.json" in line
    shutil.copy(Path(reference, "config.json"), tmp_path)
    line = fails_cleanly(capsys, lambda: evaluate.evaluate_workdir(str(tmp_path)))
    assert "no compressed checkpoint in" in line and "train this workdir first" in line


# ---------------------------------------------------------------------------------------------
# Bad .npz models (the format checks themselves are in tests/test_export.py)


def write_model(reference, path, change=None):
    """The reference's binarized model as a bitnet-packed-v1 .npz, after `change(arrays)`."""
    arrays, meta = checkpoints.restore_binarized(reference)
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    arrays.update(format=np.array(export.FORMAT), meta=np.array(json.dumps(meta)))
    if change is not None:
        change(arrays)
    np.savez(path, **arrays)
    return path


NPZ_DAMAGE = {
    "format tag": (lambda arrays: arrays.update(format=np.array("bitnet-packed-v0")), ["format tag is 'bitnet-packed-v0'"]),
    "missing key": (lambda arrays: arrays.pop("w1_mask"), ["missing array 'w1_mask' for layer 1"]),
    "wrong shape": (lambda arrays: arrays.update(b0=arrays["b0"][:-1]), ["b0 is int8[31], expected int8[32]"]),
    "wrong dtype": (lambda arrays: arrays.update(w0_sign=arrays["w0_sign"].astype(np.int64)), ["w0_sign is int64[32, 25], expected uint32[32, 25]"]),
}


@pytest.mark.parametrize("case", sorted(NPZ_DAMAGE))
def test_bad_npz_is_one_line(reference, capsys, tmp_path, case):
    change, words = NPZ_DAMAGE[case]
    path = write_model(reference, tmp_path / "model.npz", change)
    line = fails_cleanly(capsys, lambda: export.load_npz(path))
    for word in words:
        assert word in line, (word, line)


@pytest.mark.skipif(importlib.util.find_spec("experiments.summary") is None, reason="no experiments.summary entry point")
def test_summary_command_on_a_bad_npz(env, reference, tmp_path):
    path = write_model(reference, tmp_path / "model.npz", NPZ_DAMAGE["format tag"][0])
    result = run(env, [sys.executable, "-m", "experiments.summary", f"--npz={path}"])
    assert_one_line_error(result, str(path), "format tag is 'bitnet-packed-v0'", "is this a bitnet model?")
