"""The stage plan, the train step and chunk on tiny random data, and the checkpoint interval: seconds, no files."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from bitnet.core import models
from bitnet.input import data
from bitnet.training import loop, plan, steps
from configs import default
from tests.helpers import BATCH, NUM_TRAIN, assert_same, step_parts, step_stage

def test_salts_are_frozen_and_equal_the_first_mode_order():
    assert plan.SALTS == {"float": 0, "compressed": 1, "bitwise": 2}
    assert plan.SALTS == {mode: models.MODES.index(mode) for mode in models.MODES}  # as workdirs were first written


def test_plan_of_each_run_kind():
    config = default.get_config()
    compressed, bitwise = plan.plan(config)
    assert (compressed.name, compressed.start, compressed.hyper.learning_rate) == ("compressed", plan.RANDOM, 1e-3)
    assert (bitwise.name, bitwise.start, bitwise.hyper.learning_rate, bitwise.field) == ("bitwise", plan.PREVIOUS, 3e-4, "stage2")
    assert compressed.hyper.sparsity == 0.0 and plan.binarized_stage((compressed, bitwise)) is bitwise

    config.stage2.init = "random"
    config.stage2.stage1_workdir = "elsewhere"
    compressed, bitwise = plan.plan(config)
    assert (compressed.start, plan.stage_workdir(compressed, "here")) == (plan.FINISHED, "elsewhere")
    assert (bitwise.start, plan.stage_workdir(bitwise, "here")) == (plan.RANDOM, "here")

    config.run_kind = "float"
    (only,) = plan.plan(config)
    assert (only.name, only.network.mode, only.salt, only.start) == ("float", "float", 0, plan.RANDOM)
    assert plan.binarized_stage((only,)) is None


@pytest.mark.parametrize("mode", ["compressed", "bitwise"])
def test_a_chunk_computes_what_single_steps_compute(mode):
    """One epoch as single jitted steps, as one chunk, and as chunks of 5 + 7: bit for bit the same."""
    stage = step_stage(mode, hyper=dataclasses.replace(step_stage(mode).hyper, dropout_rate=0.2))
    model, optimizer, key, state, inputs, labels, spe = step_parts(stage)
    order = data.batch_indices(stage.seed, 1, NUM_TRAIN, BATCH)
    single = steps.make_train_step(model, optimizer)
    one_by_one = state
    for row in range(spe):
        one_by_one = single(one_by_one, inputs, labels, jnp.asarray(order[row]), jax.random.fold_in(key, row))
    chunk = steps.make_train_chunk(model, optimizer)
    whole = chunk(state, inputs, labels, jnp.asarray(order), 0, spe, key)
    split = chunk(chunk(state, inputs, labels, jnp.asarray(order), 0, 5, key), inputs, labels, jnp.asarray(order), 5, spe - 5, key)
    assert int(whole["step"]) == spe
    assert_same(whole, one_by_one)
    assert_same(split, whole)
    assert chunk._cache_size() == 1  # chunk lengths are traced: one compiled program


def test_checkpoints_are_due_every_n_epochs_or_t_seconds():
    every_two = step_stage(checkpoint_every_epochs=2)
    assert [loop._checkpoint_due(every_two, epoch, 0.0) for epoch in (1, 2, 3, 4)] == [False, True, False, True]
    by_time = step_stage(checkpoint_every_epochs=100, checkpoint_every_seconds=600.0)
    assert not loop._checkpoint_due(by_time, 1, 599.0) and loop._checkpoint_due(by_time, 1, 600.0)
    assert not loop._checkpoint_due(step_stage(checkpoint_every_epochs=100), 1, 1e9)  # 0 seconds: by epochs only
