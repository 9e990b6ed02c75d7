"""The run pipeline: `train_and_evaluate(config, workdir)` trains the stages of a config's plan, resumably.

    check the config and the workdir  ->  load and encode the data once  ->  for each stage of
    bitnet.training.plan: start it (random / previous stage's best / finished elsewhere) and run its loop
    (bitnet.training.loop)  ->  store the binarized model (bitnet.training.binarized; threshold neurons with batch norm)

Each epoch writes a metrics line (WORKDIR/metrics.jsonl and TensorBoard events under
WORKDIR/tensorboard) and the stage's latest/best orbax checkpoints. Rerunning the same command
resumes from the latest checkpoint; a finished stage is not redone. Parameters, dropout keys and
data order all derive from config.seed, so a resumed run follows the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from bitnet.input import augmentation, data
from bitnet.deploy import summary
from bitnet.workdir import preemption, provenance, workdir_lock
from bitnet.training import binarized, configuration, loop, plan, steps
from bitnet.errors import ConfigError, TrainingError  # noqa: F401  (TrainingError: importable from here, as before)
from bitnet.training.loop import Dataset
from bitnet.workdir.metrics import MetricWriter


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """Load the train/validation splits and encode them once, onto the device, with the configured encoding."""
    encoding = configuration.encoding_of(config)
    splits = data.load_splits(**configuration.data_kwargs(config))
    return Dataset(
        train_inputs=jnp.asarray(encoding(splits.train_images)),
        train_labels=jnp.asarray(splits.train_labels),
        validation_inputs=jnp.asarray(encoding(splits.validation_images)),
        validation_labels=jnp.asarray(splits.validation_labels),
        encoding=encoding,
        identity=splits.identity,
    )


def check_fits_data(stages: tuple[plan.Stage, ...], dataset: Dataset) -> None:
    """ConfigError for stage settings the loaded data cannot serve (checked before anything is written)."""
    num_train = int(dataset.train_labels.shape[0])
    for stage in stages:
        if stage.batch_size > num_train:
            raise ConfigError(
                f"config.{stage.field}.batch_size={stage.batch_size} is larger than the {num_train} training examples; "
                "lower it or use more data"
            )
        if stage.max_shift:
            try:
                augmentation.image_side(dataset.input_size, dataset.encoding.planes)
            except ValueError as error:
                raise ConfigError(f"config.{stage.field}.max_shift={stage.max_shift}: {error}") from None


@workdir_lock.holding_workdir  # one run at a time per workdir
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict:
    """Train every stage of `config` in `workdir` (resuming), store checkpoints; return the last stage's best variables."""
    configuration.check(config)
    configuration.check_workdir(config, workdir, overwrite)  # refuse before any work; write once the data fits
    configuration.stage1_workdir(config, workdir)  # a shared stage 1 must fit this config
    stages = plan.plan(config)
    dataset = load_dataset(config)
    check_fits_data(stages, dataset)
    os.makedirs(workdir, exist_ok=True)
    configuration.write_or_check(config, workdir, overwrite)
    logging.info(
        "data: %d train, %d validation examples, encoding %s (%d inputs)",
        dataset.train_labels.shape[0], dataset.validation_labels.shape[0], dataset.encoding.name, dataset.input_size,
    )
    _log_summary(stages[-1], dataset)
    variables = None
    with provenance.segment(workdir, data=dataset.identity), preemption.stop_on_sigterm(), contextlib.closing(MetricWriter(workdir)) as writer:
        for stage in stages:
            if stage.start == plan.FINISHED:
                variables = loop.best_variables(stage, stage.source_workdir, dataset.input_size)
                logging.info("%s: using the finished stage of %s", stage.name, stage.source_workdir)
                continue
            variables = loop.run_stage(stage, workdir, dataset, variables if stage.start == plan.PREVIOUS else None, writer)
        save_binarized(stages, variables, workdir, dataset)
    logging.info("training done: %s", workdir)
    return variables


def save_binarized(stages: tuple[plan.Stage, ...], variables: dict, workdir: str, dataset: Dataset) -> None:
    """Store the binarized model of a run whose last stage is bitwise, with its training provenance."""
    final = plan.binarized_stage(stages)
    if final is not None:
        arrays, meta = binarized.binarize(final, variables, dataset.encoding)
        meta["provenance"] = {"training_segments": provenance.read_segments(workdir)}
        binarized.save(workdir, arrays, meta)


def _log_summary(stage: plan.Stage, dataset: Dataset) -> None:
    """Print the model summary (bits per weight, memory, binary ops vs MACs) of the final network before training."""
    params = steps.make_model(stage).init(jax.random.key(0), dataset.train_inputs[:1])["params"]  # sizes; lambda sets the zeros
    rows = summary.summarize_params(params, stage.hyper.sparsity, dataset.encoding.bit_values or "bipolar", stage.network.mode)
    logging.info("model summary (%s network):\n%s", stage.network.mode, summary.format_summary(rows))
