"""Sweeps: expand a sweep config into runs, build their commands, and tabulate their eval.json.

A sweep config's `runs` is a tuple of strings "field=value,other.field=value"; each becomes one
run of the base config with those `--config.` overrides, in workdir ROOT/<name>, where the name
joins the overridden values (e.g. "encoding=fixed2,run_kind=bitwise,seed=1" -> fixed2-bitwise-seed1)
unless the string sets it with "name=...". A tuple value keeps its commas inside parentheses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

from bitnet import configuration, export, summary
from bitnet.metrics import read_metrics

_FIELD_SEPARATOR = re.compile(r",(?![^()]*\))")  # commas outside parentheses: hidden_sizes=(2048,2048)
ERROR_KEYS = ("float_error", "compressed_error", "bitwise_error", "packed_error")
# A run's final test error: its packed model's, else (batch norm: no packed form yet) its simulated bitwise net's.
FINAL_ERROR_KEYS = ("packed_error", "bitwise_error", "float_error")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: tuple[tuple[str, str], ...]


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
        for item in filter(None, (part.strip() for part in _FIELD_SEPARATOR.split(spec))):
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


def device_environments(parallel: int, gpus: int) -> list[dict[str, str]]:
    """The environment of each of `parallel` run slots: the GPU it sees (round-robin, so several runs
    can share one GPU) and, when they share, a slice of its memory, since JAX's default claims 75 %
    of a GPU per process. On a machine without GPUs the slots change nothing."""
    if not gpus:
        return [{} for _ in range(parallel)]
    runs_per_gpu = -(-parallel // gpus)
    environments = []
    for slot in range(parallel):
        environment = {"CUDA_VISIBLE_DEVICES": str(slot % gpus)}
        if runs_per_gpu > 1:
            environment["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / runs_per_gpu:.3f}"
        environments.append(environment)
    return environments


def select(runs: list[Run], names: list[str] | None) -> list[Run]:
    """The runs called `names` (all runs when None), in sweep order; unknown names are an error."""
    if not names:
        return runs
    unknown = sorted(set(names) - {run.name for run in runs})
    if unknown:
        raise configuration.ConfigError(
            f"no sweep run named {unknown}; this sweep's runs are {[run.name for run in runs]}"
        )
    return [run for run in runs if run.name in names]


def setting(name: str) -> str:
    """A run's name without its seed ("bipolar-bitwise-seed2" -> "bipolar-bitwise"): the seeds of
    one setting share it, and the summary pools only those."""
    return re.sub(r"-seed\d+$", "", name)


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def run_record(workdir: str) -> dict | None:
    """What a finished run measured: its eval.json, the config fields an ablation varies, the best
    validation error and training time of each stage, and the stored size of its bitwise model.
    None when the run has no eval.json yet."""
    result = _read_json(os.path.join(workdir, "eval.json"))
    if result is None:
        return None
    config = _read_json(os.path.join(workdir, "config.json")) or {}
    metrics = read_metrics(workdir)
    record = dict(result)
    record["seed"] = config.get("seed")
    stage2 = config.get("stage2", {})
    if result.get("run_kind") == "bitwise":
        record.update(sparsity=stage2.get("sparsity"), init=stage2.get("init"), surrogate=stage2.get("surrogate"))
    record["train_seconds"] = sum(line["epoch_seconds"] for line in metrics)
    last_stage = metrics[-1]["stage"] if metrics else None
    validated = [line["val_error"] for line in metrics if line["stage"] == last_stage and line["val_error"] is not None]
    record["best_val_error"] = min(validated, default=None)
    npz_path = os.path.join(workdir, "bitwise.npz")
    if os.path.exists(npz_path):
        total = summary.totals(summary.summarize_arrays(*export.load_npz(npz_path)))
        record["nonzero_weights"] = total["nonzero_weights"]
        record["stored_bits"] = 8 * total["packed_bytes"]
    return record


def _percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _count(value) -> str:
    return "" if value is None else f"{value:,}"


def results_table(root: str, names: list[str]) -> str:
    """Markdown: one row per run (errors in %), then mean +- std over the seeds of each setting.

    "bitwise" is the simulated Flax forward, "packed" the XNOR-popcount path on the exported
    model, "best val" the stage's model-selection error, "stored bits" the packed size as
    `bitnet.summary` counts it (sign planes, mask planes where a layer has zeros, int8 biases).
    """
    lines = [
        "| run | run kind | encoding | seed | lambda | stage-2 init | STE | float % | compressed % | bitwise % "
        "| packed % | best val % | nonzero weights | stored bits | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for name in names:
        record = run_record(os.path.join(root, name))
        if record is None:
            lines.append(f"| {name} | missing eval.json |" + " |" * 13)
            continue
        cells = [
            name, record["run_kind"], record["encoding"], str(record["seed"]),
            *(str(record.get(key, "")) for key in ("sparsity", "init", "surrogate")),
            *(_percent(record.get(key)) for key in ERROR_KEYS), _percent(record["best_val_error"]),
            _count(record.get("nonzero_weights")), _count(record.get("stored_bits")), f"{record['train_seconds'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        final = next(record[key] for key in FINAL_ERROR_KEYS if record.get(key) is not None)
        groups[(setting(name), record["run_kind"], record["encoding"])].append(final)
    lines += ["", "| setting | run kind | encoding | test error % (mean +- std over seeds) | seeds |", "|---|---|---|---|---|"]
    for (name, kind, encoding), values in groups.items():
        spread = f"{100 * statistics.stdev(values):.2f}" if len(values) > 1 else "n/a"
        lines.append(f"| {name} | {kind} | {encoding} | {100 * statistics.mean(values):.2f} +- {spread} | {len(values)} |")
    return "\n".join(lines) + "\n"
