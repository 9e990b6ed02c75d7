"""Issue #23: no wrong result with exit status 0, and nothing written is lost, through the real entry points.

    shared stage 1    an unfinished or busy source stage 1 is refused; finished by the command the error names
    other data        a resume or an evaluation on other data under the same name is refused; --other_data
                      evaluates to eval-<key>.json and never touches eval.json
    --overwrite       complete: the result equals a fresh run of the new config, bit for bit, and what it
                      replaces is kept under WORKDIR/replaced/; refused, it changes nothing
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bitnet.input import data
from bitnet.workdir import checkpoints, provenance, workdir_lock
from tests import idx_fixtures
from tests.helpers import (
    REPO, assert_one_line_error, assert_same_run, lines_without_timing, metric_lines, run, saved_steps, train_args,
)

pytestmark = pytest.mark.slow  # full tier: real entry points end to end, ~20-30 s each on 2 cores


def _evaluate(env, workdir, *flags):
    return run(env, [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", *flags])


def _files(folder):
    """Every file under `folder` with its bytes (what "nothing changed" compares)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(Path(folder).rglob("*")) if path.is_file() and path.name != "lock"}


# ---------------------------------------------------------------------------------------------
# A shared stage 1 must be finished, and not being written


def test_an_unfinished_shared_stage1_is_refused_until_the_named_command_finishes_it(env, reference, tmp_path):
    source, shared = tmp_path / "stage1", tmp_path / "stage2"
    stopped = run({**env, "env": {**env["env"], "BITNET_FAULT": "epoch_last_step:term:1"}}, train_args(env, source))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert saved_steps(source, "compressed") and not saved_steps(source, "bitwise")  # stage 1 stopped after epoch 1

    result = run(env, train_args(env, shared, f"--config.stage2.stage1_workdir={source}"))
    last = assert_one_line_error(result, f"stage1_workdir={source}", "not finished (1 of 2 epochs)")
    assert not shared.exists()  # refused before anything was written
    command = last.split("finish it first: ")[1]
    finished = run(env, [sys.executable, *command.split()[1:]])
    assert finished.returncode == 0, finished.stderr[-3000:]

    with workdir_lock.held(str(source)):  # another process trains or evaluates there: not read meanwhile
        assert_one_line_error(run(env, train_args(env, shared, f"--config.stage2.stage1_workdir={source}")), str(source), "in use")
    result = run(env, train_args(env, shared, f"--config.stage2.stage1_workdir={source}"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line["stage"] for line in metric_lines(shared)] == ["bitwise"] * 2
    assert lines_without_timing(shared) == [line for line in lines_without_timing(reference) if line["stage"] == "bitwise"]
    arrays, _ = checkpoints.restore_binarized(shared)
    reference_arrays, _ = checkpoints.restore_binarized(reference)
    assert all(np.array_equal(arrays[key], reference_arrays[key]) for key in reference_arrays)


# ---------------------------------------------------------------------------------------------
# The data a run trained on


def _other_data(folder):
    """Change one training image of the IDX folder in place: other data under the same name and path."""
    path = folder / "train-images-idx3-ubyte.gz"
    images = data.read_idx(path)
    images[0] = 255 - images[0]
    idx_fixtures.write_idx(path, images)


def test_resume_and_evaluate_on_other_data_are_refused_unless_said(env, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(env["source"], folder)
    workdir = tmp_path / "run"
    args = train_args(env, workdir, f"--config.data.source_dir={folder}", "--config.stage1.epochs=1", "--config.stage2.epochs=1")
    assert run(env, args).returncode == 0
    assert _evaluate(env, workdir).returncode == 0
    trained = provenance.trained_data(str(workdir))
    before = _files(workdir)

    _other_data(folder)
    other = data.load_splits(source_dir=str(folder), data_dir=str(env["data_dir"]), validation_size=60).identity
    old_key, new_key = data.content_key(trained["checksums"]), data.content_key(other["checksums"])
    assert_one_line_error(run(env, args), "was trained on", old_key, new_key, "new workdir")
    assert_one_line_error(_evaluate(env, workdir), "was trained on", old_key, new_key, "--other_data")
    assert _files(workdir) == before  # neither wrote anything: not a segment, not eval.json

    result = _evaluate(env, workdir, "--other_data")
    assert result.returncode == 0, result.stderr[-3000:]
    elsewhere = json.loads(Path(workdir, f"eval-{new_key}.json").read_text())
    assert elsewhere["data"]["checksums"] == other["checksums"]
    assert Path(workdir, "eval.json").read_bytes() == before["eval.json"]  # the result on the training data stays
    assert Path(workdir, "bitwise.npz").read_bytes() == before["bitwise.npz"]


def test_a_workdir_from_before_checksums_gets_a_warning_and_records_them(env, reference, tmp_path):
    workdir = tmp_path / "old"
    shutil.copytree(reference, workdir)
    config = json.loads(Path(workdir, "config.json").read_text())
    for segment in config["provenance"]["segments"]:
        del segment["data"]  # as written before checksums were recorded
    Path(workdir, "config.json").write_text(json.dumps(config))
    result = run(env, train_args(env, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "recorded no data checksums" in result.stderr
    assert provenance.trained_data(str(workdir))["checksums"]  # from now on it is checked


# ---------------------------------------------------------------------------------------------
# --overwrite: complete, or nothing


def test_overwrite_with_a_longer_stage2_ends_as_a_fresh_run_and_keeps_what_it_replaced(env, reference, tmp_path):
    workdir, fresh = tmp_path / "longer", tmp_path / "fresh"
    shutil.copytree(reference, workdir)
    assert _evaluate(env, workdir).returncode == 0
    old_binarized = checkpoints.restore_binarized(str(workdir))[0]
    result = run(env, train_args(env, workdir, "--config.stage2.epochs=3", "--overwrite"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert run(env, train_args(env, fresh, "--config.stage2.epochs=3")).returncode == 0
    assert_same_run(workdir, fresh)  # metrics (stage 1's kept lines, stage 2's new), both stages, binarized model
    assert not Path(workdir, "eval.json").exists() and not Path(workdir, "bitwise.npz").exists()  # stale: moved aside

    (aside,) = Path(workdir, "replaced").iterdir()
    assert sorted(path.name for path in aside.iterdir()) == ["bitwise.npz", "checkpoints", "config.json", "eval.json", "metrics.jsonl", "tensorboard"]
    assert sorted(path.name for path in (aside / "checkpoints").iterdir()) == ["binarized", "bitwise"]
    kept = checkpoints.restore_binarized(str(aside))[0]
    assert all(np.array_equal(kept[key], old_binarized[key]) for key in old_binarized)
    assert json.loads((aside / "config.json").read_text())["stage2"]["epochs"] == 2
    assert [line["stage"] for line in metric_lines(aside)] == ["compressed"] * 2 + ["bitwise"] * 2


def test_overwrite_of_the_model_starts_afresh_and_a_refused_one_changes_nothing(env, reference, tmp_path):
    workdir = tmp_path / "wider"
    shutil.copytree(reference, workdir)
    before = _files(workdir)
    result = run(env, train_args(env, workdir, "--config.model.hidden_sizes=(48,)", "--config.stage1.batch_size=1000", "--overwrite"))
    assert_one_line_error(result, "batch_size=1000", "larger than the 240 training examples")
    assert _files(workdir) == before and not Path(workdir, "replaced").exists()

    result = run(env, train_args(env, workdir, "--config.model.hidden_sizes=(48,)", "--overwrite"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(line["stage"], line["epoch"]) for line in metric_lines(workdir)] == [("compressed", 1), ("compressed", 2), ("bitwise", 1), ("bitwise", 2)]
    assert len(provenance.read_segments(str(workdir))) == 1  # a fresh run's history: the replaced one is kept aside
    assert checkpoints.restore_binarized(str(workdir))[0]["b0"].shape == (48,)
    (aside,) = Path(workdir, "replaced").iterdir()
    assert sorted(path.name for path in (aside / "checkpoints").iterdir()) == ["binarized", "bitwise", "compressed"]
    assert (aside / "metrics.jsonl").read_bytes() == before["metrics.jsonl"]
