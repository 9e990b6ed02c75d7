"""The training loop of one stage: epochs of steps, validation, checkpoints, preemption, metrics, ETA.

Resumable: it starts from the stage's latest checkpoint if there is one (a finished stage trains
nothing more), drops the metric lines written after that checkpoint, and follows the same data
order and dropout keys (pure functions of seed, epoch and step) as an uninterrupted run, so both
end with the same parameters, bit for bit. Each epoch ends with a validation, a metrics line and
the latest (and, at a new lowest validation error, best) checkpoint. SIGTERM saves the latest
checkpoint at the current step and raises `preemption.Preempted`.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
from absl import logging

from bitnet import checkpoints, data, encodings, preemption, steps
from bitnet.errors import TrainingError
from bitnet.metrics import MetricWriter
from bitnet.plan import Stage


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Encoded inputs (float32, on device) and labels of the train and validation splits."""

    train_inputs: jax.Array
    train_labels: jax.Array
    validation_inputs: jax.Array
    validation_labels: jax.Array
    encoding: encodings.Encoding

    @property
    def input_size(self) -> int:
        return int(self.train_inputs.shape[1])


def run_stage(stage: Stage, workdir: str, dataset: Dataset, init_params: dict | None, writer: MetricWriter) -> dict:
    """Train one stage to the end (resuming if a checkpoint exists); return its best parameters."""
    num_train = int(dataset.train_labels.shape[0])
    steps_per_epoch = num_train // stage.batch_size
    model = steps.make_model(stage)
    schedule = steps.make_schedule(stage, steps_per_epoch)
    optimizer = steps.make_optimizer(stage, schedule)
    seed_key = steps.stage_key(stage)
    state = steps.init_state(model, optimizer, seed_key, dataset.train_inputs[:1], init_params)

    best_error = math.inf
    latest = checkpoints.restore_stage(workdir, stage.name, "latest", state)
    if latest is not None:
        state, meta = latest
        best_error = float(meta["best_val_error"])
        logging.info("%s: resumed at step %d from %s", stage.name, int(state["step"]), checkpoints.stage_dir(workdir, stage.name, "latest"))
    first_step = int(state["step"])
    writer.drop_after(stage.name, first_step // steps_per_epoch)

    train_step = steps.make_train_step(model, optimizer, steps.make_augment(stage, dataset.encoding, dataset.input_size))
    predict = steps.make_predict(model)
    started = time.time()
    for epoch in range(first_step // steps_per_epoch + 1, stage.epochs + 1):
        epoch_start = time.time()
        order = jnp.asarray(data.batch_indices(stage.seed, epoch, num_train, stage.batch_size))
        for row in range(int(state["step"]) - (epoch - 1) * steps_per_epoch, steps_per_epoch):
            key = jax.random.fold_in(seed_key, (epoch - 1) * steps_per_epoch + row)
            state = train_step(state, dataset.train_inputs, dataset.train_labels, order[row], key)
            if preemption.requested() and row < steps_per_epoch - 1:  # an epoch's last step: finish the epoch first
                _check_finite(workdir, stage, epoch, jax.device_get(state["totals"]))  # never save a diverged state
                meta = {"epoch": epoch - 1, "step": int(state["step"]), "best_val_error": best_error}
                checkpoints.save_stage(workdir, stage.name, state, meta, math.inf, is_best=False)
                raise _preempted(workdir, stage, int(state["step"]))
        totals = jax.device_get(state["totals"])
        _check_finite(workdir, stage, epoch, totals)
        seconds = time.time() - epoch_start
        val_error = steps.error_rate(predict, state["params"], dataset.validation_inputs, dataset.validation_labels, stage.eval_batch_size)
        is_best = val_error < best_error
        best_error = min(best_error, val_error)
        step = int(state["step"])
        metrics = {
            "stage": stage.name,
            "epoch": epoch,
            "step": step,
            "train_loss": float(totals["loss"]) / steps_per_epoch,
            "train_error": int(totals["errors"]) / (steps_per_epoch * stage.batch_size),
            "val_error": val_error,
            "best_val_error": best_error,
            "learning_rate": float(schedule(step - 1)),
            "examples_per_sec": (step - max(first_step, (epoch - 1) * steps_per_epoch)) * stage.batch_size / seconds,
            "epoch_seconds": seconds,
        }
        writer.write(metrics)
        state = {**state, "totals": steps.zero_totals()}
        meta = {"epoch": epoch, "step": step, "val_error": val_error, "best_val_error": best_error}
        checkpoints.save_stage(workdir, stage.name, state, meta, val_error, is_best)
        remaining = (time.time() - started) / (step - first_step) * (stage.epochs * steps_per_epoch - step)
        logging.info(
            "%s epoch %d/%d  loss %.4f  train err %.2f%%  val err %.2f%% (best %.2f%%)  %.0f ex/s  ETA %s",
            stage.name, epoch, stage.epochs, metrics["train_loss"], 100 * metrics["train_error"],
            100 * val_error, 100 * best_error, metrics["examples_per_sec"], _format_duration(remaining),
        )
        if preemption.requested():
            raise _preempted(workdir, stage, step)
    return best_params(stage, workdir, dataset.input_size)


def best_params(stage: Stage, workdir: str, input_size: int) -> dict:
    """The best-by-validation parameters of a finished stage (in its own workdir); CheckpointError if none."""
    return checkpoints.restore_best_params(workdir, stage.name, steps.abstract_params(stage, input_size))


def _check_finite(workdir: str, stage: Stage, epoch: int, totals: dict) -> None:
    """TrainingError naming the first step whose loss was not finite, if any (nothing was saved since)."""
    if not math.isfinite(float(totals["loss"])):
        raise TrainingError(
            f"{stage.name}: the loss became non-finite at step {int(totals['first_bad_step'])} (epoch {epoch}); the "
            f"last good checkpoint is kept in {checkpoints.stage_dir(workdir, stage.name, 'latest')}; "
            "lower the learning rate and rerun"
        )


def _preempted(workdir: str, stage: Stage, step: int) -> preemption.Preempted:
    return preemption.Preempted(
        f"stopped by {preemption.requested()} in stage {stage.name} at step {step}; "
        f"checkpoint saved in {checkpoints.stage_dir(workdir, stage.name, 'latest')}; rerun the same command to resume"
    )


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
