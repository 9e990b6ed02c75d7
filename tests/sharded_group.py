"""A child process of tests/test_group_sharding.py: train groups of the tiny config (bitnet.training.train.train_runs) on the devices
this process sees (XLA_FLAGS, set by the parent before JAX starts) and print, as JSON, how each chunk's states were
placed: on how many devices, and how many runs on each.

    python -m tests.sharded_group SOURCE_DIR DATA_DIR ROOT AXIS:K [AXIS:K ...]

Each AXIS:K trains runs 0..K-1 as one group with the run axis AXIS (bitnet.training.group.AXES) in ROOT/<AXIS>-k<K>/run<i>:
seed i and a stage-2 learning rate of its own, so per-run values are sharded too.
"""

from __future__ import annotations

import json
import os
import sys

import jax

from bitnet.training import group, train
from tests import tiny

MAKE_GROUP_CHUNK = group.make_group_chunk  # before record_placements wraps it


def configs(source_dir: str, data_dir: str, size: int) -> list:
    """The group of `size` runs: seeds 0..size-1, each with its own stage-2 learning rate."""
    runs = []
    for seed in range(size):
        config = tiny.tiny_config(source_dir, data_dir)
        config.seed = seed
        config.stage2.learning_rate *= 1 + seed / 4
        runs.append(config)
    return runs


def record_placements(placements: list) -> None:
    """Make every group chunk append where its output states are: the devices and the runs on each of a kernel."""

    def recording(*args, **kwargs):
        chunk = MAKE_GROUP_CHUNK(*args, **kwargs)

        def call(*chunk_args):
            states = chunk(*chunk_args)
            kernel = jax.tree.leaves(states["params"])[0]
            placements.append({"devices": len(kernel.sharding.device_set), "runs_per_device": sorted({shard.data.shape[0] for shard in kernel.addressable_shards})})
            return states

        return call

    group.make_group_chunk = recording


def main(source_dir: str, data_dir: str, root: str, *groups: str) -> None:
    placements: dict[str, list] = {}
    for name in groups:
        axis, size = name.split(":")
        record_placements(placements.setdefault(name, []))
        workdirs = [os.path.join(root, f"{axis}-k{size}", f"run{run}") for run in range(int(size))]
        outcomes = train.train_runs(configs(source_dir, data_dir, int(size)), workdirs, axis=axis)
        assert [outcome.error for outcome in outcomes] == [None] * int(size)
    print(json.dumps({"device_count": jax.device_count(), "placements": placements}))


if __name__ == "__main__":
    main(*sys.argv[1:])
