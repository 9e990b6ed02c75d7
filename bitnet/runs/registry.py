"""The results registry (results/results.json) and the tables made from it, pooled by what was run.

Every finished run of a published config is one entry: its errors, its config, the data it was
measured on (name and IDX checksums), the hardware it trained on and its provenance (code
commits, library versions; `bitnet.workdir.provenance`). Runs are pooled by their config without the
seed and without paths (data folders, workdirs, a shared stage-1 workdir; fields added later read
as their old behaviour), by their data's checksums, and by the kind of hardware, so
a mean +- std never mixes configs or machines and never depends on run names. Tables list every
seed that went into each mean, with each hardware's pool side by side; the README and RESULTS.md
tables are regenerated from here (`python -m experiments.report --tables`), between markers

    <!-- table:NAME -->  ...  <!-- /table:NAME -->
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import statistics
from collections import defaultdict
from typing import Any, Callable, Iterable

from bitnet.training import configuration

# Not part of what a run IS: the seed varies within a pool; paths name where, not what; the
# checkpoint cadence only says when the latest state is saved (a resumed run ends bit for bit as an
# uninterrupted one), so a long GPU run that saves rarely pools with the same config saved every epoch.
PATH_FIELDS = ("data.source_dir", "data.data_dir", "stage2.stage1_workdir")
CADENCE_FIELDS = tuple(f"{stage}.{field}" for stage in ("stage1", "stage2") for field in ("checkpoint_every_epochs", "checkpoint_every_seconds"))
POOL_EXCLUDED = ("seed", *PATH_FIELDS, *CADENCE_FIELDS)

Entry = dict[str, Any]


# The number a run is reported by, the first of these it has: its packed XNOR-popcount error, its
# simulated bitwise net's (a batch-norm run evaluated before bitnet-packed-v2 had none), or a float run's error.
FINAL_ERROR_KEYS = ("packed_error", "bitwise_error", "float_error")


def final_error(entry: Entry) -> float:
    """The number a run is reported by (FINAL_ERROR_KEYS)."""
    return next(entry[key] for key in FINAL_ERROR_KEYS if entry.get(key) is not None)


def flat_config(config: dict) -> dict[str, Any]:
    """Dotted fields of a config (a config.json's content), with fields added later at the value
    that behaves as the code did before them, and records (provenance) dropped."""
    return {**configuration.ADDED_FIELDS, **configuration.flatten(configuration.config_fields(config))}


def without_paths(config: dict) -> dict:
    """The config with its path fields removed: what the registry stores (paths are per machine)."""
    flat = {key: value for key, value in configuration.flatten(config).items() if key not in PATH_FIELDS}
    return configuration.unflatten(flat)


# Fields added to the config before the registry's ids were first published are part of every id;
# a field added since counts only where it is set to another value than its neutral one
# (configuration.ADDED_FIELDS), so adding a field to bitnet leaves every published id as it was.
ID_FIELDS_BEFORE_REGISTRY = ("stage1.max_shift", "stage2.max_shift")


def pool_config(config: dict) -> dict[str, Any]:
    flat = configuration.same_run_fields(flat_config(config))  # fan_in on a net up to 1024 wide is "none"
    return {
        key: value
        for key, value in sorted(flat.items())
        if key not in POOL_EXCLUDED
        and (key in ID_FIELDS_BEFORE_REGISTRY or key not in configuration.ADDED_FIELDS or configuration.ADDED_FIELDS[key] != value)
    }


def config_id(config: dict, data: dict | None = None) -> str:
    """A short stable id of the pooled config and the data it ran on (its IDX checksums, where
    recorded): same id = same run but for seed and paths."""
    checksums = (data or {}).get("checksums")
    what = {"config": pool_config(config), **({"data": checksums} if checksums else {})}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def entry_id(entry: Entry) -> str:
    return config_id(entry["config"], entry.get("data"))


def setting(name: str) -> str:
    """A run's name without its seed ("bipolar-bitwise-seed2" -> "bipolar-bitwise"): a label only."""
    return re.sub(r"-seed\d+$", "", name)


@dataclasses.dataclass
class Pool:
    """The finished runs of one config (but the seed) on one kind of hardware."""

    config_id: str
    hardware: str
    entries: list[Entry]

    @property
    def errors(self) -> list[float]:
        return [final_error(entry) for entry in self.entries]

    @property
    def label(self) -> str:
        return " / ".join(dict.fromkeys(f"{entry['sweep']}/{setting(entry['run'])}" for entry in self.entries))

    def summary(self) -> str:
        """"2.05 +- 0.09 % (seeds 0, 1, 2: 1.94, 2.09, 2.11)": the mean (sample std), every seed in it."""
        errors = self.errors
        seeds = ", ".join(str(entry["seed"]) for entry in self.entries)
        if len(errors) == 1:
            return f"{100 * errors[0]:.2f} % (seed {seeds})"
        mean, spread = 100 * statistics.mean(errors), 100 * statistics.stdev(errors)
        return f"{mean:.2f} +- {spread:.2f} % (seeds {seeds}: {', '.join(f'{100 * error:.2f}' for error in errors)})"


def pools(entries: Iterable[Entry]) -> list[Pool]:
    """Entries grouped by (config id, hardware), in first-seen order; seeds sorted within a pool."""
    grouped: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        grouped[(entry_id(entry), entry["hardware"])].append(entry)
    return [
        Pool(cid, hardware, sorted(members, key=lambda entry: (entry["seed"], entry["run"])))
        for (cid, hardware), members in grouped.items()
    ]


def load(path: str) -> dict[str, Entry]:
    with open(path) as file:
        return json.load(file)


# ---------------------------------------------------------------------------------------------
# Tables


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f} %"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def short_hardware(hardware: str) -> str:
    """"gpu: NVIDIA H200" -> "H200", "cpu: AMD EPYC" -> "CPU (AMD EPYC)": for table headers."""
    platform, _, kind = hardware.partition(": ")
    if platform == "cpu":
        return f"CPU ({kind})"
    return kind.removeprefix("NVIDIA ") or hardware


