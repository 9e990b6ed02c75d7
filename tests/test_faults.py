"""Faults forced, not timed (issue #11 §4): a kill, a SIGTERM or a full disk at one exact moment of a real write.

Each test arms one fault of bitnet.faults in the environment of the real command (BITNET_FAULT),
checks that the process stopped the way that fault stops a process and that nothing written before
it was lost, then reruns the same command unarmed: it must end with the model of an uninterrupted
run, bit for bit. The data, helpers and uninterrupted run are tests/test_reliability.py's.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from bitnet import faults
from bitnet.deploy import export
from bitnet.workdir import checkpoints, provenance
from tests.helpers import (
    EPOCHS,
    assert_one_line_error,
    assert_same_run,
    assert_trees_equal,
    lines_without_timing,
    run,
    saved_steps,
    stored_state,
    train_args,
)

STAGES = ("compressed", "bitwise")
KILLED = -signal.SIGKILL


def armed(env, fault: str) -> dict:
    """`env` with the fault `fault` (point:action[:n]) armed in its subprocesses."""
    return {**env, "env": {**env["env"], faults.VARIABLE: fault}}


def unfinished_saves(workdir) -> list[Path]:
    """orbax's temporary folders of saves that never completed."""
    return sorted(Path(workdir, "checkpoints").rglob("*.orbax-checkpoint-tmp*"))


def written(workdir) -> dict:
    """What a run has written that no later run may lose: its complete metric lines (timing aside) and the
    provenance segments of config.json."""
    return {"metrics": lines_without_timing(workdir), "segments": provenance.read_segments(str(workdir))}


def assert_kept(workdir, before: dict) -> None:
    """The metric lines and provenance segments of `before` lead those of `workdir` now."""
    now = written(workdir)
    for key, value in before.items():
        assert now[key][: len(value)] == value, key


def assert_fired(stderr: str, fault: str) -> None:
    point, action, nth = fault.split(":")
    assert f"fault: {action} at {point} ({nth})" in stderr, stderr[-3000:]


def resumed_to_the_reference(env, workdir, reference, before: dict, *overrides: str) -> str:
    """Rerun the training command (with `overrides`) unarmed; it must end as the uninterrupted run, keeping what was
    written."""
    result = run(env, train_args(env, workdir, *overrides))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(workdir, reference)
    assert_kept(workdir, before)
    assert not unfinished_saves(workdir)  # removed when the rerun took the workdir
    return result.stderr


def first_lines_of(reference, workdir) -> list[dict]:
    """The metric lines of `workdir`, checked to be the first lines of the uninterrupted run's."""
    lines = lines_without_timing(workdir)
    assert lines and lines == lines_without_timing(reference)[: len(lines)]
    return lines


# ---------------------------------------------------------------------------------------------
# The fault module itself


def test_a_fault_is_armed_only_by_a_valid_value(monkeypatch):
    assert faults.parse("") is None
    assert faults.parse("npz_written:enospc") == faults.Fault("npz_written", "enospc", 1)
    assert faults.parse("epoch_last_step:term:3") == faults.Fault("epoch_last_step", "term", 3)
    for typo in ("npz_writen:kill", "npz_written:explode", "npz_written:kill:0", "npz_written:kill:x", "npz_written"):
        with pytest.raises(ValueError, match=faults.VARIABLE):
            faults.parse(typo)
    monkeypatch.setattr(faults, "_armed", None)
    assert faults.hook("checkpoint_written", "/w") is None  # orbax gets no callback at all
    faults.point("npz_written", "/w/bitwise.npz.tmp.npz")  # unarmed: nothing happens


def test_an_armed_fault_acts_at_the_nth_time_its_point_is_reached(monkeypatch, capsys):
    monkeypatch.setattr(faults, "_armed", faults.parse("eval_json_written:enospc:2"))
    monkeypatch.setattr(faults, "_reached", faults.collections.Counter())
    faults.point("npz_written", "/w/other")  # another point: not counted
    faults.point("eval_json_written", "/w/eval.json.tmp")
    assert faults.hook("npz_written", "/w") is None
    with pytest.raises(OSError) as raised:
        faults.hook("eval_json_written", "/w/eval.json.tmp")()
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == "/w/eval.json.tmp"
    assert capsys.readouterr().err == "fault: enospc at eval_json_written (2)\n"
    faults.point("eval_json_written", "/w/eval.json.tmp")  # once only


