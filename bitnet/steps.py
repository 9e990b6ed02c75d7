"""The training step of a stage: its model, schedule and optimizer, the jitted step, prediction.

Every function takes a `bitnet.plan.Stage` (or what was built from one), never the config. One
step is the same for every mode: softmax cross-entropy of the MLP's logits,

    loss = -mean_i log softmax(f(x_i; W))_{y_i}

(f uses tanh(W) in the compressed stage and ternarize(W) with the straight-through estimator in
the bitwise stage, bitnet.models), and one optimizer update of the real-valued parameters W.
The step's dropout key is fold_in(stage key, global step), and its batch is a row of the epoch's
order: both pure functions of (seed, epoch, step), which is what makes resuming bit-exact.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from bitnet import augmentation, encodings, models
from bitnet.plan import Stage

TrainState = dict  # {"params", "opt_state", "step", "totals"}: a plain pytree, checkpointed as it is


def make_model(stage: Stage) -> models.MLP:
    network, hyper = stage.network, stage.hyper
    return models.MLP(
        hidden_sizes=network.hidden_sizes,
        num_classes=network.num_classes,
        mode=network.mode,
        sparsity=hyper.sparsity,
        surrogate=network.surrogate,
        activation=network.activation,
        dropout_rate=hyper.dropout_rate,
        input_dropout_rate=hyper.input_dropout_rate,
    )


def make_schedule(stage: Stage, steps_per_epoch: int) -> optax.Schedule:
    """Linear warmup (if any), then constant or cosine decay to 0 over the stage."""
    learning_rate = stage.hyper.learning_rate
    warmup = stage.warmup_epochs * steps_per_epoch
    decay_steps = max(stage.epochs * steps_per_epoch - warmup, 1)
    if stage.schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    else:
        main = optax.cosine_decay_schedule(learning_rate, decay_steps)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup), main], [warmup])


def make_optimizer(stage: Stage, schedule: optax.Schedule) -> optax.GradientTransformation:
    if stage.optimizer == "adam":
        return optax.adam(schedule)
    if stage.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=stage.hyper.weight_decay)
    return optax.sgd(schedule, momentum=0.9, nesterov=True)


def make_augment(stage: Stage, encoding: encodings.Encoding, input_size: int) -> augmentation.Augment | None:
    return augmentation.make_random_shift(stage.max_shift, encoding, input_size)


def stage_key(stage: Stage) -> jax.Array:
    """The key of a stage's initial parameters and (folded with the step) of its dropout."""
    return jax.random.fold_in(jax.random.key(stage.seed), stage.salt)


def abstract_params(stage: Stage, input_size: int) -> dict:
    """Shapes and dtypes of a stage's parameters (for restoring them), without computing any."""
    example = jax.ShapeDtypeStruct((1, input_size), jnp.float32)
    return jax.eval_shape(lambda x: make_model(stage).init(jax.random.key(0), x)["params"], example)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def zero_totals() -> dict:
    return {"loss": jnp.zeros(()), "errors": jnp.zeros((), jnp.int32), "first_bad_step": jnp.full((), -1, jnp.int32)}


def init_state(
    model: models.MLP, optimizer: optax.GradientTransformation, key: jax.Array, example_input: jax.Array, params: dict | None = None
) -> TrainState:
    """The state at step 0: `params` (else fresh ones from `key`), the optimizer's state, zero totals."""
    if params is None:
        params = model.init(key, example_input)["params"]
    return {"params": params, "opt_state": optimizer.init(params), "step": jnp.zeros((), jnp.int32), "totals": zero_totals()}


def step_function(
    model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None
) -> Callable:
    """One step on the batch `indices` of the device-resident training set (augmented, if given); not jitted.

    The state carries the running epoch totals (loss, errors, first non-finite step) on device,
    so the host never waits on a step and a checkpoint taken mid-epoch keeps them.
    """

    def train_step(state: TrainState, inputs: jax.Array, labels: jax.Array, indices: jax.Array, key: jax.Array) -> TrainState:
        batch_inputs, batch_labels = inputs[indices], labels[indices]
        if augment is not None:
            batch_inputs = augment(batch_inputs, jax.random.fold_in(key, 1))

        def loss_fn(params):
            logits = model.apply({"params": params}, batch_inputs, train=True, rngs={"dropout": key})
            return cross_entropy(logits, batch_labels), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        totals = state["totals"]
        step = state["step"] + 1
        return {
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "step": step,
            "totals": {
                "loss": totals["loss"] + loss,
                "errors": totals["errors"] + jnp.sum(jnp.argmax(logits, -1) != batch_labels),
                "first_bad_step": jnp.where((totals["first_bad_step"] < 0) & ~jnp.isfinite(loss), step, totals["first_bad_step"]),
            },
        }

    return train_step


def make_train_step(
    model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None
) -> Callable:
    """`step_function` jitted: (state, inputs, labels, indices, key) -> state."""
    return jax.jit(step_function(model, optimizer, augment))


def make_train_chunk(
    model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None
) -> Callable:
    """A jitted loop of `num_steps` steps: (state, inputs, labels, order, start_row, num_steps, key) -> state.

    Step i trains on row `start_row + i` of the epoch's batch order [steps_per_epoch, batch_size],
    gathered on the device from the resident training set, with the dropout key
    fold_in(key, global step), the key single steps get from the loop too. The trip count is a
    traced argument (an XLA while loop), so chunks of every length share one compiled program.
    """
    step = step_function(model, optimizer, augment)

    @jax.jit
    def train_chunk(
        state: TrainState, inputs: jax.Array, labels: jax.Array, order: jax.Array, start_row: jax.Array, num_steps: jax.Array, key: jax.Array
    ) -> TrainState:
        def body(i: jax.Array, state: TrainState) -> TrainState:
            indices = jax.lax.dynamic_index_in_dim(order, start_row + i, keepdims=False)
            return step(state, inputs, labels, indices, jax.random.fold_in(key, state["step"]))

        return jax.lax.fori_loop(0, num_steps, body, state)

    return train_chunk


def make_predict(model: models.MLP) -> Callable:
    @jax.jit
    def predict(params: dict, inputs: jax.Array) -> jax.Array:
        return jnp.argmax(model.apply({"params": params}, inputs), axis=-1)

    return predict


def predictions(predict: Callable, params: dict, inputs: jax.Array, batch_size: int) -> jax.Array:
    """Class predictions for all `inputs`, computed in batches of `batch_size`."""
    return jnp.concatenate([predict(params, inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)])


def error_rate(predict: Callable, params: dict, inputs: jax.Array, labels: jax.Array, batch_size: int) -> float:
    """Fraction of misclassified examples, evaluated in batches."""
    return int(jnp.sum(predictions(predict, params, inputs, batch_size) != labels)) / len(labels)
