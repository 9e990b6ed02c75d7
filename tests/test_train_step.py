"""Fast unit tests of the training pieces: the learning-rate schedule, the optimizers and one real train step.

In the spirit of the flax examples' train_test.py: tiny random data, in-process, a few seconds, so a
broken step fails here and not only in the end-to-end runs of test_pipeline / test_reliability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.training import plan
from bitnet.training.steps import cross_entropy, init_state, make_model, make_optimizer, make_schedule, make_train_step
from configs import default

STEPS_PER_EPOCH = 10


def settings(mode: str = "float", **fields) -> plan.Stage:
    """The `mode` stage of configs/default.py's plan with `fields` replaced in its settings (16 hidden units, 4 classes)."""
    config = default.get_config()
    config.model.hidden_sizes = (16,)
    config.model.num_classes = 4
    config.run_kind = "float" if mode == "float" else "bitwise"
    config.stage1.update(fields)
    config.stage2.update(fields)
    return next(stage for stage in plan.plan(config) if stage.network.mode == mode)


# ---------------------------------------------------------------------------------------------
# make_schedule


def test_constant_schedule_without_warmup():
    schedule = make_schedule(settings(schedule="constant", learning_rate=0.01, warmup_epochs=0, epochs=3), STEPS_PER_EPOCH)
    assert [float(schedule(step)) for step in (0, 15, 29)] == pytest.approx([0.01] * 3)


def test_cosine_schedule_decays_to_zero_over_the_stage():
    schedule = make_schedule(settings(schedule="cosine", learning_rate=0.01, warmup_epochs=0, epochs=4), STEPS_PER_EPOCH)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(20)) == pytest.approx(0.005)  # half way: cos(pi / 2)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)
    values = [float(schedule(step)) for step in range(41)]
    assert values == sorted(values, reverse=True)


def test_warmup_rises_linearly_then_the_main_schedule_takes_the_rest_of_the_stage():
    schedule = make_schedule(settings(schedule="cosine", learning_rate=0.01, warmup_epochs=1, epochs=3), STEPS_PER_EPOCH)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.005)
    assert float(schedule(10)) == pytest.approx(0.01)
    assert float(schedule(20)) == pytest.approx(0.005)  # cosine over the 20 steps after the warmup
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# make_optimizer: one update of a known gradient


def one_update(optimizer_name: str, gradient: float, param: float = 2.0, **fields) -> float:
    stage = settings(optimizer=optimizer_name, learning_rate=0.1, schedule="constant", warmup_epochs=0, **fields)
    optimizer = make_optimizer(stage, make_schedule(stage, STEPS_PER_EPOCH))
    params = {"w": jnp.array([param])}
    updates, _ = optimizer.update({"w": jnp.array([gradient])}, optimizer.init(params), params)
    return float(updates["w"][0])


def test_adam_first_step_is_the_learning_rate_against_the_gradient():
    assert one_update("adam", 3.0) == pytest.approx(-0.1, rel=1e-4)  # m / sqrt(v) = sign(g) on step 1
    assert one_update("adam", 0.0) == 0.0


def test_adamw_decays_the_weights_by_weight_decay():
    assert one_update("adamw", 0.0, param=2.0, weight_decay=0.5) == pytest.approx(-0.1 * 0.5 * 2.0)
    assert one_update("adamw", 0.0, param=2.0, weight_decay=0.0) == 0.0


def test_sgd_is_nesterov_with_momentum_0_9():
    assert one_update("sgd", 1.0) == pytest.approx(-0.1 * 1.9)  # g + 0.9 * (momentum trace = g)


# ---------------------------------------------------------------------------------------------
# make_train_step: real steps of a small MLP on tiny random data


@pytest.fixture(scope="module")
def problem():
    """Random +-1 inputs: 32 examples of 64 features, 4 classes; stages without dropout."""
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(np.where(rng.random((32, 64)) < 0.5, -1.0, 1.0), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, 32), jnp.int32)
    return inputs, labels


def start(problem, mode):
    inputs, _ = problem
    stage = settings(mode, optimizer="adam", learning_rate=0.01, schedule="constant", warmup_epochs=0, dropout_rate=0.0, input_dropout_rate=0.0)
    model = make_model(stage)
    optimizer = make_optimizer(stage, make_schedule(stage, STEPS_PER_EPOCH))
    state = init_state(model, optimizer, jax.random.key(0), inputs[:1])
    return model, make_train_step(model, optimizer), state


@pytest.mark.parametrize("mode", ["float", "bitwise"])
def test_a_step_counts_loss_and_errors_of_the_batch_and_changes_the_params(problem, mode):
    inputs, labels = problem
    model, train_step, state = start(problem, mode)
    indices = jnp.arange(16)
    logits = model.apply({"params": state["params"]}, inputs[indices], train=True, rngs={"dropout": jax.random.key(1)})
    expected_loss = float(cross_entropy(logits, labels[indices]))
    expected_errors = int(jnp.sum(jnp.argmax(logits, -1) != labels[indices]))

    after = train_step(state, inputs, labels, indices, jax.random.key(1))
    assert int(after["step"]) == 1
    assert float(after["totals"]["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    assert int(after["totals"]["errors"]) == expected_errors
    assert int(after["totals"]["first_bad_step"]) == -1
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), after["params"], state["params"])
    assert all(jax.tree_util.tree_leaves(changed)), changed

    again = train_step(after, inputs, labels, indices, jax.random.key(2))  # the totals run over the epoch
    assert int(again["step"]) == 2
    assert float(again["totals"]["loss"]) > float(after["totals"]["loss"])


def test_training_steps_lower_the_loss(problem):
    inputs, labels = problem
    model, train_step, state = start(problem, "float")
    indices = jnp.arange(32)

    def loss(params):
        return float(cross_entropy(model.apply({"params": params}, inputs), labels))

    before = loss(state["params"])
    for step in range(30):
        state = train_step(state, inputs, labels, indices, jax.random.key(step))
    assert loss(state["params"]) < 0.5 * before


def test_the_first_non_finite_step_is_recorded(problem):
    inputs, labels = problem
    _, train_step, state = start(problem, "float")
    state = train_step(state, inputs, labels, jnp.arange(16), jax.random.key(0))
    poisoned = {**state, "params": jax.tree_util.tree_map(lambda leaf: leaf * jnp.nan, state["params"])}
    for step in range(2):
        poisoned = train_step(poisoned, inputs, labels, jnp.arange(16), jax.random.key(step))
    assert int(poisoned["totals"]["first_bad_step"]) == 2  # step 2 was the first bad one, step 3 does not move it
    assert not np.isfinite(float(poisoned["totals"]["loss"]))