# ---------------------------------------------------------------------------------------------
# Training: checkpoints, preemption, the binarized model


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 2])
def test_kill_between_the_best_and_the_latest_save(env, reference, tmp_path, nth):
    """The nth epoch with a new best: its best checkpoint is saved, its latest not (the first time: no latest at
    all); the rerun resumes before that epoch, redoes it and keeps the best already saved."""
    workdir, fault = tmp_path / "run", f"between_best_and_latest:kill:{nth}"
    result = run(armed(env, fault), train_args(env, workdir))
    assert result.returncode == KILLED
    assert_fired(result.stderr, fault)
    lines = first_lines_of(reference, workdir)
    stage, step = lines[-1]["stage"], lines[-1]["step"]  # the epoch killed in its checkpoint saves
    assert lines[-1]["val_error"] == lines[-1]["best_val_error"]  # a new best
    assert saved_steps(workdir, stage, "best") == [step]
    previous = saved_steps(workdir, stage, "latest")
    assert all(saved < step for saved in previous) and bool(previous) == (nth > 1)
    if previous:  # the previous latest is whole
        _, state = stored_state(workdir, stage, "latest")
        assert checkpoints.restore_stage(str(workdir), stage, "latest", state)[1]["step"] == previous[-1]
    stderr = resumed_to_the_reference(env, workdir, reference, written(workdir))
    assert (f"{stage}: resumed at step {previous[-1]} " in stderr) if previous else ("resumed at step" not in stderr)


@pytest.mark.slow
def test_kill_inside_orbax_asynchronous_save(env, reference, tmp_path):
    """Killed in orbax's background thread with the third checkpoint's files written but not renamed into place."""
    workdir, fault = tmp_path / "run", "checkpoint_written:kill:3"
    result = run(armed(env, fault), train_args(env, workdir))
    assert result.returncode == KILLED
    assert_fired(result.stderr, fault)
    [unfinished] = unfinished_saves(workdir)
    stage, which = unfinished.parent.parent.name, unfinished.parent.name
    step = int(unfinished.name.split(".")[0])
    assert step not in saved_steps(workdir, stage, which)  # never counted as a checkpoint
    first_lines_of(reference, workdir)
    resumed_to_the_reference(env, workdir, reference, written(workdir))


@pytest.mark.slow
def test_sigterm_on_the_last_step_of_an_epoch(env, reference, tmp_path):
    """A preemption on stage 1's very last step: the epoch ends in full (validation, metrics, checkpoints), then it stops."""
    workdir, fault = tmp_path / "run", f"epoch_last_step:term:{EPOCHS}"
    result = run(armed(env, fault), train_args(env, workdir))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert_fired(result.stderr, fault)
    lines = first_lines_of(reference, workdir)
    assert [(line["stage"], line["epoch"]) for line in lines] == [("compressed", epoch) for epoch in range(1, EPOCHS + 1)]
    step = lines[-1]["step"]
    assert result.stderr.strip().splitlines()[-1] == (
        f"stopped: stopped by SIGTERM in stage compressed at step {step}; checkpoint saved in "
        f"{checkpoints.stage_dir(str(workdir), 'compressed', 'latest')}; rerun the same command to resume"
    )
    assert saved_steps(workdir, "compressed") == [step] and not saved_steps(workdir, "bitwise")
    assert provenance.read_segments(str(workdir))[-1]["status"] == "stopped"
    stderr = resumed_to_the_reference(env, workdir, reference, written(workdir))
    assert f"compressed: resumed at step {step} " in stderr


@pytest.mark.slow
def test_sigterm_while_an_epoch_end_saves_only_its_best(env, reference, tmp_path):
    """The latest state due every 2 epochs: a SIGTERM while epoch 1 saves its best checkpoint still leaves the latest
    checkpoint its stop line names (it stopped without one, and the rerun redid the epoch)."""
    workdir, fault, every_2 = tmp_path / "run", "checkpoint_written:term:1", "--config.stage1.checkpoint_every_epochs=2"
    result = run(armed(env, fault), train_args(env, workdir, every_2))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert_fired(result.stderr, fault)
    [line] = first_lines_of(reference, workdir)
    assert result.stderr.strip().splitlines()[-1].startswith(f"stopped: stopped by SIGTERM in stage compressed at step {line['step']}; ")
    assert saved_steps(workdir, "compressed", "best") == saved_steps(workdir, "compressed", "latest") == [line["step"]]
    stderr = resumed_to_the_reference(env, workdir, reference, written(workdir), every_2)
    assert f"compressed: resumed at step {line['step']} " in stderr and "compressed epoch 1/" not in stderr


