"""A group's run axis sharded over several devices (bitnet.group.run_mesh): four CPU devices forced with XLA_FLAGS
in a child process (tests/sharded_group.py), against the same groups in a child with one device."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.test_pipeline import REPO, metric_lines, synthetic  # noqa: F401  (synthetic: a fixture)

DEVICES = 4
GROUPS = ("map:3", "vmap:5")  # fewer runs than devices (3 of the 4 used); more (padded to 8, two on each device)
VMAP_TOLERANCE = 1e-6  # vmap batches the runs' reductions, which round differently in a batch of 2 than of 5: about 1e-8 a step, 48 steps (measured: 3e-8)


def train_groups(source, root, devices):
    """Start training GROUPS in a child process that sees `devices` CPU devices (with its own prepared data)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "tests.sharded_group", str(source), str(root / "tfds"), str(root), *GROUPS]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def placements(child):
    """The child's record of where its chunks' states were, once it has finished."""
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def final_params(workdir, stage):
    """The parameters of a stage's latest checkpoint (its last step), as numpy arrays."""
    path = os.path.join(workdir, "checkpoints", stage, "latest")
    (step,) = os.listdir(path)
    return jax.tree.map(np.asarray, ocp.PyTreeCheckpointer().restore(os.path.join(path, step, "state"))["params"])


def numbers(workdir):
    """Per metrics line: (stage, epoch, train loss, train error, validation error)."""
    return [(line["stage"], line["epoch"], line["train_loss"], line["train_error"], line["val_error"]) for line in metric_lines(workdir)]


def test_a_group_sharded_over_devices_trains_as_on_one(synthetic, tmp_path):
    """Each chunk's states sharded over min(K, 4) devices; every run's metrics and final parameters of both stages
    as on one device: bit for bit with map (each device loops over its runs exactly as one device does), within
    VMAP_TOLERANCE with vmap."""
    source, _ = synthetic
    children = [train_groups(source, tmp_path / "one", 1), train_groups(source, tmp_path / "sharded", DEVICES)]  # at once
    one, sharded = map(placements, children)
    assert (one["device_count"], sharded["device_count"]) == (1, DEVICES)
    for name in GROUPS:
        axis, size = name.split(":")
        devices = min(int(size), DEVICES)
        assert {json.dumps(p) for p in one["placements"][name]} == {json.dumps({"devices": 1, "runs_per_device": [int(size)]})}
        assert {json.dumps(p) for p in sharded["placements"][name]} == {json.dumps({"devices": devices, "runs_per_device": [-(-int(size) // devices)]})}
        tolerance = 0 if axis == "map" else VMAP_TOLERANCE
        for run in range(int(size)):
            alone, spread = (str(root / f"{axis}-k{size}" / f"run{run}") for root in (tmp_path / "one", tmp_path / "sharded"))
            expected, got = numbers(alone), numbers(spread)
            assert [line[:2] for line in got] == [line[:2] for line in expected] == [(s, e) for s in ("compressed", "bitwise") for e in (1, 2)]
            if axis == "map":
                assert got == expected
            np.testing.assert_allclose([line[2] for line in got], [line[2] for line in expected], rtol=0, atol=tolerance)
            for stage in ("compressed", "bitwise"):
                jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=tolerance), final_params(spread, stage), final_params(alone, stage))
