"""The group pipeline: `train_group(configs, workdirs)` trains K compatible runs in one program.

Each run gets the complete workdir a run trained alone gets (config.json, metrics.jsonl with
TensorBoard events, per-stage checkpoints, the binarized model), written by the single run's code
(bitnet.training.loop's resume, epoch end and stopped-state save); only the steps run as one compiled chunk
for all K (bitnet.training.group). Each metrics line says the group's size: with K > 1 its epoch_seconds is
the group's wall time for the epoch, shared by K runs; the process's provenance segment in each
run's config.json names the group's runs and size ("group").

A run whose loss becomes non-finite stops alone: its one-line error goes to WORKDIR/error.txt (and
the log), it trains no later stage and gets no binarized model; the others train on. Resuming
after a kill: each run restores its own latest checkpoint; runs that are behind (a kill between
two runs' saves) train alone in the group program until they reach the others, so every run
follows its uninterrupted data order and keys.

With several devices visible the group's run axis is sharded over them (bitnet.training.group.run_mesh; the
segment's "group" says over how many): the stacked states stay on their devices from chunk to
chunk, and only at an epoch's end (or a stop) are the runs gathered to the first device, where
each run's validation and checkpoints happen as on one device.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Sequence

import jax.numpy as jnp
import ml_collections
from absl import logging

from bitnet import faults
from bitnet.input import data
from bitnet.workdir import preemption, provenance, workdir_lock
from bitnet.training import configuration, group, loop, plan, steps, train
from bitnet.errors import ERROR_FILE, ConfigError, TrainingError
from bitnet.training.loop import Dataset
from bitnet.workdir.metrics import MetricWriter


def train_group(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str], axis: str | None = None) -> list[str | None]:
    """Train the runs `configs` in `workdirs` as one group (resuming), holding every workdir's lock; per run None, or
    its one-line error."""
    with contextlib.ExitStack() as locks:
        for workdir in workdirs:
            locks.enter_context(workdir_lock.held(workdir))
        return _train_group(configs, workdirs, axis)


def _train_group(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str], axis: str | None) -> list[str | None]:
    for config, workdir in zip(configs, workdirs, strict=True):
        configuration.check(config)
        configuration.check_workdir(config, workdir)
        configuration.stage1_workdir(config, workdir)
    if len({group.group_key(config) for config in configs}) > 1:
        raise ConfigError(f"{list(workdirs)} cannot train as one group: they differ in more than seed, learning rate, dropout and lambda")
    plans = [plan.plan(config) for config in configs]
    dataset = train.load_dataset(configs[0])
    for stages in plans:
        train.check_fits_data(stages, dataset)
    for config, workdir in zip(configs, workdirs):
        os.makedirs(workdir, exist_ok=True)
        configuration.write_or_check(config, workdir)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(workdir, ERROR_FILE))  # of an earlier try
    errors: list[str | None] = [None] * len(configs)
    variables: list[dict | None] = [None] * len(configs)
    with preemption.stop_on_sigterm(), contextlib.ExitStack() as exits:
        mesh = group.run_mesh(len(workdirs))
        group_facts = {"runs": [os.path.abspath(workdir) for workdir in workdirs], "size": len(workdirs), "devices": 1 if mesh is None else mesh.size}
        endings = [exits.enter_context(provenance.segment(workdir, data=dataset.identity, group=group_facts)) for workdir in workdirs]
        writers = [exits.enter_context(contextlib.closing(MetricWriter(workdir))) for workdir in workdirs]
        for index in range(len(plans[0])):
            live = [run for run in range(len(configs)) if errors[run] is None]
            stages = [plans[run][index] for run in live]
            if not live:
                break
            if stages[0].start == plan.FINISHED:
                for run, stage in zip(live, stages):
                    variables[run] = loop.best_variables(stage, stage.source_workdir, dataset.input_size)
                continue
            inits = [variables[run] if stage.start == plan.PREVIOUS else None for run, stage in zip(live, stages)]
            results = run_group_stage(stages, [workdirs[run] for run in live], dataset, inits, [writers[run] for run in live], len(configs), axis)
            for run, result in zip(live, results):
                if isinstance(result, str):
                    errors[run] = result
                    endings[run].update(status="error", error=result)
                    _write_text(os.path.join(workdirs[run], ERROR_FILE), f"error: {result}\n")
                    logging.error("%s: %s", workdirs[run], result)
                else:
                    variables[run] = result
        for run, stages in enumerate(plans):
            if errors[run] is None:
                train.save_binarized(stages, variables[run], workdirs[run], dataset)
    logging.info("group of %d done: %d finished", len(configs), errors.count(None))
    return errors


def run_group_stage(
    stages: Sequence[plan.Stage], workdirs: Sequence[str], dataset: Dataset, inits: Sequence[dict | None],
    writers: Sequence[MetricWriter], group_size: int, axis: str | None = None,
) -> list[dict | str]:
    """Train one stage of each run as a group (each resuming from its own latest checkpoint); per run its best
    model variables, or the one-line error that stopped it."""
    size, stage = len(stages), stages[0]
    num_train = int(dataset.train_labels.shape[0])
    steps_per_epoch = num_train // stage.batch_size
    total_steps = stage.epochs * steps_per_epoch
    models = [steps.make_model(run) for run in stages]
    schedules = [steps.make_schedule(run, steps_per_epoch) for run in stages]
    keys = [steps.stage_key(run) for run in stages]
    states, best, first = [], [], []
    for run, workdir, writer, model, schedule, key, init in zip(stages, workdirs, writers, models, schedules, keys, inits):
        state = steps.init_state(model, steps.make_optimizer(run, schedule), key, dataset.train_inputs[:1], init)
        state, best_error = loop.resume(run, workdir, state, writer, steps_per_epoch)
        states.append(state), best.append(best_error), first.append(int(state["step"]))
    predicts: dict[float, object] = {}  # one compiled prediction per lambda: it is all a prediction depends on besides shapes
    pace = loop.Pace(min(first), total_steps)
    ends = [
        loop.EpochEnd(run, workdir, writer, dataset, predicts.setdefault(run.hyper.sparsity, steps.make_predict(model)), schedule,
                      steps_per_epoch, first_step, pace, {"group_size": group_size}, f"[{os.path.basename(workdir)}] ")
        for run, workdir, writer, model, schedule, first_step in zip(stages, workdirs, writers, models, schedules, first)
    ]
    mesh = group.run_mesh(size)  # None on one device
    chunk = group.make_group_chunk(stages, steps_per_epoch, steps.make_augment(stage, dataset.encoding, dataset.input_size), axis, mesh)
    values, stacked_keys = group.spread(group.per_run_values(stages, dataset.input_size), mesh), group.spread(jnp.stack(keys), mesh)
    inputs, labels = group.replicate((dataset.train_inputs, dataset.train_labels), mesh)
    results: list[dict | str | None] = [None] * size
    saved_at = [time.time()] * size
    stacked = group.spread(group.stack(states), mesh)
    position = list(first)
    while True:
        live = [run for run in range(size) if results[run] is None and position[run] < total_steps]
        if not live:
            break
        low = min(position[run] for run in live)
        epoch = low // steps_per_epoch + 1
        target = min([epoch * steps_per_epoch] + [position[run] for run in live if position[run] > low])
        active = [run in live and position[run] == low for run in range(size)]
        orders = group.spread(jnp.stack([jnp.asarray(data.batch_indices(run.seed, epoch, num_train, run.batch_size)) for run in stages]), mesh)
        active_mask = group.spread_mask(active, mesh)
        epoch_start = time.time()
        while low < target:
            count, chunk_start = min(pace.chunk_steps, target - low), time.time()
            stacked = chunk(stacked, values, active_mask, inputs, labels, orders, low - (epoch - 1) * steps_per_epoch, count, stacked_keys)
            low = int(stacked["step"][active.index(True)])  # waits for the chunk
            pace.measured(count, time.time() - chunk_start)
            if low == epoch * steps_per_epoch:
                faults.point("epoch_last_step")  # test-only: a SIGTERM landing on an epoch's last step
            if low < epoch * steps_per_epoch and preemption.requested():
                gathered = group.gather(stacked, size, mesh)
                for run in range(size):
                    if active[run]:
                        with _stopping(results, run):
                            loop.save_stopped(stages[run], workdirs[run], group.take(gathered, run), epoch, best[run])
                raise loop.preempted(workdirs[0], stage, low)
        for run in range(size):
            position[run] = low if active[run] else position[run]
        if low < epoch * steps_per_epoch:
            continue  # caught up with a run that stopped mid-epoch: on together
        seconds = time.time() - epoch_start
        per_run = group.unstack(group.gather(stacked, size, mesh))
        for run in range(size):
            if active[run]:
                with _stopping(results, run):
                    per_run[run], best[run], saved_at[run] = ends[run](per_run[run], epoch, seconds, best[run], saved_at[run])
        stacked = group.spread(group.stack(per_run), mesh)
        if preemption.requested():  # it may have come after a run's epoch end chose not to save its latest state
            for run in range(size):
                if active[run] and results[run] is None:
                    loop.save_stopped(stages[run], workdirs[run], per_run[run], epoch + 1, best[run])  # (nothing to do if it did)
            raise loop.preempted(workdirs[0], stage, low)
    return [result if result is not None else loop.best_variables(run, workdir, dataset.input_size)
            for result, run, workdir in zip(results, stages, workdirs)]


@contextlib.contextmanager
def _stopping(results: list, run: int):
    """Record a TrainingError of run `run` as its result (it stops; the group goes on)."""
    try:
        yield
    except TrainingError as error:
        results[run] = str(error)


def _write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as file:
        file.write(text)
    os.replace(path + ".tmp", path)
