"""Shared by the entry points: known errors end the program with one line, not a traceback."""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import threading
import traceback
from typing import Callable, Iterator, NoReturn, TypeVar

import jax
from absl import flags, logging

from bitnet.workdir import preemption, workdir_lock
from bitnet.errors import USER_ERRORS
from bitnet.training import configuration

T = TypeVar("T")


def _not_from_orbax(record) -> bool:
    return "orbax" not in record.pathname  # orbax logs every save step by step at INFO


def one_cpu_device_per_core() -> None:
    """Ask JAX, before it starts, for one CPU device per core this process may use, so that packed
    inference splits a large batch over every core (bitnet.deploy.inference.split_devices); a
    device count forced in XLA_FLAGS is kept. Only for inference entry points: training shards a
    group's runs over the devices it sees."""
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        jax.config.update("jax_num_cpu_devices", cores)


def fail(message: str) -> NoReturn:
    """End the program with `error: <message>` on stderr and exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _unknown_field(error: BaseException, argv: list[str]) -> str:
    """The message for a --config.<field> the config lacks (ml_collections raises AttributeError/KeyError): for a
    run's config, configuration's message for a field in a config file, naming the flag to fix."""
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    name, _, hint = (str(error.args[0]) if error.args else str(error)).partition("\n")
    name = name.strip("'\"")
    named = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("-") and name in arg.split("=")[0].split(".")[1:]]
    flag = named[0] if named else name
    if flag.lstrip("-").startswith("config."):
        path = flag.lstrip("-").split(".")[1:]
        return configuration.not_a_field(".".join(path[: path.index(name) + 1]), f"fix the flag {flag}")
    return f"{flag}: the config has no field {name!r}{'; ' + hint if hint else ''}; check the name against the config file"


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value given to --name on the command line (`--name=v` or `--name v`), if any."""
    for index, arg in enumerate(argv[1:], 1):
        if arg.startswith((f"--{name}=", f"-{name}=")):
            return arg.split("=", 1)[1]
        if arg in (f"--{name}", f"-{name}") and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _config_file_flags(argv: list[str]) -> Iterator[tuple[str, str]]:
    """(flag name, file name) of each config-file flag (--config, --sweep) given on the command line."""
    for name in flags.FLAGS:
        filename = _flag_value(argv, name)
        if hasattr(type(flags.FLAGS[name]), "config_filename") and filename is not None:
            yield name, filename


def _config_code_error(error: Exception, argv: list[str]) -> str | None:
    """The message for a config file whose own code fails (a syntax error, an exception in get_config()):
    the flag, the error and its line in that file; None if the error did not come from a config file."""
    files = {os.path.abspath(filename.split(":", 1)[0]): f"--{name}={filename}" for name, filename in _config_file_flags(argv)}
    if isinstance(error, SyntaxError) and error.filename and os.path.abspath(error.filename) in files:
        flag, line, text = files[os.path.abspath(error.filename)], error.lineno, error.msg
    else:
        frames = [(frame, line) for frame, line in traceback.walk_tb(error.__traceback__) if os.path.abspath(frame.f_code.co_filename) in files]
        if not frames:
            return None
        flag, line, text = files[os.path.abspath(frames[-1][0].f_code.co_filename)], frames[-1][1], str(error)
    return f"{flag}: {type(error).__name__} at line {line} of the config file: {' '.join(text.split())}; fix the file"


def _config_file_errors(argv: list[str]) -> list[str]:
    """Messages for config-file flags (--config, --sweep) whose file could not be loaded.

    ml_collections defers a failed load until the config is first used, then raises two chained
    tracebacks; checking right after parsing names the file instead.
    """
    messages = []
    for name, filename in _config_file_flags(argv):
        flag = flags.FLAGS[name]
        example = "configs/sweep_table1.py" if name == "sweep" else "configs/default.py"
        if not os.path.isfile(filename.split(":", 1)[0]):
            messages.append(f"--{name}={filename}: no such file; pass a config file such as {example}")
            continue
        try:
            flag.value.get("__probe__")  # a config that failed to load raises OSError on any use
        except OSError as error:
            messages.append(f"--{name}={filename} could not be loaded ({str(error).splitlines()[-1]})")
        except Exception:  # not parsed, or a config object without .get: nothing to report here
            pass
    return messages


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that every bad flag ends with one `error:` line, not a traceback or FATAL."""
    try:
        remaining = flags.FLAGS(argv)
    except (AttributeError, KeyError) as error:  # ml_collections raises these for a field the config lacks
        problems = _config_file_errors(argv)
        fail(problems[0] if problems else _unknown_field(error, argv))
    except OSError:  # an override of a config whose file did not load
        problems = _config_file_errors(argv)
        fail(problems[0] if problems else "a config file could not be loaded")
    except flags.Error as error:  # a value of the wrong type, a missing required flag
        problems = _config_file_errors(argv)
        fail(problems[0] if problems else f"{' '.join(str(error).split()).rstrip('.')}; pass --helpshort to see the flags")
    except Exception as error:  # the config file's own code failed: a syntax error, an exception in get_config()
        message = _config_code_error(error, argv)
        if message is None:
            raise
        fail(message)
    problems = _config_file_errors(argv)
    if problems:
        fail(problems[0])
    return remaining


@contextlib.contextmanager
def _orphans_held_back() -> Iterator[None]:
    """Hold back the tracebacks of orphaned coroutines ("Exception ignored in ...") and worker threads
    ("Event loop is closed") that a failed orbax operation leaves behind: they only repeat the error
    being reported, and garbage collection may print them at any moment after the failure. They are
    printed as usual if the block ends normally or with an unexpected error; a known error drops them."""
    held: list = []
    previous = sys.unraisablehook, threading.excepthook
    sys.unraisablehook = lambda unraisable: held.append((previous[0], unraisable))
    threading.excepthook = lambda args: held.append((previous[1], args))
    try:
        yield
    except (SystemExit, preemption.Preempted, KeyboardInterrupt):
        std_logging.getLogger("asyncio").disabled = True  # its "Future exception was never retrieved", at exit: the same
        raise  # ending the program: what is held back stays silent
    except BaseException:
        sys.unraisablehook, threading.excepthook = previous
        for hook, argument in held:
            hook(argument)
        raise
    sys.unraisablehook, threading.excepthook = previous
    for hook, argument in held:
        hook(argument)


def run_cleanly(function: Callable[[], T]) -> T:
    """Return `function()`; print a known error as `error: <message>` and exit with status 1."""
    logging.get_absl_handler().addFilter(_not_from_orbax)
    with _orphans_held_back():
        try:
            return function()
        except preemption.Preempted as stop:
            print(f"stopped: {stop}", file=sys.stderr)
            sys.exit(preemption.exit_status())  # 128 + the signal: the run is not finished
        except KeyboardInterrupt:  # Ctrl-C outside training, or twice: no checkpoint is taken now
            print("stopped: interrupted (SIGINT); rerun the same command to resume from the last checkpoint saved", file=sys.stderr)
            sys.exit(130)
        except USER_ERRORS as error:
            fail(str(error))
        except Exception as error:  # a full, read-only or forbidden disk; anything else stays a traceback
            message = workdir_lock.disk_error(error)
            if message is None:
                raise
            fail(message)
