"""One-off: provenance, config and hardware for the runs published before bitnet recorded them.

    BITNET_MNIST_DIR=../shared/data/mnist python -m experiments.backfill_provenance   # run once (done)

Runs published up to commit 1d0ce69 have no recorded provenance, and their workdirs are gone.
This script gives each registry entry what RESULTS.md stated at that commit, marked
`"backfilled": true`:
- code: the run's commit from RESULTS.md's "code" column, or from its section's heading;
- hardware and versions: RESULTS.md's "Hardware" paragraph (the H200 ran `sweep_augmented`'s
  first seven runs; everything else ran on the 2-core Intel Xeon CPU);
- config: the run's sweep config expanded as `experiments.sweep` expands it, at this commit's
  configs/ (default.py is unchanged since the oldest run's commit f40219f, but for `max_shift`,
  which later configs set to its old behaviour, 0); checked against every config field the entry
  recorded (seed, encoding, run kind, lambda).
The two CPU reruns of the augmented 0/1 cell, published as `sweep_augmented_cpu/...-cpu-seedN` (a
name no config produces), get their real sweep and run name; their files keep their paths.
- data: the real MNIST, which RESULTS.md says every run used (md5-checked IDX files): name and
  checksums of the files in $BITNET_MNIST_DIR, after checking their md5.
Entries that already have provenance (or data) keep it, so rerunning changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from absl import app

from bitnet.input import data
from bitnet.training import configuration
from bitnet.runs import registry, sweep
from experiments import tables

SOURCE_COMMIT = "1d0ce69"  # the last commit before provenance was recorded
CPU = "cpu: Intel Xeon Emerald Rapids"  # RESULTS.md: "one 2-core Intel Xeon (Emerald Rapids, AVX-512) KVM guest"
H200 = "gpu: NVIDIA H200"
VERSIONS = {CPU: {"jax": "0.10.2"}, H200: {"jax": "0.11.2", "flax": "0.12.10"}}  # as RESULTS.md states them
# Commits RESULTS.md states in a section heading or its text rather than in a "code" column.
SECTION_COMMITS = {
    "sweep_tuned": "993c492",  # "### Tuned lambda: `configs/sweep_tuned.py` (CPU, code 993c492)"
    "sweep_augmented": "8f5def7",  # "`configs/sweep_augmented.py` (H200 and CPU, code 8f5def7)"
    "augmented": "993c492",  # "`configs/augmented.py` (CPU, code 993c492)"
    "sweep_augmented_cpu/aug-binary-bitwise-cpu-seed0": "8f5def7",  # "... (code 8f5def7) and"
    "sweep_augmented_cpu/aug-binary-bitwise-cpu-seed1": "19646b6",  # "... (code 19646b6) run on the CPU"
}
SWEEP_FILES = {
    "sweep_table1": "configs/sweep_table1.py",
    "sweep_ablations": "configs/sweep_ablations.py",
    "sweep_tuned": "configs/sweep_tuned.py",
    "sweep_augmented": "configs/sweep_augmented.py",
}


def code_column(results_md: str) -> dict[str, str]:
    """run name -> commit, from the rows of RESULTS.md's tables whose last cell is a commit."""
    commits = {}
    for line in results_md.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 2 and re.fullmatch(r"[0-9a-f]{7}", cells[-1]):
            commits[cells[0]] = cells[-1]
    return commits


def identity(key: str) -> tuple[str, str]:
    """(sweep, run name as its config produces it) of a registry key."""
    sweep_name, run = key.split("/", 1)
    if sweep_name == "sweep_augmented_cpu":
        return "sweep_augmented", run.replace("-cpu-seed", "-seed")
    return sweep_name, run


def config_of(sweep_name: str, run: str) -> dict:
    if sweep_name == "augmented":
        base, overrides = "configs/augmented.py", (("seed", run.rsplit("seed", 1)[1]),)
    else:
        spec = sweep.load_sweep(SWEEP_FILES[sweep_name])
        match = next(candidate for candidate in sweep.expand(spec.runs) if candidate.name == run)
        base, overrides = spec.base, match.overrides
    return configuration.config_dict(sweep.run_config(os.path.join(tables.REPO, base), sweep.Run(run, overrides)))


def check_recorded_fields(key: str, entry: dict, config: dict) -> None:
    """The reconstructed config must agree with everything the entry recorded when it was published."""
    recorded = {"seed": entry["seed"], "encoding": entry["encoding"], "run_kind": entry["run_kind"]}
    if entry["run_kind"] == "bitwise":
        recorded.update({f"stage2.{field}": entry[field] for field in ("sparsity",) if field in entry})
    flat = configuration.flatten(config)
    wrong = {field: (value, flat.get(field)) for field, value in recorded.items() if flat.get(field) != value}
    if wrong:
        raise ValueError(f"{key}: the reconstructed config disagrees with the published entry: {wrong}")


def mnist_identity() -> dict:
    """{"name", "checksums"} of the real MNIST in $BITNET_MNIST_DIR, checked against MNIST's md5."""
    folder = os.environ.get(data.MNIST_DIR_ENV)
    if not folder:
        raise SystemExit(f"set {data.MNIST_DIR_ENV} to the real MNIST folder (the runs' data, md5-checked)")
    paths = data.find_idx_files(folder)
    wrong = [key for key, path in paths.items() if data.md5_decompressed(path) != data.MNIST_MD5[key]]
    if wrong:
        raise SystemExit(f"{folder} is not the real MNIST ({wrong} differ from its md5)")
    return {"name": "mnist", "checksums": data.idx_checksums(data.read_idx_folder(folder))}


def backfill(entries: dict[str, dict], results_md: str, mnist: dict) -> dict[str, dict]:
    commits = code_column(results_md)
    for key, entry in entries.items():
        if "data" not in entry:  # RESULTS.md: every run used the real MNIST's md5-checked IDX files
            entry["data"] = mnist
        if "provenance" in entry:
            continue
        sweep_name, run = identity(key)
        config = config_of(sweep_name, run)
        check_recorded_fields(key, entry, config)
        hardware = H200 if key.startswith("sweep_augmented/") else CPU
        commit = commits.get(key.split("/", 1)[1]) or SECTION_COMMITS.get(key) or SECTION_COMMITS[sweep_name]
        entry.update(
            sweep=sweep_name,
            run=run,
            config=registry.without_paths(config),
            hardware=hardware,
            provenance={
                "backfilled": True,
                "source": f"RESULTS.md at {SOURCE_COMMIT}; config from {SWEEP_FILES.get(sweep_name, 'configs/augmented.py')}",
                "commits": [commit],
                "versions": VERSIONS[hardware],
            },
        )
    return entries


def main(argv):
    del argv
    results_md = subprocess.run(
        ["git", "-C", tables.REPO, "show", f"{SOURCE_COMMIT}:RESULTS.md"], capture_output=True, text=True, check=True
    ).stdout
    entries = backfill(registry.load(tables.REGISTRY), results_md, mnist_identity())
    with open(tables.REGISTRY, "w") as file:
        json.dump(entries, file, indent=2, sort_keys=True)
        file.write("\n")
    print(f"backfilled {tables.REGISTRY}: {len(entries)} entries")


if __name__ == "__main__":
    app.run(main)
