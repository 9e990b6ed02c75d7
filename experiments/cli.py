"""Shared by the entry points: known errors end the program with one line, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from absl import app, logging

from bitnet import preemption
from bitnet.errors import USER_ERRORS

T = TypeVar("T")

def _not_from_orbax(record) -> bool:
    return "orbax" not in record.pathname  # orbax logs every save step by step at INFO


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that an unknown --config.<field> ends with one line, not a traceback."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:  # ml_collections raises these for a field the config lacks
        while error.args and isinstance(error.args[0], BaseException):
            error = error.args[0]
        name, _, hint = (str(error.args[0]) if error.args else str(error)).partition("\n")
        name = name.strip("'\"")
        named = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("-") and name in arg.split("=")[0].split(".")[1:]]
        print(
            f"error: {named[0] if named else name}: the config has no field {name!r}"
            f"{'; ' + hint if hint else ''}; check the name against the config file",
            file=sys.stderr,
        )
        sys.exit(1)


def run_cleanly(function: Callable[[], T]) -> T:
    """Return `function()`; print a known error as `error: <message>` and exit with status 1."""
    logging.get_absl_handler().addFilter(_not_from_orbax)
    try:
        return function()
    except preemption.Preempted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(143)  # 128 + SIGTERM: the run is not finished
    except USER_ERRORS as error:
        # The failed operation may leave orbax's concurrent reads as orphaned coroutines; their
        # "Exception ignored in ..." tracebacks at garbage collection only repeat this error.
        sys.unraisablehook = lambda unraisable: None
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
