"""Sweeps: expand a sweep config into runs, build their commands, and tabulate their eval.json.

A sweep file builds its runs as data (bitnet.runs.hyper: typed axes, products, chains) and its
config holds them as `runs`, a tuple of strings "field=value,other.field=value" (what `--only` and
the logs name); each becomes one run of the base config with those `--config.` overrides, in
workdir ROOT/<name>, where the name joins the overridden values (e.g.
"encoding=fixed2,run_kind=bitwise,seed=1" -> fixed2-bitwise-seed1) unless the run sets "name". A
tuple value keeps its commas inside parentheses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Hashable

import ml_collections
from absl import flags
from ml_collections import config_flags

from bitnet.deploy import export, summary
from bitnet.errors import ERROR_FILE
from bitnet.workdir import provenance
from bitnet.training import configuration
from bitnet.runs import registry
from bitnet.workdir.metrics import read_metrics

_FIELD_SEPARATOR = re.compile(r",(?![^()]*\))")  # commas outside parentheses: hidden_sizes=(2048,2048)
ERROR_KEYS = ("float_error", "compressed_error", "bitwise_error", "packed_error")


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


def run_config(base: str, run: Run) -> ml_collections.ConfigDict:
    """The config a run trains with: the base config file with the run's overrides, parsed exactly as
    `experiments.train --config=BASE --config.field=value` parses them; ConfigError for an override that does not fit."""
    argv = ["sweep", f"--config={base}", *[f"--config.{key}={value}" for key, value in run.overrides]]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=flag_values, lock_config=True, sys_argv=argv)
    try:
        flag_values(argv)
    except (AttributeError, KeyError, ValueError, flags.Error) as error:  # what ml_collections and absl raise for a bad override
        raise configuration.ConfigError(f"sweep run {run.name}: {str(error).splitlines()[0]}") from None
    return flag_values.config


def groups(runs: list[Run], keys: list[Hashable], max_size: int = 0) -> list[list[Run]]:
    """The runs with equal keys (bitnet.training.group.group_key: they can train as one program), in the order of each
    key's first run, split into groups of at most `max_size` runs (0: no cap)."""
    by_key: dict[Hashable, list[Run]] = {}
    for run, key in zip(runs, keys, strict=True):
        by_key.setdefault(key, []).append(run)
    size = max_size or len(runs)
    return [members[start : start + size] for members in by_key.values() for start in range(0, len(members), size)]


def group_command(runs: list[Run], sweep_file: str, root: str, distributed: bool = False) -> list[str]:
    """The command line that trains `runs` of a sweep as one group (experiments.train_group); `distributed`: as one of
    the processes (nodes) of a group over several, each running this same command."""
    names = ",".join(run.name for run in runs)
    command = [sys.executable, "-m", "experiments.train_group", f"--sweep={sweep_file}", f"--workdir_root={root}", f"--runs={names}"]
    return command + (["--distributed"] if distributed else [])


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


def unit_environments(parallel: int | None, grouped: bool, gpus: int) -> list[dict[str, str]]:
    """The environment of each slot a sweep trains its units (groups or single runs) in. By default a grouped sweep
    trains one unit at a time seeing every visible GPU, over which a group shards its runs (bitnet.training.group.run_mesh);
    with `parallel` given, or without groups, `device_environments` (default: one slot per GPU)."""
    if parallel is None and grouped:
        return [{}]
    return device_environments(parallel or max(gpus, 1), gpus)


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


