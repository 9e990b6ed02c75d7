"""The run pipeline with K > 1 runs (bitnet.training.train.train_runs) end to end on the synthetic IDX data: workdirs as alone, divergence, SIGKILL."""

import collections
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bitnet import faults
from bitnet.deploy import export
from bitnet.workdir import preemption, provenance
from bitnet.training import binarized, loop, train
from bitnet.errors import ERROR_FILE
from bitnet.runs import evaluate
from tests.helpers import REPO, metric_lines, pipeline_config

pytestmark = pytest.mark.slow  # end-to-end group runs: the full tier (./launch.sh test --full)


def seeds(source, data_dir, count=2):
    configs = []
    for seed in range(count):
        config = pipeline_config(source, data_dir)
        config.seed = seed
        configs.append(config)
    return configs


def errors(configs, workdirs):
    """Each run's error (None: it finished) when `configs` train as one group in `workdirs`."""
    return [outcome.error for outcome in train.train_runs(configs, workdirs)]


def alone_lines(workdir):
    return [{key: value for key, value in line.items() if key not in ("examples_per_sec", "epoch_seconds", "group_size")} for line in metric_lines(workdir)]


def assert_same_models(first, second):
    arrays, meta = binarized.load(first)
    for key in export.layer_keys(len(meta["layer_sizes"])):
        np.testing.assert_array_equal(binarized.load(second)[0][key], arrays[key])


@pytest.fixture(scope="module")
def grouped(synthetic, tmp_path_factory):
    """Two seeds of the tiny bitwise config trained as one group."""
    root = tmp_path_factory.mktemp("group")
    workdirs = [str(root / f"seed{seed}") for seed in range(2)]
    assert errors(seeds(*synthetic), workdirs) == [None, None]
    return workdirs


def test_a_group_ends_as_its_runs_alone(synthetic, grouped, tmp_path):
    """The group's second run (seed 1) against the same run trained alone: the same metrics and model, bit for bit."""
    alone = str(tmp_path / "alone")
    train.train_and_evaluate(seeds(*synthetic)[1], alone)
    assert alone_lines(grouped[1]) == alone_lines(alone)
    assert_same_models(grouped[1], alone)
    for workdir in grouped:
        assert {line["group_size"] for line in metric_lines(workdir)} == {2}
        (segment,) = provenance.read_segments(workdir)
        assert segment["group"] == {"runs": [os.path.abspath(w) for w in grouped], "size": 2, "devices": 1} and segment["status"] == "finished"
    results = evaluate.evaluate_workdir(grouped[1])
    assert results["bitwise_error"] == results["packed_error"] == evaluate.evaluate_workdir(alone)["packed_error"]


def test_a_diverging_run_stops_alone(synthetic, tmp_path):
    configs = seeds(*synthetic, count=2)
    for config, learning_rate in zip(configs, (1e30, 0.01)):
        config.run_kind = config.encoding = "float"
        config.stage1.optimizer = "sgd"
        config.stage1.learning_rate = learning_rate
    workdirs = [str(tmp_path / "diverges"), str(tmp_path / "fine")]
    stopped, finished = errors(configs, workdirs)
    assert "loss became non-finite at step" in stopped and "\n" not in stopped and finished is None
    with open(os.path.join(workdirs[0], ERROR_FILE)) as file:
        assert file.read() == f"error: {stopped}\n"
    assert [(s["status"], s.get("error")) for s in map(lambda w: provenance.read_segments(w)[-1], workdirs)] == [("error", stopped), ("finished", None)]
    assert [line["epoch"] for line in metric_lines(workdirs[1])] == [1, 2]
    assert not os.path.exists(os.path.join(workdirs[1], ERROR_FILE))


