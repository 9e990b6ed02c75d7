"""Runs trained as a group (bitnet.training.group) against the same runs trained alone, on tiny random data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.input import data
from bitnet.training import group, steps
from tests.helpers import BATCH, NUM_TRAIN, assert_same, step_parts, step_stage


def runs(mode, **varied):
    """Three runs of one tiny stage with seeds 0, 1, 2 and the `varied` hyperparameters (a value per run; slice to use fewer)."""
    base = step_stage(mode, hyper=dataclasses.replace(step_stage(mode).hyper, dropout_rate=0.2, input_dropout_rate=0.1))
    return [
        dataclasses.replace(base, seed=seed, hyper=dataclasses.replace(base.hyper, **{field: values[seed] for field, values in varied.items()}))
        for seed in range(3)
    ]


def alone(stage, counts=(1, 10)):
    """The state of `stage` trained alone (the single-run chunk) after each count of steps of epoch 1."""
    model, optimizer, key, state, inputs, labels, _ = step_parts(stage)
    order = jnp.asarray(data.batch_indices(stage.seed, 1, NUM_TRAIN, BATCH))
    chunk = steps.make_train_chunk(model, optimizer, loss=steps.make_loss(stage), project=steps.make_projection(stage))
    return [chunk(state, inputs, labels, order, 0, count, key) for count in counts]


ALL = None


def grouped(stages, axis, calls=((1, ALL), (10, ALL))):
    """The same steps of the `stages` trained as one group: per call (count of steps, the runs active), the per-run
    states (one compiled chunk for all calls)."""
    parts = [step_parts(stage) for stage in stages]
    inputs, labels, spe = parts[0][4:]
    chunk = group.make_group_chunk(stages, spe, axis=axis)
    states = group.stack([part[3] for part in parts])
    orders = jnp.stack([jnp.asarray(data.batch_indices(stage.seed, 1, NUM_TRAIN, BATCH)) for stage in stages])
    keys = jnp.stack([steps.stage_key(stage) for stage in stages])
    values = group.per_run_values(stages, inputs.shape[1])
    results = []
    for count, active in calls:
        active = jnp.ones(len(stages), bool) if active is ALL else jnp.asarray(active)
        results.append(group.unstack(chunk(states, values, active, inputs, labels, orders, 0, count, keys)))
    return results


def assert_close(a, b, tolerance):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tolerance, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # full tier: ./launch.sh test --full
def test_runs_of_a_group_train_as_alone():
    """Per run its seed (data order, dropout keys) and traced numbers: learning rate, dropout rate and lambda > 0
    (beta per run and per layer). After 1 and 10 steps, with either run axis, as alone within 1e-6 (bitnet.training.train.train_runs's
    tests: bit for bit on the CPU for runs differing in seed only)."""
    stages = runs("bitwise", learning_rate=(1e-3, 3e-3, None), dropout_rate=(0.0, 0.5, None), sparsity=(0.1, 0.29, None))[:2]
    assert group.varying(stages) == ("learning_rate", "dropout_rate", "sparsity")
    expected = [alone(stage) for stage in stages]
    for axis in group.AXES:
        *counted, partly = grouped(stages, axis, ((1, ALL), (10, ALL), (3, [True, False])))
        for count, states in enumerate(counted):
            for run, state in enumerate(states):
                assert int(state["step"]) == (1, 10)[count]
                assert_close(state["params"], expected[run][count]["params"], 1e-6)
        assert [int(state["step"]) for state in partly] == [3, 0]
        assert_same(partly[1], step_parts(stages[1])[3])  # an inactive run keeps its state


@pytest.mark.slow  # full tier: ./launch.sh test --full (end to end, ~20-40 s each on 2 cores)
def test_the_training_options_train_in_groups():
    """Batch norm (its running statistics per run), the squared hinge loss and clipped weights, learning rate per run."""
    network = dataclasses.replace(step_stage().network, batch_norm=True)
    stages = [
        dataclasses.replace(stage, network=network, loss="squared_hinge", hyper=dataclasses.replace(stage.hyper, clip_weights=0.5))
        for stage in runs("bitwise", learning_rate=(1e-3, 1e-2, None))[:2]
    ]
    expected = [alone(stage, counts=(10,))[0] for stage in stages]
    (states,) = grouped(stages, "vmap", ((10, ALL),))
    for state, alone_state in zip(states, expected):
        assert_close({key: state[key] for key in ("params", "batch_stats")}, {key: alone_state[key] for key in ("params", "batch_stats")}, 1e-6)


def test_an_exponential_schedule_keeps_its_learning_rate_a_constant():
    """optax's exponential decay tests final / learning rate in Python: such runs group by learning rate."""
    first, second = runs("bitwise", learning_rate=(1e-3, 3e-3, 1e-2))[:2]
    assert group.shape_of(first) == group.shape_of(second)
    first, second = (dataclasses.replace(stage, schedule="exponential") for stage in (first, second))
    assert group.shape_of(first) != group.shape_of(second)


def test_per_layer_counts_are_the_hosts():
    """k per layer as a run alone counts it (float64), not float32 lambda * size (0.29 * 400 -> 116, not 115)."""
    stage = dataclasses.replace(runs("bitwise")[0], network=dataclasses.replace(step_stage().network, hidden_sizes=(20,)))
    stage = dataclasses.replace(stage, hyper=dataclasses.replace(stage.hyper, sparsity=0.29))
    assert group.layer_counts(stage, 20) == (115, 57)  # 20 x 20 and 20 x 10 kernels
    assert int(jnp.floor(jnp.float32(0.29) * 400)) == 116


def test_incompatible_stages_are_refused():
    stages = runs("bitwise")
    with pytest.raises(ValueError, match="batch_size"):
        group.check_compatible([stages[0], dataclasses.replace(stages[1], batch_size=4)])
