"""The training loop of one stage of K >= 1 runs: chunks of steps, validation, checkpoints, preemption, metrics, ETA.

An epoch runs as chunks: each chunk is one compiled call of `steps.make_train_chunk` (a device loop
over steps, batches gathered on the device; a run alone compiles it with no run axis, K runs as
`bitnet.training.group.make_group_chunk`, the same chunk mapped over a run axis), sized from the measured step time to about
CHUNK_SECONDS of work, so the host checks for a stop request and reports progress within seconds
while a chunk's steps run without Python in between. Resumable: it starts from the stage's latest
checkpoint if there is one (a finished stage trains nothing more), drops the metric lines written
after that checkpoint, and follows the same data order and dropout keys (pure functions of seed,
epoch and step, whatever the chunking) as an uninterrupted run, so both end with the same
parameters, bit for bit. Each epoch ends with a metrics line; every `eval_every_epochs` a
validation (a new lowest validation error is saved as best at once) and every
`checkpoint_every_epochs` (or `checkpoint_every_seconds`) the latest state; the last epoch does
all three, for each run. SIGTERM saves the latest state of every run at the end of the running
chunk and raises `preemption.Preempted`. A run whose loss becomes non-finite stops alone.

A group over several processes (jax.distributed) runs this loop in each: every process takes the
same decisions (`bitnet.training.group.agreed` after each chunk: a stop asked of any of them, the
chunk size; at an epoch's end: the runs that stopped), so all run the same chunks, while each
evaluates, checkpoints and writes the metrics of the runs it holds only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import logging

from bitnet import faults
from bitnet.core import encodings
from bitnet.input import data
from bitnet.workdir import checkpoints, preemption
from bitnet.training import group, steps
from bitnet.errors import TrainingError
from bitnet.workdir.metrics import MetricWriter
from bitnet.training.plan import SELECTIONS, Stage

CHUNK_SECONDS = 10.0  # work per compiled call at most (about): a signal, or the next ETA, waits no longer


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Encoded inputs (float32, on device) and labels of the train and validation splits."""

    train_inputs: jax.Array
    train_labels: jax.Array
    validation_inputs: jax.Array
    validation_labels: jax.Array
    encoding: encodings.Encoding
    identity: dict = dataclasses.field(default_factory=dict)  # data.Splits.identity: the data's name and checksums

    @property
    def input_size(self) -> int:
        return int(self.train_inputs.shape[1])


@dataclasses.dataclass
class Pace:
    """Chunk sizes from the measured step time, and the ETA, of one stage's run."""

    first_step: int
    total_steps: int
    started: float = dataclasses.field(default_factory=time.time)
    logged: float = dataclasses.field(default_factory=time.time)
    chunk_steps: int = 1  # the first call compiles; later chunks are sized from the measured step time

    def measured(self, steps_done: int, seconds: float) -> None:
        self.chunk_steps = max(1, int(CHUNK_SECONDS * steps_done / max(seconds, 1e-6)))

    def eta(self, step: int) -> str:
        """The remaining time at `step`, for a log line (the next progress line is due half a chunk later)."""
        self.logged = time.time()
        return _format_duration((self.logged - self.started) / max(step - self.first_step, 1) * (self.total_steps - step))

    def log_due(self) -> bool:
        """Whether a progress line is due: chunks take up to CHUNK_SECONDS, so one about every chunk."""
        return time.time() - self.logged >= CHUNK_SECONDS / 2


