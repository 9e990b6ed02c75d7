"""Shared by the entry points: known errors end the program with one line, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from absl import logging

from bitnet import checkpoints, configuration, data, evaluate, export, preemption, train

T = TypeVar("T")

USER_ERRORS = (
    configuration.ConfigError,
    data.DataError,
    checkpoints.CheckpointError,
    export.ExportError,
    train.TrainingError,
    evaluate.EvaluationError,
)


def _not_from_orbax(record) -> bool:
    return "orbax" not in record.pathname  # orbax logs every save step by step at INFO


def run_cleanly(function: Callable[[], T]) -> T:
    """Return `function()`; print a known error as `error: <message>` and exit with status 1."""
    logging.get_absl_handler().addFilter(_not_from_orbax)
    try:
        return function()
    except preemption.Preempted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(143)  # 128 + SIGTERM: the run is not finished
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