@pytest.mark.slow
def test_kill_while_the_binarized_model_is_written(env, reference, tmp_path):
    """Both stages trained, the binarized model's files written but not in place: the rerun trains nothing."""
    workdir, fault = tmp_path / "run", "binarized_written:kill"
    result = run(armed(env, fault + ":1"), train_args(env, workdir))
    assert result.returncode == KILLED
    assert_fired(result.stderr, fault + ":1")
    assert [path.parent.name for path in unfinished_saves(workdir)] == ["binarized"]
    assert not Path(workdir, "checkpoints", "binarized", "0").exists()
    assert lines_without_timing(workdir) == lines_without_timing(reference)
    for stage in STAGES:
        for which in ("latest", "best"):
            assert_trees_equal(stored_state(workdir, stage, which)[1], stored_state(reference, stage, which)[1])
    stderr = resumed_to_the_reference(env, workdir, reference, written(workdir))
    assert "bitwise: resumed at step" in stderr and "bitwise epoch" not in stderr


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint_written:enospc:3", "binarized_written:enospc:1"])
def test_full_disk_while_saving_a_checkpoint(env, reference, tmp_path, point):
    """orbax's save fails on a full disk: one line naming the checkpoint, nothing half-saved left as a checkpoint."""
    workdir = tmp_path / "run"
    result = run(armed(env, point), train_args(env, workdir))
    assert_fired(result.stderr, point)
    line = assert_one_line_error(result, "error: no space left on the disk writing ", "free space there and rerun the same command")
    assert result.returncode == 1
    folder = Path(line.split(" writing ")[1].split(" (disk mounted at ")[0])  # the checkpoint whose save failed
    assert folder.parent.parent == Path(workdir, "checkpoints") or folder == Path(workdir, "checkpoints", "binarized")
    lines = first_lines_of(reference, workdir)
    assert not Path(folder, str(0 if folder.name == "binarized" else lines[-1]["step"])).exists()
    assert not unfinished_saves(workdir)  # the failed save's files are gone at once: they held the space
    assert provenance.read_segments(str(workdir))[-1]["status"] == "error"
    resumed_to_the_reference(env, workdir, reference, written(workdir))


# ---------------------------------------------------------------------------------------------
# Evaluation: bitwise.npz and eval.json


@pytest.fixture(scope="module")
def evaluated(env, reference, tmp_path_factory):
    """The uninterrupted run, evaluated once by the real command: its eval.json and bitwise.npz are the earlier ones."""
    workdir = tmp_path_factory.mktemp("faults") / "evaluated"
    shutil.copytree(reference, workdir)
    result = run(env, evaluate_args(workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def evaluate_args(workdir) -> list[str]:
    return [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"]


def without_provenance(meta: dict) -> dict:
    return {key: value for key, value in meta.items() if key != "provenance"}


def assert_same_evaluation(workdir, reference) -> None:
    """eval.json and bitwise.npz as the reference's, bit for bit, but for the provenance of the processes."""
    results = json.loads(Path(workdir, "eval.json").read_text())
    assert without_provenance(results) == without_provenance(json.loads(Path(reference, "eval.json").read_text()))
    arrays, meta = export.load_npz(Path(workdir, "bitwise.npz"))
    reference_arrays, reference_meta = export.load_npz(Path(reference, "bitwise.npz"))
    assert without_provenance(meta) == without_provenance(reference_meta)
    assert sorted(arrays) == sorted(reference_arrays)
    for key in set(arrays) - {"meta"}:
        assert arrays[key].dtype == reference_arrays[key].dtype and np.array_equal(arrays[key], reference_arrays[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["npz_written:kill:1", "eval_json_written:kill:1", "npz_written:enospc:1", "eval_json_written:enospc:1"])
def test_kill_or_full_disk_while_evaluation_writes(env, evaluated, tmp_path, fault):
    """The earlier eval.json and bitwise.npz stay whole; a rerun of the evaluation writes the same ones again."""
    workdir = Path(shutil.copytree(evaluated, tmp_path / "run"))
    point, action, _ = fault.split(":")
    kept = ("config.json", "eval.json") + (("bitwise.npz",) if point == "npz_written" else ())  # the .npz is written first
    earlier = {name: Path(workdir, name).read_bytes() for name in kept}
    result = run(armed(env, fault), evaluate_args(workdir))
    assert_fired(result.stderr, fault)
    temporary = Path(workdir, "bitwise.npz.tmp.npz" if point == "npz_written" else "eval.json.tmp")
    if action == "kill":
        assert result.returncode == KILLED
        assert temporary.exists()  # killed mid-write: the rerun must not trust it
    else:
        assert_one_line_error(result, f"error: no space left on the disk writing {temporary} (disk mounted at /", "free space there")
        assert not list(workdir.glob("*.tmp*"))
    assert {name: Path(workdir, name).read_bytes() for name in earlier} == earlier
    result = run(env, evaluate_args(workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(workdir.glob("*.tmp*"))
    assert_same_evaluation(workdir, evaluated)