def run_stage(
    stages: Sequence[Stage], workdirs: Sequence[str], dataset: Dataset, inits: Sequence[dict | None],
    writers: Sequence[MetricWriter | None], axis: str | None = None, stopped: Sequence[str | None] = (),
) -> list[dict | str | None]:
    """Train one stage of K >= 1 runs to the end, each resuming from its own latest checkpoint; per run its best
    model variables, or the one-line error that stopped it (a diverging run stops alone, the others train on), or
    None for a run another process holds (bitnet.training.group.holders; its writer is None here).

    `stopped`: the error of each run that stopped in an earlier stage (None for the others): it keeps its place in
    the group, inactive, so every run stays on the devices, and the process, that hold it from the first stage on.
    Runs that are behind the others after a resume (a kill between two runs' saves) train alone until they
    reach them, so every run follows its uninterrupted data order and keys.
    """
    size, stage = len(stages), stages[0]
    num_train = int(dataset.train_labels.shape[0])
    steps_per_epoch = num_train // stage.batch_size
    total_steps = stage.epochs * steps_per_epoch
    here = [holder == jax.process_index() for holder in group.holders(size)]
    results: list[dict | str | None] = list(stopped) or [None] * size
    models = [steps.make_model(run) for run in stages]
    schedules = [steps.make_schedule(run, steps_per_epoch) for run in stages]
    optimizers = [steps.make_optimizer(run, schedule) for run, schedule in zip(stages, schedules)]
    keys = [steps.stage_key(run) for run in stages]
    states, best = [], []
    for index, (run, workdir, writer, model, optimizer, key, init) in enumerate(zip(stages, workdirs, writers, models, optimizers, keys, inits, strict=True)):
        state, best_error = steps.init_state(model, optimizer, key, dataset.train_inputs[:1], init), math.inf  # a stand-in unless held here
        if here[index] and results[index] is None:
            state, best_error = resume(run, workdir, state, writer, steps_per_epoch)
        states.append(state), best.append(best_error)
    first = group.agreed([int(state["step"]) for state in states])  # the step a run held elsewhere resumed at
    predicts: dict[float, Callable] = {}  # one compiled prediction per lambda: it is all a prediction depends on besides shapes
    pace = Pace(min(step for step, result in zip(first, results) if result is None), total_steps)
    extra = {"group_size": size} if size > 1 else {}
    labels = [f"[{os.path.basename(workdir)}] " if size > 1 else "" for workdir in workdirs]
    ends = [
        EpochEnd(run, workdir, writer, dataset, predicts.setdefault(run.hyper.sparsity, steps.make_predict(model)), schedule,
                 steps_per_epoch, first_step, pace, extra, label) if held else None
        for run, workdir, writer, model, schedule, first_step, label, held in zip(stages, workdirs, writers, models, schedules, first, labels, here)
    ]
    augment = steps.make_augment(stage, dataset.encoding, dataset.input_size)
    alone = size == 1 and jax.process_count() == 1
    program = _Alone(stage, models[0], optimizers[0], augment, keys[0], dataset) if alone else _Group(stages, steps_per_epoch, augment, keys, dataset, axis)
    saved_at = [time.time()] * size
    held = program.hold(states)
    position = list(first)
    while True:
        live = [run for run in range(size) if results[run] is None and position[run] < total_steps]
        if not live:
            break
        low = min(position[run] for run in live)
        epoch = low // steps_per_epoch + 1
        epoch_end_step = epoch * steps_per_epoch
        target = min([epoch_end_step] + [position[run] for run in live if position[run] > low])
        active = [run in live and position[run] == low for run in range(size)]
        ours = [run for run in range(size) if active[run] and here[run]]
        orders = [data.batch_indices(run.seed, epoch, num_train, run.batch_size) for run in stages]
        segment = program.segment(active, orders)
        epoch_start = time.time()
        while low < target:
            count, chunk_start = min(pace.chunk_steps, target - low), time.time()
            held = jax.block_until_ready(program.train(held, segment, low - (epoch - 1) * steps_per_epoch, count))
            low += count
            pace.measured(count, time.time() - chunk_start)
            if low == epoch_end_step:
                faults.point("epoch_last_step")  # test-only: a SIGTERM landing on an epoch's last step
            stop, fewest = group.agreed([bool(preemption.requested()), -pace.chunk_steps])  # one program: one chunk size
            pace.chunk_steps = -fewest
            if low < epoch_end_step and stop:  # after an epoch's last step: finish the epoch first
                per_run = program.release(held)
                for run in ours:
                    with _stopping(results, run):
                        save_stopped(stages[run], workdirs[run], per_run[run], epoch, best[run])
                raise preempted(workdirs[ours[0] if ours else 0], stage, low)
            if low < epoch_end_step and pace.log_due():  # long epochs: progress within seconds
                logging.info("%s epoch %d/%d  step %d/%d  ETA %s", stage.name, epoch, stage.epochs,
                             low - (epoch - 1) * steps_per_epoch, steps_per_epoch, pace.eta(low))
        for run in range(size):
            position[run] = low if active[run] else position[run]
        if low < epoch_end_step:
            continue  # caught up with a run that stopped mid-epoch: on together
        seconds = time.time() - epoch_start
        per_run = program.release(held)
        for run in ours:
            with _stopping(results, run):
                per_run[run], best[run], saved_at[run] = ends[run](per_run[run], epoch, seconds, best[run], saved_at[run])
        *ended, stop = group.agreed([result is not None for result in results] + [bool(preemption.requested())])
        results = [STOPPED_ELSEWHERE if result is None and end else result for result, end in zip(results, ended)]
        held = program.hold(per_run)
        if stop:  # it may have come after a run's epoch end chose not to save its latest state
            for run in ours:
                if results[run] is None:
                    save_stopped(stages[run], workdirs[run], per_run[run], epoch + 1, best[run])  # (nothing to do if it did)
            raise preempted(workdirs[ours[0] if ours else 0], stage, low)
    return [result if result is not None or not held else stage_variables(run, workdir, dataset.input_size)
            for result, run, workdir, held in zip(results, stages, workdirs, here)]