def error_line(workdir: str) -> str | None:
    """The error line of a run's last try, if it failed (WORKDIR/error.txt: written by training for a run that failed
    while its group trained on, and by the sweep for any failed training or evaluation), else None."""
    path = os.path.join(workdir, ERROR_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return file.read().strip() or None


def record_error(workdir: str, line: str | None) -> None:
    """Keep `line` as the error of the run's try (None: it has none yet, at a try's start), so a table collected later
    from the workdirs (a SLURM sweep's) shows the line the sweep saw."""
    path = os.path.join(workdir, ERROR_FILE)
    if line is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    with open(path + ".tmp", "w") as file:
        file.write(line + "\n")
    os.replace(path + ".tmp", path)


def recorded_errors(root: str, names: list[str]) -> dict[str, str]:
    """Each run's recorded error line (`record_error`), by run name, for the runs that have one."""
    return {name: line for name in names if (line := error_line(os.path.join(root, name))) is not None}


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def run_record(workdir: str, sweep_name: str = "", run_name: str = "") -> dict | None:
    """A registry entry (`bitnet.runs.registry`) for a finished run: its eval.json errors, its config
    without paths, the hardware that trained it and its provenance, the best validation error and
    training time of its last stage, and the stored size of its bitwise model. None without eval.json."""
    result = _read_json(os.path.join(workdir, "eval.json"))
    if result is None:
        return None
    config = _read_json(os.path.join(workdir, "config.json")) or {}
    segments = provenance.read_segments(workdir)
    metrics = read_metrics(workdir)
    record = {key: value for key, value in result.items() if key != "provenance"}
    record.update(
        sweep=sweep_name or os.path.basename(os.path.dirname(os.path.abspath(workdir))),
        run=run_name or os.path.basename(os.path.abspath(workdir)),
        seed=config.get("seed"),
        config=registry.without_paths(configuration.config_fields(config)),
        hardware=provenance.hardware(segments),
        provenance={"commits": provenance.commits(segments), "segments": segments},
    )
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


def results_table(root: str, names: list[str], failures: dict[str, str] | None = None) -> str:
    """Markdown: one row per run (`registry.runs_table`), then the pools: mean +- std over the seeds
    of each config on each kind of hardware, every seed listed (`registry.pools_table`). A run in `failures`
    (run name -> its error line, as the sweep saw it fail this time) gets that line instead of its eval.json's errors.

    "packed" is the XNOR-popcount path on the exported model, "best val" the last stage's
    model-selection error, "stored bits" the packed size as `bitnet.deploy.summary` counts it.
    """
    failures = failures or {}
    records, missing = [], []
    for name in names:
        if name in failures:
            continue  # its eval.json, if any, is from an earlier try
        record = run_record(os.path.join(root, name), os.path.basename(os.path.abspath(root)), name)
        (missing.append(name) if record is None else records.append(record))
    return records_table(records, missing, {name: failures[name] for name in names if name in failures})


def _failure_cell(error: str) -> str:
    """A run's error line as one markdown table cell."""
    return "failed: " + error.replace("|", "\\|")


def records_table(records: list[dict], missing: list[str] = (), failures: dict[str, str] | None = None) -> str:
    """results_table's markdown from run records or registry entries (a published sweep's table lists every
    published run of it, also those whose workdirs are gone), then a row for each run without eval.json and
    one for each failed run (run name -> error line) with its error line."""
    lines = [registry.runs_table(records)]
    lines += [f"| {name} | missing eval.json |" + " |" * 12 for name in missing]
    lines += [f"| {name} | {_failure_cell(error)} |" + " |" * 12 for name, error in (failures or {}).items()]
    lines += ["", "Pooled by config (but the seed) and hardware:", "", registry.pools_table(records)]
    return "\n".join(lines) + "\n"


def validation_table(root: str, names: list[str], failures: dict[str, str] | None = None) -> str:
    """Markdown for tuning: per run, each stage's epochs and best validation error, its last validation error and
    its training time (a group's runs each show the group's wall time), from metrics.jsonl only (a screen chooses by
    validation; no test error is read); a run in `failures` (run name -> error line) gets a row with its error line."""
    failures = failures or {}
    lines = ["| run | stage | epochs | best val | last val | training time |", "|---|---|---|---|---|---|"]
    for name in names:
        metrics = read_metrics(os.path.join(root, name))
        if not metrics and name not in failures:
            lines.append(f"| {name} | not trained |  |  |  |  |")
        for stage in dict.fromkeys(line["stage"] for line in metrics):
            lines_of_stage = [line for line in metrics if line["stage"] == stage]
            validated = [line["val_error"] for line in lines_of_stage if line["val_error"] is not None]
            best = f"{100 * min(validated):.2f} %" if validated else ""
            last = f"{100 * validated[-1]:.2f} %" if validated else ""
            minutes = sum(line["epoch_seconds"] for line in lines_of_stage) / 60
            lines.append(f"| {name} | {stage} | {lines_of_stage[-1]['epoch']} | {best} | {last} | {minutes:.1f} min |")
        if name in failures:
            lines.append(f"| {name} | {_failure_cell(failures[name])} |  |  |  |  |")
    return "\n".join(lines) + "\n"


def load_sweep(path: str):
    """A sweep file's get_config(): {base, runs}."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
