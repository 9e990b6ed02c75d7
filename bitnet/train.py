"""Training: `train_and_evaluate(config, workdir)` runs the stages of a run kind, resumably.

    float   : one stage, mode "float" (config.stage1 settings)
    bitwise : stage 1 mode "compressed" (config.stage1), then stage 2 mode "bitwise" (config.stage2),
              initialised from stage 1's best-by-validation parameters (or at random, for the ablation)

Each epoch writes a metrics line (WORKDIR/metrics.jsonl and TensorBoard events under
WORKDIR/tensorboard) and the stage's latest/best orbax checkpoints. Rerunning the same command
resumes from the latest checkpoint; a finished stage is not redone. Parameters, dropout keys and
data order all derive from config.seed, so a resumed run follows the uninterrupted one.
The final binarized model (best stage-2 parameters, packed) is stored under checkpoints/binarized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from bitnet import augmentation, checkpoints, configuration, data, encodings, export, inference, models, preemption, provenance, summary, workdir_lock

Metrics = dict[str, Any]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Encoded inputs (float32, on device) and labels of the train and validation splits."""

    train_inputs: jax.Array
    train_labels: jax.Array
    validation_inputs: jax.Array
    validation_labels: jax.Array


def load_dataset(config: ml_collections.ConfigDict) -> tuple[Dataset, encodings.Encoding]:
    """Load the train/validation splits and encode them once with the configured encoding."""
    encoding = configuration.encoding_of(config)
    splits = data.load_splits(**configuration.data_kwargs(config))
    dataset = Dataset(
        train_inputs=jnp.asarray(encoding(splits.train_images)),
        train_labels=jnp.asarray(splits.train_labels),
        validation_inputs=jnp.asarray(encoding(splits.validation_images)),
        validation_labels=jnp.asarray(splits.validation_labels),
    )
    return dataset, encoding


def make_model(config: ml_collections.ConfigDict, mode: str, train_settings: ml_collections.ConfigDict) -> models.MLP:
    return models.MLP(
        hidden_sizes=tuple(config.model.hidden_sizes),
        num_classes=config.model.num_classes,
        mode=mode,
        sparsity=config.stage2.sparsity if mode == "bitwise" else 0.0,
        surrogate=config.stage2.surrogate,
        activation=config.model.activation,
        dropout_rate=train_settings.dropout_rate,
        input_dropout_rate=train_settings.input_dropout_rate,
    )


