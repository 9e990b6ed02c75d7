"""A group's run axis sharded over several devices (bitnet.training.group.run_mesh): four CPU devices forced with XLA_FLAGS
in a child process (tests/sharded_group.py), against the same groups in a child with one device."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bitnet.workdir import checkpoints, provenance
from tests.helpers import REPO, metric_lines

pytestmark = pytest.mark.slow  # end-to-end group runs in child processes (about a minute each): the full tier

DEVICES = 4
GROUPS = ("map:3", "vmap:5")  # fewer runs than devices (3 of the 4 used); more (padded to 8, two on each device)
VMAP_TOLERANCE = 1e-6  # vmap batches the runs' reductions, which round differently in a batch of 2 than of 5: about 1e-8 a step, 48 steps (measured: 3e-8)


def train_groups(source, root, devices, groups=GROUPS):
    """Start training `groups` in a child process that sees `devices` CPU devices (with its own prepared data in root)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, "-m", "tests.sharded_group", str(source), str(root / "tfds"), str(root), *groups]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def placements(child):
    """The child's record of where its chunks' states were, once it has finished."""
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def workdirs(root, name):
    """The run workdirs of group `name` ("AXIS:K") under root."""
    axis, size = name.split(":")
    return [str(root / f"{axis}-k{size}" / f"run{run}") for run in range(int(size))]


def final_params(workdir, stage):
    """The parameters of a stage's latest checkpoint (its last step), as numpy arrays."""
    path = os.path.join(workdir, "checkpoints", stage, "latest")
    (step,) = os.listdir(path)
    return checkpoints.read_arrays(os.path.join(path, step, "state"))["params"]


def numbers(workdir):
    """Per metrics line: (stage, epoch, train loss, train error, validation error)."""
    return [(line["stage"], line["epoch"], line["train_loss"], line["train_error"], line["val_error"]) for line in metric_lines(workdir)]


def assert_trained_alike(workdir, expected_workdir, tolerance):
    """Both stages' metrics and final parameters of two workdirs: equal, or the losses and parameters within `tolerance`."""
    expected, got = numbers(expected_workdir), numbers(workdir)
    assert [line[:2] for line in got] == [line[:2] for line in expected] == [(s, e) for s in ("compressed", "bitwise") for e in (1, 2)]
    if tolerance == 0:
        assert got == expected
    np.testing.assert_allclose([line[2] for line in got], [line[2] for line in expected], rtol=0, atol=tolerance)
    for stage in ("compressed", "bitwise"):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=tolerance), final_params(workdir, stage), final_params(expected_workdir, stage))


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    """GROUPS trained on one device and on DEVICES, in two children at once: (roots, their placement records)."""
    source, _ = synthetic
    roots = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("sharded")
    children = [train_groups(source, roots[0], 1), train_groups(source, roots[1], DEVICES)]
    return roots, [placements(child) for child in children]


def test_a_group_sharded_over_devices_trains_as_on_one(trained):
    """Each chunk's states sharded over min(K, 4) devices, K / 4 runs each (rounded up: padded); every run's metrics
    and final parameters of both stages as on one device: bit for bit with map (each device loops over its runs exactly
    as one device does), within VMAP_TOLERANCE with vmap."""
    (one_root, sharded_root), (one, sharded) = trained
    assert (one["device_count"], sharded["device_count"]) == (1, DEVICES)
    for name in GROUPS:
        axis, size = name.split(":")
        devices = min(int(size), DEVICES)
        assert {json.dumps(p) for p in one["placements"][name]} == {json.dumps({"devices": 1, "runs_per_device": [int(size)]})}
        assert {json.dumps(p) for p in sharded["placements"][name]} == {json.dumps({"devices": devices, "runs_per_device": [-(-int(size) // devices)]})}
        for workdir, expected in zip(workdirs(sharded_root, name), workdirs(one_root, name)):
            assert_trained_alike(workdir, expected, 0 if axis == "map" else VMAP_TOLERANCE)
            assert provenance.read_segments(workdir)[-1]["group"]["devices"] == devices


def test_a_stopped_sharded_group_resumes_to_the_same_models(synthetic, trained, tmp_path):
    """SIGTERM to a child training the padded vmap group on DEVICES once its first run saved a checkpoint: every run
    saves its state and stops; the same command then ends as the uninterrupted sharded group, bit for bit."""
    (source, _), ((_, sharded_root), _) = synthetic, trained
    name = GROUPS[1]
    child = train_groups(source, tmp_path, DEVICES, (name,))
    saved = os.path.join(workdirs(tmp_path, name)[0], "checkpoints", "compressed", "latest")
    deadline = time.time() + 120
    while child.poll() is None and time.time() < deadline and not (os.path.isdir(saved) and os.listdir(saved)):
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=300) != 0, "the group finished before it could be stopped"
    placements(train_groups(source, tmp_path, DEVICES, (name,)))
    for workdir, uninterrupted in zip(workdirs(tmp_path, name), workdirs(sharded_root, name)):
        assert [segment["status"] for segment in provenance.read_segments(workdir)] == ["stopped", "finished"]
        assert_trained_alike(workdir, uninterrupted, 0)
