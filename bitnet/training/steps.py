"""The training step of a stage: its model, loss, schedule and optimizer, the jitted step, prediction.

Every function takes a `bitnet.training.plan.Stage` (or what was built from one), never the config. One
step is the same for every mode: the stage's loss of the MLP's scores y = f(x; W),

    cross_entropy   loss = -mean_i log softmax(y_i)_{label_i}                     (the default)
    squared_hinge   loss = mean_{i,k} max(0, 1 - t_ik y_ik)^2,  t_ik = +1 if k = label_i else -1
                                                                                  (BinaryNet's)

(f uses tanh(W) in the compressed stage and ternarize(W) with the straight-through estimator in
the bitwise stage, bitnet.core.models), one optimizer update of the real-valued parameters W (each
kernel's update times 1/H with `layer_lr_scale = "glorot"`, or times 1024/fan_in for every layer
wider than 1024 but the input layer with `layer_lr_scale = "fan_in"`, the default), then, with `clip_weights = c > 0`,
every kernel clipped to [-c, c] (or [-c H, c H] with `clip_unit = "glorot"`), where
H = sqrt(1.5 / (fan_in + fan_out)) is BinaryNet's "Glorot" H of the layer. With batch norm the
model's running statistics ("batch_stats") are updated by the step and kept in the train state.
The step's dropout key is fold_in(stage key, global step), and its batch is a row of the epoch's
order: both pure functions of (seed, epoch, step), which is what makes resuming bit-exact.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import optax

from bitnet.core import encodings, models
from bitnet.input import augmentation

if TYPE_CHECKING:  # plan builds its Stage from bitnet.training.options, which names the registries here
    from bitnet.training.plan import Stage

TrainState = dict  # {"params", "opt_state", "step", "totals"} (+ "batch_stats"): a plain pytree, checkpointed as it is
VARIABLES = ("params", "batch_stats")  # the model's variables in a train state; batch_stats only with batch norm


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
        batch_norm=network.batch_norm,
    )


def make_schedule(stage: Stage, steps_per_epoch: int) -> optax.Schedule:
    """Linear warmup from 0 (if any), then over the remaining T steps (t counted from the warmup's end):

        constant     lr
        cosine       final + (lr - final) (1 + cos(pi t / T)) / 2         (final = final_learning_rate)
        exponential  lr (final / lr)^(t / T)                              (BinaryNet's decay, per step)
        step         lr decay_factor^floor(t / (decay_every_epochs * steps_per_epoch))
    """
    learning_rate = stage.hyper.learning_rate
    warmup = stage.warmup_epochs * steps_per_epoch
    decay_steps = max(stage.epochs * steps_per_epoch - warmup, 1)
    main = SCHEDULES[stage.schedule](stage.hyper, decay_steps, steps_per_epoch)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup), main], [warmup])


# name -> (hyperparameters, decay steps T, steps per epoch) -> the schedule after the warmup (make_schedule's table)
SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "cosine": lambda hyper, steps, per_epoch: optax.cosine_decay_schedule(
        hyper.learning_rate, steps, alpha=hyper.final_learning_rate / hyper.learning_rate),
    "constant": lambda hyper, steps, per_epoch: optax.constant_schedule(hyper.learning_rate),
    "exponential": lambda hyper, steps, per_epoch: optax.exponential_decay(
        hyper.learning_rate, steps, hyper.final_learning_rate / hyper.learning_rate),
    "step": lambda hyper, steps, per_epoch: optax.exponential_decay(
        hyper.learning_rate, hyper.decay_every_epochs * per_epoch, hyper.decay_factor, staircase=True),
}


def glorot_h(shape: tuple[int, ...]) -> float:
    """BinaryNet's H="Glorot" of a kernel [fan_in, fan_out]: sqrt(1.5 / (fan_in + fan_out)).

    (Half the bound sqrt(6 / (fan_in + fan_out)) of the glorot_uniform init bitnet's layers use.)
    """
    return math.sqrt(1.5 / (shape[0] + shape[1]))


def map_kernels(function: Callable[[jax.Array], jax.Array], tree: dict) -> dict:
    """`function` applied to every layer's kernel of a parameter-shaped tree; biases and batch-norm leaves as they are."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: function(leaf) if path[-1] == jax.tree_util.DictKey("kernel") else leaf, tree
    )


def glorot_lr_scale(name: str, shape: tuple[int, ...]) -> float:
    """BinaryNet's W_LR_scale="Glorot": 1/H."""
    return 1.0 / glorot_h(shape)


def fan_in_lr_scale(name: str, shape: tuple[int, ...]) -> float:
    """1024 / fan_in for every kernel wider than the paper's width but the input layer's (1 elsewhere): with
    Adam a coherent update moves a neuron's sum by about lr * fan_in, so without this a wider net takes larger steps
    in its activations (muP's rule for hidden and output layers). Nets up to 1024 wide keep their learning rates
    (tuned there; the evidence is for wider nets), so it is the default and width is a plain config change."""
    return 1.0 if name == "dense0" else fan_in_scale(shape[0])


REFERENCE_WIDTH = 1024  # layer_lr_scale="fan_in" scales the updates of layers wider than this (the paper's width)


def fan_in_scale(fan_in: int) -> float:
    """layer_lr_scale="fan_in"'s factor on the update of a kernel (but the input layer's) with this fan-in."""
    return min(1.0, REFERENCE_WIDTH / fan_in)


LAYER_LR_SCALES: dict[str, Callable[[str, tuple[int, ...]], float] | None] = {
    "none": None,  # every update as the optimizer makes it
    "glorot": glorot_lr_scale,
    "fan_in": fan_in_lr_scale,
}


def scale_kernel_updates(optimizer: optax.GradientTransformation, scale: Callable[[str, tuple[int, ...]], float]) -> optax.GradientTransformation:
    """`optimizer` with each kernel's update multiplied by scale(layer name, kernel shape); same state."""

    def scale_leaf(path, update):
        if path[-1] != jax.tree_util.DictKey("kernel"):
            return update
        return update * scale(path[-2].key, update.shape)

    def update(updates, state, params=None):
        updates, state = optimizer.update(updates, state, params)
        return jax.tree_util.tree_map_with_path(scale_leaf, updates), state

    return optax.GradientTransformation(optimizer.init, update)


# name -> (schedule, hyperparameters) -> the optimizer
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": lambda schedule, hyper: optax.adam(schedule),
    "adamw": lambda schedule, hyper: optax.adamw(schedule, weight_decay=hyper.weight_decay),
    "sgd": lambda schedule, hyper: optax.sgd(schedule, momentum=0.9, nesterov=True),
}


def make_optimizer(stage: Stage, schedule: optax.Schedule) -> optax.GradientTransformation:
    optimizer = OPTIMIZERS[stage.optimizer](schedule, stage.hyper)
    scale = LAYER_LR_SCALES[stage.layer_lr_scale]
    return optimizer if scale is None else scale_kernel_updates(optimizer, scale)


def make_projection(stage: Stage) -> Callable[[dict], dict] | None:
    """The clipping of the shadow weights after each update: kernels to [-c, c] (c = clip_weights, times
    each kernel's H with clip_unit = "glorot"); None when clip_weights is 0."""
    clip = stage.hyper.clip_weights
    if not clip:
        return None

    unit = CLIP_UNITS[stage.clip_unit]

    def bound(kernel: jax.Array) -> float:
        return clip * unit(kernel.shape)

    return lambda params: map_kernels(lambda kernel: jnp.clip(kernel, -bound(kernel), bound(kernel)), params)


# name -> kernel shape -> the unit clip_weights is counted in
CLIP_UNITS: dict[str, Callable[[tuple[int, ...]], float]] = {
    "absolute": lambda shape: 1.0,
    "glorot": glorot_h,
}


def make_augment(stage: Stage, encoding: encodings.Encoding, input_size: int) -> augmentation.Augment | None:
    return augmentation.make_random_shift(stage.max_shift, encoding, input_size)


def stage_key(stage: Stage) -> jax.Array:
    """The key of a stage's initial parameters and (folded with the step) of its dropout."""
    return jax.random.fold_in(jax.random.key(stage.seed), stage.salt)


def model_variables(tree: dict) -> dict:
    """The model's variables ({"params"} and, with batch norm, {"batch_stats"}) of a train state or of model.init."""
    return {name: tree[name] for name in VARIABLES if name in tree}


def abstract_variables(stage: Stage, input_size: int) -> dict:
    """Shapes and dtypes of a stage's model variables (for restoring them), without computing any."""
    example = jax.ShapeDtypeStruct((1, input_size), jnp.float32)
    return jax.eval_shape(lambda x: model_variables(make_model(stage).init(jax.random.key(0), x)), example)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-mean_i log softmax(y_i)_{label_i}."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def squared_hinge(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """BinaryNet's loss: mean over examples and classes of max(0, 1 - t y)^2, t = +1 for the label, -1 for the rest."""
    targets = 2.0 * jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype) - 1.0
    return jnp.mean(jnp.square(jnp.maximum(0.0, 1.0 - targets * logits)))


