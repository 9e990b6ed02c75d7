"""Sweeps: expand a sweep config into runs, build their commands, and tabulate their eval.json.

A sweep config's `runs` is a tuple of strings "field=value,other.field=value"; each becomes one
run of the base config with those `--config.` overrides, in workdir ROOT/<name>, where the name
joins the overridden values (e.g. "encoding=fixed2,run_kind=bitwise,seed=1" -> fixed2-bitwise-seed1)
unless the string sets it with "name=...".
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

from bitnet import configuration

ERROR_KEYS = ("float_error", "compressed_error", "bitwise_error", "packed_error")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: tuple[tuple[str, str], ...]

    def value(self, key: str, default: str = "") -> str:
        return dict(self.overrides).get(key, default)


def _name(overrides: tuple[tuple[str, str], ...]) -> str:
    parts = []
    for key, value in overrides:
        leaf = key.rsplit(".", 1)[-1]
        parts.append(f"{leaf}{value}" if leaf == "seed" or not value.isidentifier() else value)
    return "-".join(parts).replace("/", "_")


def expand(specs) -> list[Run]:
    """Parse the run strings of a sweep config; duplicates and malformed entries are errors."""
    runs = []
    for spec in specs:
        pairs, name = [], None
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise configuration.ConfigError(f"sweep run {spec!r}: {item!r} is not field=value")
            if key.strip() == "name":
                name = value.strip()  # an explicit workdir name, not a config field
            else:
                pairs.append((key.strip(), value.strip()))
        runs.append(Run(name or _name(tuple(pairs)), tuple(pairs)))
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise configuration.ConfigError(f"sweep runs share workdir names {duplicates}; make each run differ")
    return runs


def commands(run: Run, base_config: str, workdir: str) -> list[list[str]]:
    """The train and evaluate command lines of one run."""
    overrides = [f"--config.{key}={value}" for key, value in run.overrides]
    python = sys.executable
    return [
        [python, "-m", "experiments.train", f"--config={base_config}", *overrides, f"--workdir={workdir}"],
        [python, "-m", "experiments.evaluate", f"--workdir={workdir}"],
    ]


def local_gpu_count() -> int:
    """NVIDIA GPUs on this machine (without importing JAX, which would claim their memory)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def results_table(root: str, runs: list[Run]) -> str:
    """Markdown: one row per run (errors in %), then mean +- std over seeds per setting."""
    lines = [
        "| run | run kind | encoding | seed | float % | compressed % | bitwise % | packed % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        path = os.path.join(root, run.name, "eval.json")
        if not os.path.exists(path):
            lines.append(f"| {run.name} | missing eval.json | | | | | | |")
            continue
        with open(path) as file:
            result = json.load(file)
        seed = run.value("seed", "0")
        errors = [_percent(result.get(key)) for key in ERROR_KEYS]
        lines.append(f"| {run.name} | {result['run_kind']} | {result['encoding']} | {seed} | " + " | ".join(errors) + " |")
        final = result.get("packed_error", result.get("float_error"))
        setting = (result["run_kind"], result["encoding"])
        groups[setting].append(final)
    lines += ["", "| run kind | encoding | test error % (mean +- std) | seeds |", "|---|---|---|---|"]
    for (kind, encoding), values in sorted(groups.items()):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {kind} | {encoding} | {100 * statistics.mean(values):.2f} +- {100 * spread:.2f} | {len(values)} |")
    return "\n".join(lines) + "\n"
