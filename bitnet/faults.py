"""Test-only fault injection: a kill, a SIGTERM or a full disk forced at a named point of a real write.

The reliability tests (tests/test_faults.py) need a process to die, be preempted or run out of disk
at one exact moment: between the "best" and "latest" checkpoint saves, inside orbax's asynchronous
save, on an epoch's last step, while the binarized model or eval.json is written. Timing a signal
from outside cannot hit such a moment reliably, and a full disk would need a mount; so each of
those writes calls `point(name)` where the fault belongs, and the test's subprocess arms one fault
through its environment:

    BITNET_FAULT=<point>:<action>[:<n>]     e.g. BITNET_FAULT=between_best_and_latest:kill:2

action: kill (SIGKILL this process: nothing more runs), term (SIGTERM: a preemption), enospc
(raise OSError(ENOSPC), what a write to a full disk raises); n: act the n-th time the point is
reached (default 1). Not for users: unset, as always outside the tests, `point` returns at once.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import os
import signal
import sys
from typing import Callable

VARIABLE = "BITNET_FAULT"
POINTS = {
    "between_best_and_latest": "checkpoints.save_stage: the best checkpoint saved, the latest not yet",
    "checkpoint_written": "orbax's background save of a stage checkpoint: files written, not yet renamed into place",
    "binarized_written": "the same for the binarized model (checkpoints/binarized)",
    "epoch_last_step": "bitnet.training.loop: the chunk with an epoch's last step has run, the epoch's end not yet",
    "npz_written": "export.write_npz: the temporary .npz written, not yet renamed to its name",
    "eval_json_written": "evaluate: eval.json's temporary file being written",
}
ACTIONS = ("kill", "term", "enospc")


@dataclasses.dataclass(frozen=True)
class Fault:
    point: str
    action: str
    nth: int = 1


def parse(text: str) -> Fault | None:
    """The fault a BITNET_FAULT value arms (None for ""); ValueError for a typo, so a test never arms nothing."""
    if not text:
        return None
    point, _, rest = text.partition(":")
    action, _, nth = rest.partition(":")
    if point not in POINTS or action not in ACTIONS or not (nth or "1").isdigit() or int(nth or "1") < 1:
        raise ValueError(f"{VARIABLE}={text!r}: expected <point>:<action>[:<n>], point one of {sorted(POINTS)}, action one of {ACTIONS}")
    return Fault(point, action, int(nth or "1"))


_armed = parse(os.environ.get(VARIABLE, ""))
_reached: collections.Counter[str] = collections.Counter()


def point(name: str, path: str = "") -> None:
    """The write `name` (of `path`) is at its fault point: act if the armed fault is due here."""
    if _armed is None or _armed.point != name:
        return
    _reached[name] += 1
    if _reached[name] == _armed.nth:
        act(_armed, path)


def hook(name: str, path: str) -> Callable[[], None] | None:
    """`point(name, path)` as a callback for orbax's background save thread; None unless armed for `name`."""
    return functools.partial(point, name, path) if _armed is not None and _armed.point == name else None


def act(fault: Fault, path: str) -> None:
    """Do what `fault` says, announced on stderr first (the test checks that it fired where meant)."""
    print(f"fault: {fault.action} at {fault.point} ({fault.nth})", file=sys.stderr, flush=True)
    if fault.action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    os.kill(os.getpid(), signal.SIGKILL if fault.action == "kill" else signal.SIGTERM)