def test_a_killed_sweep_resumes_its_group_to_the_same_models(synthetic, grouped, tmp_path):
    """./launch.sh sweep of the tiny config with two seeds: one group (experiments.train_group). SIGKILL once the first
    run saved its first stage-2 checkpoint, the second run's stage-2 checkpoint lost (as by a kill between the two
    runs' saves), then the same command: the second run catches up alone, both end as an uninterrupted group, and
    each is evaluated."""
    source, data_dir = synthetic
    base, spec, root = tmp_path / "base.py", tmp_path / "sweep.py", tmp_path / "root"
    base.write_text(f"from tests.helpers import pipeline_config\n\ndef get_config():\n    return pipeline_config({str(source)!r}, {str(data_dir)!r})\n")
    spec.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({{'base': {str(base)!r}, 'runs': ('seed=0', 'seed=1')}})\n")
    command = [sys.executable, "-m", "experiments.sweep", f"--sweep={spec}", f"--workdir_root={root}"]
    env = {  # the processes share compiled programs (as in test_reliability): the same numbers, compiled once
        **os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    saved = root / "seed0" / "checkpoints" / "bitwise" / "latest"
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        if saved.is_dir() and any(name.isdigit() for name in os.listdir(saved)):
            os.killpg(process.pid, signal.SIGKILL)  # the sweep and its train_group process
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the group finished before it could be killed"
    shutil.rmtree(root / "seed1" / "checkpoints" / "bitwise" / "latest", ignore_errors=True)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "experiments.train_group" in result.stdout and "experiments.train " not in result.stdout
    for name, uninterrupted in zip(("seed0", "seed1"), grouped):
        assert alone_lines(str(root / name)) == alone_lines(uninterrupted)
        assert_same_models(str(root / name), uninterrupted)
        assert (root / name / "eval.json").exists()


def test_a_stopped_group_resumes_to_the_same_models(synthetic, grouped, tmp_path, monkeypatch):
    """SIGTERM (as preemption records it) in the middle of stage 2's first epoch, chunks of one step: every run saves
    its state at that step; the same call then ends as an uninterrupted group."""
    workdirs = [str(tmp_path / f"seed{seed}") for seed in range(2)]
    monkeypatch.setattr(loop, "CHUNK_SECONDS", 0.0)
    checks = itertools.count()
    monkeypatch.setattr(preemption, "requested", lambda: "SIGTERM" if next(checks) >= 30 else None)
    with pytest.raises(preemption.Preempted, match="stopped by SIGTERM"):
        train.train_runs(seeds(*synthetic), workdirs)
    steps_saved = {os.listdir(os.path.join(workdir, "checkpoints", "bitwise", "latest"))[0] for workdir in workdirs}
    assert len(steps_saved) == 1 and int(steps_saved.pop()) % 12  # both at one step, mid-epoch (12 steps per epoch)
    monkeypatch.undo()
    assert errors(seeds(*synthetic), workdirs) == [None, None]
    for resumed, uninterrupted in zip(workdirs, grouped):
        assert alone_lines(resumed) == alone_lines(uninterrupted)
        assert_same_models(resumed, uninterrupted)


@pytest.mark.parametrize("fault", ["epoch_last_step:term:1", "checkpoint_written:term:1"])
def test_a_group_stopped_at_an_epoch_end_saves_every_latest(synthetic, grouped, tmp_path, monkeypatch, fault):
    """The latest state due every 2 epochs; SIGTERM (forced by bitnet.faults) on epoch 1's last step, or while the first
    run writes its first best checkpoint (its epoch end had chosen not to save the latest): every run finishes epoch 1
    and saves its latest state before the group stops; the same call then ends as an uninterrupted group."""
    workdirs = [str(tmp_path / f"seed{seed}") for seed in range(2)]
    configs = seeds(*synthetic)
    for config in configs:
        config.stage1.checkpoint_every_epochs = 2
    monkeypatch.setattr(faults, "_armed", faults.parse(fault))
    monkeypatch.setattr(faults, "_reached", collections.Counter())
    with pytest.raises(preemption.Preempted, match="stopped by SIGTERM in stage compressed") as stopped:
        train.train_runs(configs, workdirs)
    for workdir in workdirs:
        [line] = metric_lines(workdir)  # epoch 1's
        assert f" at step {line['step']};" in str(stopped.value)
        assert os.listdir(os.path.join(workdir, "checkpoints", "compressed", "latest")) == [str(line["step"])]
    monkeypatch.undo()
    assert errors(configs, workdirs) == [None, None]
    for resumed, uninterrupted in zip(workdirs, grouped):
        assert alone_lines(resumed) == alone_lines(uninterrupted)
        assert_same_models(resumed, uninterrupted)


def test_a_sweep_without_evaluation_reads_no_test_split_and_tabulates_validation(synthetic, tmp_path):
    """--noevaluate (tuning screens): the runs train, nothing evaluates them (no eval.json), and the table is each
    stage's validation errors, as metrics.jsonl has them."""
    source, data_dir = synthetic
    base, spec, root = tmp_path / "base.py", tmp_path / "sweep.py", tmp_path / "root"
    base.write_text(f"from tests.helpers import pipeline_config\n\ndef get_config():\n    return pipeline_config({str(source)!r}, {str(data_dir)!r})\n")
    spec.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({{'base': {str(base)!r}, 'runs': ('seed=0', 'seed=1')}})\n")
    command = [sys.executable, "-m", "experiments.sweep", f"--sweep={spec}", f"--workdir_root={root}", "--noevaluate"]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "experiments.evaluate" not in result.stdout
    for name in ("seed0", "seed1"):
        assert not (root / name / "eval.json").exists() and (root / name / "checkpoints").is_dir()
        for stage in ("compressed", "bitwise"):
            best = min(line["val_error"] for line in metric_lines(str(root / name)) if line["stage"] == stage)
            assert f"| {name} | {stage} |" in result.stdout and f"{100 * best:.2f} %" in result.stdout
    assert (root / "results.md").read_text() in result.stdout