LOSSES = {"cross_entropy": cross_entropy, "squared_hinge": squared_hinge}


def make_loss(stage: Stage) -> Callable[[jax.Array, jax.Array], jax.Array]:
    return LOSSES[stage.loss]


def zero_totals() -> dict:
    return {"loss": jnp.zeros(()), "errors": jnp.zeros((), jnp.int32), "first_bad_step": jnp.full((), -1, jnp.int32)}


def init_state(
    model: models.MLP, optimizer: optax.GradientTransformation, key: jax.Array, example_input: jax.Array, variables: dict | None = None
) -> TrainState:
    """The state at step 0: the model `variables` (else fresh ones from `key`), the optimizer's state, zero totals."""
    if variables is None:
        variables = model_variables(model.init(key, example_input))
    return {**variables, "opt_state": optimizer.init(variables["params"]), "step": jnp.zeros((), jnp.int32), "totals": zero_totals()}


def step_function(
    model: models.MLP,
    optimizer: optax.GradientTransformation,
    augment: augmentation.Augment | None = None,
    loss: Callable[[jax.Array, jax.Array], jax.Array] = cross_entropy,
    project: Callable[[dict], dict] | None = None,
) -> Callable:
    """One step on the batch `indices` of the device-resident training set (augmented, if given); not jitted.

    `loss` is one of LOSSES, `project` (make_projection) clips the parameters after the update.
    The state carries the running epoch totals (loss, errors, first non-finite step) on device,
    so the host never waits on a step and a checkpoint taken mid-epoch keeps them.
    """

    def train_step(state: TrainState, inputs: jax.Array, labels: jax.Array, indices: jax.Array, key: jax.Array) -> TrainState:
        batch_inputs, batch_labels = inputs[indices], labels[indices]
        if augment is not None:
            batch_inputs = augment(batch_inputs, jax.random.fold_in(key, 1))

        def loss_fn(params):
            variables = {**model_variables(state), "params": params}
            updatable = [name for name in variables if name != "params"]  # batch_stats: batch norm's running statistics
            logits, updated = model.apply(variables, batch_inputs, train=True, rngs={"dropout": key}, mutable=updatable)
            return loss(logits, batch_labels), (logits, updated)

        (value, (logits, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        totals = state["totals"]
        step = state["step"] + 1
        return {
            **updated,
            "params": params if project is None else project(params),
            "opt_state": opt_state,
            "step": step,
            "totals": {
                "loss": totals["loss"] + value,
                "errors": totals["errors"] + jnp.sum(jnp.argmax(logits, -1) != batch_labels),
                "first_bad_step": jnp.where((totals["first_bad_step"] < 0) & ~jnp.isfinite(value), step, totals["first_bad_step"]),
            },
        }

    return train_step


def make_train_step(model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None, **options) -> Callable:
    """`step_function` jitted: (state, inputs, labels, indices, key) -> state; `options`: its loss and project."""
    return jax.jit(step_function(model, optimizer, augment, **options))


def make_train_chunk(model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None, **options) -> Callable:
    """`chunk_function` of `step_function`, jitted: (state, inputs, labels, order, start_row, num_steps, key) -> state;
    `options`: its loss and project."""
    return jax.jit(chunk_function(step_function(model, optimizer, augment, **options)))


def chunk_function(step: Callable) -> Callable:
    """A loop of `num_steps` steps: (state, inputs, labels, order, start_row, num_steps, key) -> state; not jitted.

    Step i trains on row `start_row + i` of the epoch's batch order [steps_per_epoch, batch_size],
    gathered on the device from the resident training set, with the dropout key
    fold_in(key, global step), the key single steps get from the loop too. The trip count is a
    traced argument (an XLA while loop), so chunks of every length share one compiled program.
    (bitnet.training.group maps it over the runs of a group.)
    """

    def train_chunk(
        state: TrainState, inputs: jax.Array, labels: jax.Array, order: jax.Array, start_row: jax.Array, num_steps: jax.Array, key: jax.Array
    ) -> TrainState:
        def body(i: jax.Array, state: TrainState) -> TrainState:
            indices = jax.lax.dynamic_index_in_dim(order, start_row + i, keepdims=False)
            return step(state, inputs, labels, indices, jax.random.fold_in(key, state["step"]))

        return jax.lax.fori_loop(0, num_steps, body, state)

    return train_chunk


def make_predict(model: models.MLP) -> Callable:
    """(variables, inputs) -> classes; batch norm uses its running statistics (variables["batch_stats"]), which a
    bitwise net folds into threshold neurons (bitnet.core.models)."""

    @jax.jit
    def predict(variables: dict, inputs: jax.Array) -> jax.Array:
        return jnp.argmax(model.apply(variables, inputs), axis=-1)

    return predict


def predictions(predict: Callable, variables: dict, inputs: jax.Array, batch_size: int) -> jax.Array:
    """Class predictions for all `inputs`, computed in batches of `batch_size`."""
    return jnp.concatenate([predict(variables, inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)])


def error_rate(predict: Callable, variables: dict, inputs: jax.Array, labels: jax.Array, batch_size: int) -> float:
    """Fraction of misclassified examples, evaluated in batches."""
    return int(jnp.sum(predictions(predict, variables, inputs, batch_size) != labels)) / len(labels)
