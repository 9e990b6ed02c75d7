"""The errors a user can fix: each stops a command with one `error: <message>` line (experiments/cli.py).

Kept apart from the code that raises them, so an entry point can catch them without importing the
trainer, TFDS or orbax. Every message names the problem and the fix.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config field with a value bitnet cannot run."""


class DataError(ValueError):
    """A data set is missing, malformed or inconsistent; the message says what and how to fix it."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or from an incompatible config."""


class ExportError(ValueError):
    """A .npz file that is not a valid bitnet-packed-v1 or -v2 model."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss)."""


class EvaluationError(RuntimeError):
    """The simulated and packed bitwise paths disagree."""


class WorkdirError(RuntimeError):
    """The workdir cannot be used: held by another process, not a folder, or not writable."""


ERROR_FILE = "error.txt"  # in the workdir of a run that failed while its group trained on: "error: <message>"

USER_ERRORS = (ConfigError, DataError, CheckpointError, ExportError, TrainingError, EvaluationError, WorkdirError)
