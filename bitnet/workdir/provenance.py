"""Provenance: which code, libraries and hardware produced a run, one segment per process.

A run may be stopped and resumed on another machine, so WORKDIR/config.json keeps a list of
segments under "provenance": each training process appends one when it starts (start time, git
commit and whether the tree was dirty, library versions, device kind and count, the name and
checksums of the data it trains on) and closes it with
its end time and how it ended. A segment whose "end" is null was killed. eval.json and the
binarized model's meta copy the segments, plus the environment of the evaluation itself, so a
published number traces back to the code and machine that made it.

`hardware(segments)` is the kind of machine a run's numbers belong to ("cpu: AMD EPYC",
"gpu: NVIDIA H200"): results are pooled only within one kind (GPU and CPU round differently).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
from typing import Any, Iterator

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")
UNKNOWN = "unknown"
MIXED = "mixed"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def now() -> str:
    """UTC time as ISO 8601 with seconds, e.g. 2026-11-26T15:04:05Z."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache  # the code a process runs does not change while it runs: ask git once, not per segment
def code_version(directory: str = _PACKAGE_DIR) -> dict[str, Any]:
    """{"commit": sha, "dirty": bool} of the git checkout holding `directory`, else "unknown"."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", directory, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    return {"commit": commit, "dirty": dirty}


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = UNKNOWN
    return versions


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first value of each field of /proc/cpuinfo (Linux; empty elsewhere), read once: it does not change."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux), e.g. "AMD EPYC"."""
    return _cpuinfo().get("model name") or platform.processor() or UNKNOWN


# widest first: the vector instruction sets XLA compiles a CPU program for (x86 "flags", Arm "Features")
VECTOR_ISAS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sve", "SVE"), ("asimd", "NEON"))


def vector_isa(flags: str | None) -> str | None:
    """The widest vector instruction set named in a cpuinfo flags line, e.g. "AVX-512"; None if none is."""
    present = set((flags or "").split())
    return next((name for flag, name in VECTOR_ISAS if flag in present), None)


def cpu_kind() -> str:
    """The CPU as a kind of hardware: its model name and widest vector instruction set, e.g. "AMD EPYC, AVX2".

    The model name alone does not tell machines apart whose floating-point results differ: two guests
    that both report "AMD EPYC", one with AVX2 and one with AVX-512, train the same config to different
    numbers (experiments.invariants: every hash differs), because XLA compiles for the host's vector unit.
    """
    isa = vector_isa(_cpuinfo().get("flags") or _cpuinfo().get("Features"))
    return f"{cpu_model()}, {isa}" if isa else cpu_model()


def device_info() -> dict[str, Any]:
    """Platform, kind and count of the JAX devices this process computes on."""
    import jax  # late: reading provenance needs no JAX

    devices = jax.devices()
    kind = devices[0].device_kind
    return {
        "platform": devices[0].platform,
        "kind": cpu_kind() if devices[0].platform == "cpu" else kind,
        "count": len(devices),
        "cpu_count": os.cpu_count(),
    }


def environment() -> dict[str, Any]:
    """What this process runs with: code, library versions, devices."""
    return {"code": dict(code_version()), "versions": dict(library_versions()), "devices": device_info()}


def hardware_of(devices: dict[str, Any]) -> str:
    """The hardware label of one segment's devices, e.g. "gpu: NVIDIA H200" or "cpu: AMD EPYC"."""
    return f"{devices.get('platform', UNKNOWN)}: {devices.get('kind', UNKNOWN)}"


def hardware(segments: list[dict]) -> str:
    """The one kind of hardware that trained the run; MIXED if several did, UNKNOWN if none.

    Segments that trained no epoch (a rerun of a finished run) do not count."""
    kinds = {hardware_of(segment.get("devices", {})) for segment in segments if segment.get("epochs") != 0}
    if not kinds:
        return UNKNOWN
    return kinds.pop() if len(kinds) == 1 else MIXED


def commits(segments: list[dict]) -> list[str]:
    """The distinct commits of the segments, in order, a trailing "+dirty" where the tree was."""
    seen = []
    for segment in segments:
        code = segment.get("code", {})
        label = str(code.get("commit", UNKNOWN))[:7] + ("+dirty" if code.get("dirty") is True else "")
        if label not in seen:
            seen.append(label)
    return seen


# ---------------------------------------------------------------------------------------------
# Segments in WORKDIR/config.json


def _config_path(workdir: str) -> str:
    return os.path.join(workdir, "config.json")


def read_segments(workdir: str) -> list[dict]:
    """The provenance segments recorded in WORKDIR/config.json ([] if none)."""
    try:
        with open(_config_path(workdir)) as file:
            return list(json.load(file).get("provenance", {}).get("segments", []))
    except (OSError, json.JSONDecodeError):
        return []


def trained_data(workdir: str) -> dict | None:
    """The identity of the data the run in `workdir` trained on (`bitnet.input.data.Splits.identity`), as its last
    segment that recorded one has it; None if none did (no training yet, or only before checksums were recorded)."""
    recorded = [segment["data"] for segment in read_segments(workdir) if segment.get("data")]
    return recorded[-1] if recorded else None


def _update(workdir: str, change) -> None:
    """Rewrite config.json with `change(segments)` applied; atomically, so a kill loses nothing."""
    path = _config_path(workdir)
    with open(path) as file:
        content = json.load(file)
    segments = content.setdefault("provenance", {}).setdefault("segments", [])
    change(segments)
    tmp = path + ".tmp"
    with open(tmp, "w") as file:
        json.dump(content, file, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _metric_lines(workdir: str) -> int:
    """Epoch lines in WORKDIR/metrics.jsonl: how much training a segment did."""
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as file:
            return sum(1 for line in file if line.endswith("\n"))
    except OSError:
        return 0


@contextlib.contextmanager
def segment(workdir: str, data: dict | None = None, **facts: Any) -> Iterator[dict]:
    """Record this process as a segment of the run in `workdir` (whose config.json must exist),
    with the identity of the data it trained on (`bitnet.input.data.Splits.identity`), if given.

    The segment ends with "status": "finished", "stopped" (SIGTERM/SIGINT, resumable) or "error",
    and "epochs": the epoch lines it added to metrics.jsonl; a process killed outright leaves
    "end": null. `facts` are more fields of the segment (a group's runs and size); the dict it
    yields updates the segment when it ends (a run of a group that failed alone: its status and error).
    """
    entry = {"start": now(), "end": None, "status": None, "epochs": None, **environment(), "data": data, **facts}
    ending: dict = {}
    _update(workdir, lambda segments: segments.append(entry))
    lines_before = _metric_lines(workdir)
    status = "error"
    try:
        yield ending
        status = "finished"
    except BaseException as error:
        from bitnet.workdir import preemption  # late: avoids a cycle at import

        if isinstance(error, (preemption.Preempted, KeyboardInterrupt)):
            status = "stopped"
        raise
    finally:
        def close(segments: list[dict]) -> None:
            segments[-1].update({"end": now(), "status": status, "epochs": max(_metric_lines(workdir) - lines_before, 0), **ending})

        with contextlib.suppress(OSError, json.JSONDecodeError, IndexError):
            _update(workdir, close)  # a full or read-only disk must not hide the error being raised


def record(workdir: str) -> dict[str, Any]:
    """What eval.json and the binarized model's meta store: the training segments and this process."""
    return {"training_segments": read_segments(workdir), "evaluation": {"time": now(), **environment()}}