def pools_table(entries: Iterable[Entry]) -> str:
    """One row per config, one column per hardware kind: each cell a pool with all its seeds."""
    all_pools = pools(entries)
    hardware_kinds = list(dict.fromkeys(pool.hardware for pool in all_pools))
    rows: dict[str, dict[str, Pool]] = defaultdict(dict)
    for pool in all_pools:
        rows[pool.config_id][pool.hardware] = pool
    lines = [
        "| config (runs) | id | " + " | ".join(short_hardware(kind) for kind in hardware_kinds) + " |",
        "|---|---|" + "---|" * len(hardware_kinds),
    ]
    for cid, by_hardware in rows.items():
        label = " / ".join(dict.fromkeys(pool.label for pool in by_hardware.values()))
        cells = [by_hardware[kind].summary() if kind in by_hardware else "" for kind in hardware_kinds]
        lines.append(f"| {label} | {cid} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(entries: Iterable[Entry]) -> str:
    """One row per run: hardware, what it varies, its errors, size, time and code."""
    lines = [
        "| run | hardware | encoding | seed | lambda | stage-2 init | STE | compressed (stage 1) | bitwise / float (packed) "
        "| best val | nonzero weights | stored bits | training time | code |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        stage2 = entry["config"].get("stage2", {}) if entry["run_kind"] == "bitwise" else {}
        code = ", ".join(entry["provenance"]["commits"]) + (" (backfilled)" if entry["provenance"].get("backfilled") else "")
        cells = [
            entry["run"], short_hardware(entry["hardware"]), entry["encoding"], str(entry["seed"]),
            *(str(stage2.get(key, "")) for key in ("sparsity", "init", "surrogate")),
            _percent(entry.get("compressed_error")), _percent(final_error(entry)), _percent(entry.get("best_val_error")),
            _count(entry.get("nonzero_weights")), _count(entry.get("stored_bits")),
            f"{entry['train_seconds'] / 60:.1f} min", code,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of a summary table: the runs of `sweeps` whose config has the `fields` values."""

    label: str
    sweeps: tuple[str, ...]
    fields: tuple[tuple[str, Any], ...] = ()

    def matches(self, entry: Entry) -> bool:
        flat = flat_config(entry["config"])
        return entry["sweep"] in self.sweeps and all(flat.get(key) == value for key, value in self.fields)


def summary_table(
    entries: Iterable[Entry], rows: Iterable[Row], columns: dict[str, Callable[[Entry], bool]], fixed: Iterable[str] = ()
) -> str:
    """A table of pools: one line per (row, hardware), one cell per column; `fixed` lines on top.

    A cell holding two pools (two configs on one hardware) is an error: the layout must say which."""
    entries = list(entries)
    lines = ["| network | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns), *fixed]
    for row in rows:
        members = [entry for entry in entries if row.matches(entry)]
        for hardware in dict.fromkeys(entry["hardware"] for entry in members):
            cells = []
            for column, belongs in columns.items():
                cell_pools = pools(entry for entry in members if entry["hardware"] == hardware and belongs(entry))
                if len(cell_pools) > 1:
                    raise ValueError(
                        f"table row {row.label!r}, column {column!r} holds {len(cell_pools)} configs "
                        f"({[pool.label for pool in cell_pools]}); narrow the row's fields"
                    )
                cells.append(cell_pools[0].summary() if cell_pools else "")
            lines.append(f"| {row.label}, {short_hardware(hardware)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, name: str, content: str) -> str:
    """`text` with the lines between <!-- table:NAME --> and <!-- /table:NAME --> set to `content`."""
    begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {begin} ... {end} block; add the two marker lines where the table goes")
    return pattern.sub(lambda _: f"{begin}\n{content}\n{end}", text)