STOPPED_ELSEWHERE = "stopped on the process that holds it; its error is in its workdir's error.txt"


def resume(stage: Stage, workdir: str, state: steps.TrainState, writer: MetricWriter, steps_per_epoch: int) -> tuple[steps.TrainState, float]:
    """(state, best validation error) of the stage's latest checkpoint, else of `state`; drops the metric lines past it."""
    best_error = math.inf
    latest = checkpoints.restore_stage(workdir, stage.name, "latest", state)
    if latest is not None:
        state, meta = latest
        best_error = math.inf if meta["best_val_error"] is None else float(meta["best_val_error"])
        logging.info("%s: resumed at step %d from %s", stage.name, int(state["step"]), checkpoints.stage_dir(workdir, stage.name, "latest"))
    writer.drop_after(stage.name, int(state["step"]) // steps_per_epoch)
    return state, best_error


def save_stopped(stage: Stage, workdir: str, state: steps.TrainState, epoch: int, best_error: float) -> None:
    """Save a state stopped in `epoch` (mid-epoch, or before its first step) as latest, unless it is already;
    TrainingError instead if its loss was not finite."""
    _check_finite(workdir, stage, epoch, jax.device_get(state["totals"]))  # never save a diverged state
    meta = {"epoch": epoch - 1, "step": int(state["step"]), "best_val_error": _json_error(best_error)}
    checkpoints.save_stage(workdir, stage.name, state, meta, None, is_best=False)


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """The end of an epoch of one run's stage: validation, its metrics line, checkpoints, the log line."""

    stage: Stage
    workdir: str
    writer: MetricWriter
    dataset: Dataset
    predict: Callable
    schedule: Callable
    steps_per_epoch: int
    first_step: int
    pace: Pace
    extra: dict = dataclasses.field(default_factory=dict)  # more fields of each metrics line
    label: str = ""  # of the log line: which run

    def __call__(self, state: steps.TrainState, epoch: int, seconds: float, best_error: float, saved_at: float) -> tuple[steps.TrainState, float, float]:
        """(state with zero totals, best validation error, time of the last latest save); TrainingError if the loss diverged."""
        stage, workdir, steps_per_epoch = self.stage, self.workdir, self.steps_per_epoch
        totals = jax.device_get(state["totals"])
        _check_finite(workdir, stage, epoch, totals)
        last = epoch == stage.epochs
        val_error = None
        if (epoch % stage.eval_every_epochs == 0 or last) and self.dataset.validation_labels.shape[0]:  # none: a final fit
            val_error = steps.error_rate(self.predict, steps.model_variables(state), self.dataset.validation_inputs, self.dataset.validation_labels, stage.eval_batch_size)
        is_best = val_error is not None and val_error < best_error
        best_error = min(best_error, math.inf if val_error is None else val_error)
        step = int(state["step"])
        metrics = {
            "stage": stage.name,
            "epoch": epoch,
            "step": step,
            "train_loss": float(totals["loss"]) / steps_per_epoch,
            "train_error": int(totals["errors"]) / (steps_per_epoch * stage.batch_size),
            "val_error": val_error,
            "best_val_error": _json_error(best_error),
            "learning_rate": float(self.schedule(step - 1)),
            "examples_per_sec": (step - max(self.first_step, (epoch - 1) * steps_per_epoch)) * stage.batch_size / seconds,
            "epoch_seconds": seconds,
            **self.extra,
        }
        self.writer.write(metrics)
        state = {**state, "totals": steps.zero_totals()}
        save_latest = last or bool(preemption.requested()) or _checkpoint_due(stage, epoch, time.time() - saved_at)
        if save_latest or is_best:
            meta = {"epoch": epoch, "step": step, "val_error": val_error, "best_val_error": _json_error(best_error)}
            checkpoints.save_stage(workdir, stage.name, state, meta, val_error, is_best, latest=save_latest)
            saved_at = time.time() if save_latest else saved_at
        logging.info(
            "%s%s epoch %d/%d  loss %.4f  train err %.2f%%  val err %s (best %s)  %.0f ex/s  ETA %s",
            self.label, stage.name, epoch, stage.epochs, metrics["train_loss"],
            100 * metrics["train_error"], _percent(val_error), _percent(best_error), metrics["examples_per_sec"], self.pace.eta(step),
        )
        return state, best_error, saved_at


def _checkpoint_due(stage: Stage, epoch: int, seconds_since_save: float) -> bool:
    """Whether the end of `epoch` saves the latest state by the stage's intervals."""
    return epoch % stage.checkpoint_every_epochs == 0 or 0 < stage.checkpoint_every_seconds <= seconds_since_save


def _json_error(value: float) -> float | None:
    """An error rate for JSON: None before the first validation (JSON has no infinity)."""
    return value if math.isfinite(value) else None


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None and math.isfinite(value) else "-"


def stage_variables(stage: Stage, workdir: str, input_size: int) -> dict:
    """The model variables a finished stage (in `workdir`) hands on and ends with: its best-by-validation or its last
    state (`stage.select`); CheckpointError if none."""
    which = SELECTIONS[stage.select]
    return checkpoints.restore_stage_variables(workdir, stage.name, which, steps.abstract_variables(stage, input_size))


def _check_finite(workdir: str, stage: Stage, epoch: int, totals: dict) -> None:
    """TrainingError naming the first step whose loss was not finite, if any (nothing was saved since)."""
    if not math.isfinite(float(totals["loss"])):
        latest = checkpoints.stage_dir(workdir, stage.name, "latest")
        kept = f"the last good checkpoint is kept in {latest}" if checkpoints.latest_meta(workdir, stage.name) else "no checkpoint of it was saved"
        raise TrainingError(
            f"{stage.name}: the loss became non-finite at step {int(totals['first_bad_step'])} (epoch {epoch}); {kept}; "
            "lower the learning rate and rerun"
        )


def preempted(workdir: str, stage: Stage, step: int) -> preemption.Preempted:
    return preemption.Preempted(
        f"stopped by {preemption.requested() or 'a stop of another process of its group'} in stage {stage.name} at step {step}; "
        f"checkpoint saved in {checkpoints.stage_dir(workdir, stage.name, 'latest')}; rerun the same command to resume"
    )


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Alone:
    """How a run alone trains: the single run's compiled chunk, with no run axis (bit for bit as before groups)."""

    def __init__(self, stage: Stage, model, optimizer, augment, key: jax.Array, dataset: Dataset):
        self.chunk = steps.make_train_chunk(model, optimizer, augment, loss=steps.make_loss(stage), project=steps.make_projection(stage))
        self.key, self.dataset = key, dataset

    def hold(self, states: list) -> steps.TrainState:
        return states[0]

    def release(self, held: steps.TrainState) -> list:
        return [held]

    def segment(self, active: list[bool], orders: list) -> jax.Array:
        return jnp.asarray(orders[0])

    def train(self, held: steps.TrainState, order: jax.Array, start_row: int, count: int) -> steps.TrainState:
        return self.chunk(held, self.dataset.train_inputs, self.dataset.train_labels, order, start_row, count, self.key)


class _Group:
    """How K > 1 runs train (or any number over several processes): stacked on a run axis in one compiled chunk
    (bitnet.training.group), sharded over the visible devices; at an epoch's end or a stop each process reads back
    the runs it holds, on its first device (None for the others)."""

    def __init__(self, stages: Sequence[Stage], steps_per_epoch: int, augment, keys: list, dataset: Dataset, axis: str | None):
        self.size, self.mesh = len(stages), group.run_mesh(len(stages))
        self.chunk = group.make_group_chunk(stages, steps_per_epoch, augment, axis, self.mesh)
        self.values = group.spread(group.per_run_values(stages, dataset.input_size), self.mesh)
        self.keys = group.spread(jnp.stack(keys), self.mesh)
        self.inputs, self.labels = group.replicate((dataset.train_inputs, dataset.train_labels), self.mesh)
        self.elsewhere = [holder != jax.process_index() for holder in group.holders(self.size)]
        self.stand_ins: dict = {}

    def hold(self, states: list):
        """The stacked states on the mesh; a run held by another process (None once released) keeps its first stand-in,
        which only gives the stack its shape (its part is never placed here)."""
        self.stand_ins = self.stand_ins or {run: state for run, state in enumerate(states) if self.elsewhere[run]}
        return group.spread(group.stack([self.stand_ins[run] if self.elsewhere[run] else state for run, state in enumerate(states)]), self.mesh)

    def release(self, held) -> list:
        ours = group.held_runs(held, self.size, self.mesh)
        return [ours.get(run) for run in range(self.size)]

    def segment(self, active: list[bool], orders: list) -> tuple:
        return group.spread_mask(active, self.mesh), group.spread(jnp.stack([jnp.asarray(order) for order in orders]), self.mesh)

    def train(self, held, segment: tuple, start_row: int, count: int):
        active, orders = segment
        return self.chunk(held, self.values, active, self.inputs, self.labels, orders, start_row, count, self.keys)


@contextlib.contextmanager
def _stopping(results: list, run: int):
    """Record a TrainingError of run `run` as its result (it stops; the others go on)."""
    try:
        yield
    except TrainingError as error:
        results[run] = str(error)
