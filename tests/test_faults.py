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

from bitnet import checkpoints, export, faults, provenance
from tests.test_reliability import (  # noqa: F401  (env, reference: fixtures used by name)
    assert_one_line_error,
    assert_same_run,
    assert_trees_equal,
    env,
    metric_lines,
    reference,
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
    return {"metrics": metric_lines(workdir), "segments": provenance.read_segments(str(workdir))}


def assert_kept(workdir, before: dict) -> None:
    """The metric lines and provenance segments of `before` lead those of `workdir` now."""
    now = written(workdir)
    for key, value in before.items():
        assert now[key][: len(value)] == value, key


def assert_fired(stderr: str, fault: str) -> None:
    point, action, nth = fault.split(":")
    assert f"fault: {action} at {point} ({nth})" in stderr, stderr[-3000:]


def resumed_to_the_reference(env, workdir, reference, before: dict) -> str:
    """Rerun the training command unarmed; it must end as the uninterrupted run, keeping what was written."""
    result = run(env, train_args(env, workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(workdir, reference)
    assert_kept(workdir, before)
    assert not unfinished_saves(workdir)  # removed when the rerun took the workdir
    return result.stderr


def first_lines_of(reference, workdir) -> list[dict]:
    """The metric lines of `workdir`, checked to be the first lines of the uninterrupted run's."""
    lines = metric_lines(workdir)
    assert lines and lines == metric_lines(reference)[: len(lines)]
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