def make_schedule(settings: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Linear warmup (if any), then constant or cosine decay to 0 over the stage."""
    warmup = settings.warmup_epochs * steps_per_epoch
    decay_steps = max(settings.epochs * steps_per_epoch - warmup, 1)
    if settings.schedule == "constant":
        main = optax.constant_schedule(settings.learning_rate)
    else:
        main = optax.cosine_decay_schedule(settings.learning_rate, decay_steps)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, settings.learning_rate, warmup), main], [warmup])


def make_optimizer(settings: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    if settings.optimizer == "adam":
        return optax.adam(schedule)
    if settings.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=settings.weight_decay)
    return optax.sgd(schedule, momentum=0.9, nesterov=True)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(
    model: models.MLP, optimizer: optax.GradientTransformation, augment: augmentation.Augment | None = None
) -> Callable:
    """A jitted step on the batch `indices` of the device-resident training set (augmented, if given).

    The state carries the running epoch totals (loss, errors, first non-finite step) on device,
    so the host never waits on a step and a checkpoint taken mid-epoch keeps them.
    """

    @jax.jit
    def train_step(state: dict, inputs: jax.Array, labels: jax.Array, indices: jax.Array, key: jax.Array) -> dict:
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


def zero_totals() -> dict:
    return {"loss": jnp.zeros(()), "errors": jnp.zeros((), jnp.int32), "first_bad_step": jnp.full((), -1, jnp.int32)}


def make_predict(model: models.MLP) -> Callable:
    @jax.jit
    def predict(params: dict, inputs: jax.Array) -> jax.Array:
        return jnp.argmax(model.apply({"params": params}, inputs), axis=-1)

    return predict


def error_rate(predict: Callable, params: dict, inputs: jax.Array, labels: jax.Array, batch_size: int) -> float:
    """Fraction of misclassified examples, evaluated in batches."""
    wrong = 0
    for start in range(0, len(labels), batch_size):
        predictions = predict(params, inputs[start : start + batch_size])
        wrong += int(jnp.sum(predictions != labels[start : start + batch_size]))
    return wrong / len(labels)


class MetricWriter:
    """One JSON line per epoch in WORKDIR/metrics.jsonl, mirrored to TensorBoard event files."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        self._tensorboard = None

    def drop_after(self, stage: str, epoch: int) -> None:
        """Forget lines of `stage` past `epoch` (written before a crash, not checkpointed), and any line cut short."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as file:
            lines = [line for line in file if line.strip()]
        kept = [
            line for line in lines
            if _whole_line(line) and not (json.loads(line)["stage"] == stage and json.loads(line)["epoch"] > epoch)
        ]
        if len(kept) != len(lines):
            with open(self.path + ".tmp", "w") as file:
                file.writelines(kept)
            os.replace(self.path + ".tmp", self.path)  # a kill while rewriting loses no line

    def write(self, metrics: Metrics) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(metrics) + "\n")
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter  # imported late: only writers need it

            self._tensorboard = SummaryWriter(self.tensorboard_dir)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self._tensorboard.add_scalar(f"{metrics['stage']}/{key}", value, metrics["step"])
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def _whole_line(line: str) -> bool:
    """Whether a metrics line was written completely (a killed run may leave half a line)."""
    try:
        return line.endswith("\n") and isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def stage_plan(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """(mode, settings) of each stage of the run kind, in order."""
    if config.run_kind == "float":
        return [("float", config.stage1)]
    return [("compressed", config.stage1), ("bitwise", config.stage2)]


def setup_stage(
    config: ml_collections.ConfigDict,
    mode: str,
    settings: ml_collections.ConfigDict,
    steps_per_epoch: int,
    example_input: jax.Array,
    init_params: dict | None = None,
) -> tuple[models.MLP, optax.Schedule, optax.GradientTransformation, jax.Array, dict]:
    """Model, schedule, optimizer, the stage's seed key and its initial train state {params, opt_state, step}."""
    model = make_model(config, mode, settings)
    schedule = make_schedule(settings, steps_per_epoch)
    optimizer = make_optimizer(settings, schedule)
    seed_key = jax.random.fold_in(jax.random.key(config.seed), models.MODES.index(mode))
    params = init_params if init_params is not None else model.init(seed_key, example_input)["params"]
    state = {"params": params, "opt_state": optimizer.init(params), "step": jnp.zeros((), jnp.int32), "totals": zero_totals()}
    return model, schedule, optimizer, seed_key, state


def run_stage(
    config: ml_collections.ConfigDict,
    workdir: str,
    mode: str,
    settings: ml_collections.ConfigDict,
    dataset: Dataset,
    init_params: dict | None,
    writer: MetricWriter,
) -> dict:
    """Train one stage to the end (resuming if a checkpoint exists); return its best parameters."""
    num_train = int(dataset.train_labels.shape[0])
    steps_per_epoch = data.batch_indices(config.seed, 0, num_train, settings.batch_size).shape[0]
    model, schedule, optimizer, seed_key, state = setup_stage(
        config, mode, settings, steps_per_epoch, dataset.train_inputs[:1], init_params
    )

    best_error = math.inf
    latest = checkpoints.restore_stage(workdir, mode, "latest", state)
    if latest is not None:
        state, meta = latest
        best_error = float(meta["best_val_error"])
        logging.info("%s: resumed at step %d from %s", mode, int(state["step"]), checkpoints.stage_dir(workdir, mode, "latest"))
    first_step = int(state["step"])
    writer.drop_after(mode, first_step // steps_per_epoch)

    augment = augmentation.make_random_shift(settings.max_shift, configuration.encoding_of(config), dataset.train_inputs.shape[1])
    train_step = make_train_step(model, optimizer, augment)
    predict = make_predict(model)
    started = time.time()
    for epoch in range(first_step // steps_per_epoch + 1, settings.epochs + 1):
        epoch_start = time.time()
        order = jnp.asarray(data.batch_indices(config.seed, epoch, num_train, settings.batch_size))
        for row in range(int(state["step"]) - (epoch - 1) * steps_per_epoch, steps_per_epoch):
            key = jax.random.fold_in(seed_key, (epoch - 1) * steps_per_epoch + row)
            state = train_step(state, dataset.train_inputs, dataset.train_labels, order[row], key)
            if preemption.requested() and row < steps_per_epoch - 1:  # an epoch's last step: finish the epoch first
                _check_finite(workdir, mode, epoch, jax.device_get(state["totals"]))  # never save a diverged state
                meta = {"epoch": epoch - 1, "step": int(state["step"]), "best_val_error": best_error}
                checkpoints.save_stage(workdir, mode, state, meta, math.inf, is_best=False)
                raise _preempted(workdir, mode, int(state["step"]))
        totals = jax.device_get(state["totals"])
        _check_finite(workdir, mode, epoch, totals)
        seconds = time.time() - epoch_start
        val_error = error_rate(
            predict, state["params"], dataset.validation_inputs, dataset.validation_labels, config.eval_batch_size
        )
        is_best = val_error < best_error
        best_error = min(best_error, val_error)
        step = int(state["step"])
        metrics = {
            "stage": mode,
            "epoch": epoch,
            "step": step,
            "train_loss": float(totals["loss"]) / steps_per_epoch,
            "train_error": int(totals["errors"]) / (steps_per_epoch * settings.batch_size),
            "val_error": val_error,
            "best_val_error": best_error,
            "learning_rate": float(schedule(step - 1)),
            "examples_per_sec": (step - max(first_step, (epoch - 1) * steps_per_epoch)) * settings.batch_size / seconds,
            "epoch_seconds": seconds,
        }
        writer.write(metrics)
        state = {**state, "totals": zero_totals()}
        meta = {"epoch": epoch, "step": step, "val_error": val_error, "best_val_error": best_error}
        checkpoints.save_stage(workdir, mode, state, meta, val_error, is_best)
        remaining = (time.time() - started) / (step - first_step) * (settings.epochs * steps_per_epoch - step)
        logging.info(
            "%s epoch %d/%d  loss %.4f  train err %.2f%%  val err %.2f%% (best %.2f%%)  %.0f ex/s  ETA %s",
            mode, epoch, settings.epochs, metrics["train_loss"], 100 * metrics["train_error"],
            100 * val_error, 100 * best_error, metrics["examples_per_sec"], _format_duration(remaining),
        )
        if preemption.requested():
            raise _preempted(workdir, mode, step)
    return load_best_params(config, workdir, mode, dataset.train_inputs[:1])


def _check_finite(workdir: str, mode: str, epoch: int, totals: dict) -> None:
    """TrainingError naming the first step whose loss was not finite, if any (nothing was saved since)."""
    if not math.isfinite(float(totals["loss"])):
        raise TrainingError(
            f"{mode}: the loss became non-finite at step {int(totals['first_bad_step'])} (epoch {epoch}); the "
            f"last good checkpoint is kept in {checkpoints.stage_dir(workdir, mode, 'latest')}; "
            "lower the learning rate and rerun"
        )


def _preempted(workdir: str, mode: str, step: int) -> preemption.Preempted:
    return preemption.Preempted(
        f"stopped by {preemption.requested()} in stage {mode} at step {step}; "
        f"checkpoint saved in {checkpoints.stage_dir(workdir, mode, 'latest')}; rerun the same command to resume"
    )


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def binarize(config: ml_collections.ConfigDict, params: dict, encoding: encodings.Encoding) -> tuple[dict, dict]:
    """The bitnet-packed-v1 arrays and meta of the bitwise net given by stage-2 parameters."""
    packed = inference.pack_params(params, config.stage2.sparsity, encoding.bit_values)
    meta = export.model_meta(packed, encoding, {"sparsity": config.stage2.sparsity, "seed": config.seed})
    return export.model_arrays(packed), meta


@workdir_lock.holding_workdir  # one run at a time per workdir
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict:
    """Train every stage of `config` in `workdir` (resuming), store checkpoints; return final params."""
    configuration.check(config)
    configuration.check_workdir(config, workdir, overwrite)  # refuse before any work; write once the data fits
    shared_stage1 = configuration.stage1_workdir(config, workdir)
    dataset, encoding = load_dataset(config)
    num_train = int(dataset.train_labels.shape[0])
    for name, (_, settings) in zip(("stage1", "stage2"), stage_plan(config)):
        if settings.batch_size > num_train:
            raise configuration.ConfigError(
                f"config.{name}.batch_size={settings.batch_size} is larger than the {num_train} training examples; "
                "lower it or use more data"
            )
        if settings.max_shift:
            try:
                augmentation.image_side(int(dataset.train_inputs.shape[1]), encoding.planes)
            except ValueError as error:
                raise configuration.ConfigError(f"config.{name}.max_shift={settings.max_shift}: {error}") from None
    os.makedirs(workdir, exist_ok=True)
    configuration.write_or_check(config, workdir, overwrite)
    logging.info(
        "data: %d train, %d validation examples, encoding %s (%d inputs)",
        dataset.train_labels.shape[0], dataset.validation_labels.shape[0], encoding.name, dataset.train_inputs.shape[1],
    )
    _log_summary(config, dataset, encoding)
    params = None
    with provenance.segment(workdir), preemption.stop_on_sigterm(), contextlib.closing(MetricWriter(workdir)) as writer:
        for mode, settings in stage_plan(config):
            if mode == "bitwise" and config.stage2.init == "random":
                params = None  # the ablation without weight compression
            if mode == "compressed" and shared_stage1 != workdir:
                params = load_best_params(config, shared_stage1, mode, dataset.train_inputs[:1])
                logging.info("stage 1: using the finished compressed net of %s", shared_stage1)
                continue
            params = run_stage(config, workdir, mode, settings, dataset, params, writer)
        if config.run_kind == "bitwise":
            arrays, meta = binarize(config, params, encoding)
            meta["provenance"] = {"training_segments": provenance.read_segments(workdir)}
            checkpoints.save_binarized(workdir, arrays, meta)
    logging.info("training done: %s", workdir)
    return params


def load_best_params(config: ml_collections.ConfigDict, workdir: str, mode: str, example_input: jax.Array) -> dict:
    """The best-by-validation parameters of a finished stage; CheckpointError if there are none."""
    settings = config.stage2 if mode == "bitwise" else config.stage1
    model = make_model(config, mode, settings)
    like = jax.eval_shape(lambda: model.init(jax.random.key(0), example_input)["params"])
    restored = checkpoints.restore_params(workdir, mode, "best", like)
    if restored is None:
        raise checkpoints.CheckpointError(
            f"no {mode} checkpoint in {checkpoints.stage_dir(workdir, mode, 'best')}; train this workdir first (experiments.train)"
        )
    return restored


def _log_summary(config: ml_collections.ConfigDict, dataset: Dataset, encoding: encodings.Encoding) -> None:
    """Print the model summary (bits per weight, memory, binary ops vs MACs) before training."""
    mode = "bitwise" if config.run_kind == "bitwise" else "float"
    model = make_model(config, mode, config.stage1)
    params = model.init(jax.random.key(0), dataset.train_inputs[:1])["params"]  # sizes; lambda sets the zeros
    rows = summary.summarize_params(params, config.stage2.sparsity if mode == "bitwise" else 0.0, encoding.bit_values or "bipolar", mode)
    logging.info("model summary (%s network):\n%s", mode, summary.format_summary(rows))
