"""The run pipeline for K >= 1 runs: `train_runs(configs, workdirs)`, and `train_and_evaluate(config, workdir)`, a
group of one.

    check each config and workdir  ->  load and encode the data once  ->  for each stage of
    bitnet.training.plan: start it (random / previous stage's best / finished elsewhere) and run
    its loop for all runs at once (bitnet.training.loop.run_stage)  ->  store each run's binarized
    model (bitnet.training.binarized; threshold neurons with batch norm)

Each run gets a complete workdir of its own: config.json (with a provenance segment per process),
metrics.jsonl with TensorBoard events, per-stage latest/best orbax checkpoints, the binarized model.
Rerunning the same command resumes from each run's latest checkpoint; a finished stage is not
redone. Parameters, dropout keys and data order derive from each run's seed, so a resumed run follows
the uninterrupted one, and a run in a group ends bit for bit as alone (on the CPU, `map` axis).

A run alone compiles the single run's chunk (no run axis). K runs that differ only in the seed and
`bitnet.training.group.TRACED` numbers train as one compiled chunk; each metrics line then says the
group's size (`group_size`, its epoch_seconds the group's wall time, shared by K runs) and each
run's provenance segment names the group ("group"). A run whose loss becomes non-finite stops alone:
its one-line error goes to WORKDIR/error.txt, it trains no later stage (it keeps its place in the
group, inactive) and gets no binarized model; the others train on. `train_and_evaluate` raises that
error as a TrainingError.

A group over several processes (hosts, jax.distributed.initialize before this is called) is the same
call in every process: the run axis is sharded over all their devices, and each run's workdir
(config.json, metrics, checkpoints, provenance, lock, binarized model) is written by the one process
whose devices hold it, its provenance segment naming that process ("group": {"process": ...}).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from bitnet.errors import ERROR_FILE, USER_ERRORS, ConfigError, DataError, TrainingError
from bitnet.input import augmentation, data
from bitnet.deploy import summary
from bitnet.workdir import checkpoints, preemption, provenance, workdir_lock
from bitnet.training import binarized, configuration, group, loop, plan, steps
from bitnet.training.loop import Dataset
from bitnet.workdir.metrics import MetricWriter


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one run ended: its last stage's best model variables, or the one-line error that stopped it."""

    variables: dict | None = None
    error: str | None = None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict:
    """Train every stage of `config` in `workdir` (resuming): a group of one. The last stage's best variables;
    TrainingError if the loss diverged."""
    (outcome,) = train_runs([config], [workdir], overwrite=overwrite)
    if outcome.error is not None:
        raise TrainingError(outcome.error)
    return outcome.variables


def train_runs(
    configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str], overwrite: bool = False, axis: str | None = None,
) -> list[Outcome]:
    """Train the runs `configs` in `workdirs` (resuming) as one group, holding the lock of every workdir this process
    writes; one Outcome per run. `overwrite`: replace a differing config.json (checkpoints stay and must fit); `axis`:
    how K > 1 runs share the program (bitnet.training.group.AXES; default by platform).

    Over several processes (jax.distributed) every process calls this with the same runs; each writes the workdirs
    of the runs its devices hold (bitnet.training.group.holders) and none reads the others' (they may be on its
    disk only). A run held elsewhere ends here with no variables, and with an error if it stopped there."""
    here = [holder == jax.process_index() for holder in group.holders(len(configs))]
    with contextlib.ExitStack() as locks:
        with _refused_together():
            for workdir, held in zip(workdirs, here, strict=True):
                if held:
                    locks.enter_context(workdir_lock.held(workdir))
            runs, dataset = _checked(configs, workdirs, here, overwrite)
        outcomes = _train_runs(runs, workdirs, here, dataset, axis)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # late: only several processes need it

        multihost_utils.sync_global_devices("bitnet: every run's workdir written and unlocked")  # before any process goes on to evaluate
    return outcomes


@contextlib.contextmanager
def _refused_together():
    """Over several processes, a refusal before training (a busy workdir, a config that does not fit it) stops every
    process, not only the one whose runs it concerns: the others would wait for it in the first chunk."""
    try:
        yield
    except USER_ERRORS:
        group.agreed([1])
        raise
    if group.agreed([0])[0]:
        raise TrainingError("another process of this group refused to train (its error line says why); fix that and rerun the same commands")


def _checked(
    configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str], here: Sequence[bool], overwrite: bool
) -> tuple[list[plan.Run], Dataset]:
    """The resolved runs (where the configs are resolved, once: nothing after reads them) and their loaded data, once
    every check passed (before any work); each config.json of this process's runs written."""
    for config in configs:
        configuration.check(config)
    runs = [plan.resolve(config) for config in configs]  # the config resolved once: nothing below reads it
    ours = [index for index, held in enumerate(here) if held]
    for index in ours:
        run, workdir = runs[index], workdirs[index]
        configuration.check_workdir(run.record, workdir, overwrite)  # refuse before any work; write once the data fits
        configuration.stage1_workdir(run.record, workdir)  # a shared stage 1 must fit this config
        for stage in run.stages:
            if stage.start == plan.FINISHED:
                with workdir_lock.shared(stage.source_workdir):
                    check_finished(stage)
    if len({group.group_key(run) for run in runs}) > 1:
        raise ConfigError(f"{list(workdirs)} cannot train as one group: they differ in more than seed, learning rate, dropout and lambda")
    dataset = load_dataset(runs[0].inputs)
    for index in ours:
        run, workdir = runs[index], workdirs[index]
        check_fits_data(run.stages, dataset)
        if not overwrite or configuration.kept_stages(run, workdir):  # an overwrite keeping no stage starts afresh
            check_same_data(workdir, dataset.identity, RETRAIN)
    for index in ours:
        os.makedirs(workdirs[index], exist_ok=True)
        configuration.write_or_check(runs[index], workdirs[index], overwrite)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(workdirs[index], ERROR_FILE))  # of an earlier try
    return runs, dataset


def _train_runs(runs: Sequence[plan.Run], workdirs: Sequence[str], here: Sequence[bool], dataset: Dataset, axis: str | None) -> list[Outcome]:
    plans = [run.stages for run in runs]
    ours = [index for index, held in enumerate(here) if held]
    logging.info(
        "data: %d train, %d validation examples, encoding %s (%d inputs)",
        dataset.train_labels.shape[0], dataset.validation_labels.shape[0], dataset.encoding.name, dataset.input_size,
    )
    _log_summary(plans[0][-1], dataset)
    size = len(runs)
    errors: list[str | None] = [None] * size
    variables: list[dict | None] = [None] * size
    with preemption.stop_on_sigterm(), contextlib.ExitStack() as exits:
        facts = _group_facts(workdirs)
        endings = {index: exits.enter_context(provenance.segment(workdirs[index], data=dataset.identity, **facts)) for index in ours}
        writers = {index: exits.enter_context(contextlib.closing(MetricWriter(workdirs[index]))) for index in ours}
        for index in range(len(plans[0])):
            if all(error is not None for error in errors):
                break
            stages = [stages_of_run[index] for stages_of_run in plans]
            if stages[0].start == plan.FINISHED:
                for run in ours:
                    if errors[run] is None:
                        variables[run] = finished_variables(stages[run], dataset.input_size, dataset.identity)
                        logging.info("%s: using the finished stage of %s", stages[run].name, stages[run].source_workdir)
                continue
            inits = [variables[run] if stage.start == plan.PREVIOUS else None for run, stage in enumerate(stages)]
            results = loop.run_stage(stages, workdirs, dataset, inits, [writers.get(run) for run in range(size)], axis, errors)
            for run, result in enumerate(results):
                if errors[run] is not None:
                    continue  # stopped in an earlier stage; it kept its place, inactive
                if isinstance(result, str):
                    errors[run] = result
                    if run in endings:
                        endings[run].update(status="error", error=result)
                        _write_text(os.path.join(workdirs[run], ERROR_FILE), f"error: {result}\n")
                        if size > 1:  # alone, the caller reports it
                            logging.error("%s: %s", workdirs[run], result)
                else:
                    variables[run] = result
        for run in ours:
            if errors[run] is None:
                save_binarized(plans[run], variables[run], workdirs[run], dataset)
    if size == 1:
        logging.info("training done: %s", workdirs[0])
    else:
        logging.info("group of %d done: %d finished", size, errors.count(None))
    return [Outcome(variables=variables[run], error=errors[run]) for run in range(size)]


def _group_facts(workdirs: Sequence[str]) -> dict:
    """The provenance segment's fields of a group ({} for a run alone): its runs, its size and the devices its run
    axis is sharded over, and over several processes which one wrote this segment (the one holding the run)."""
    if len(workdirs) == 1 and jax.process_count() == 1:
        return {}
    mesh = group.run_mesh(len(workdirs))
    facts = {"runs": [os.path.abspath(workdir) for workdir in workdirs], "size": len(workdirs), "devices": 1 if mesh is None else mesh.size}
    if jax.process_count() > 1:
        facts["process"] = {"index": jax.process_index(), "count": jax.process_count(), "host": socket.gethostname()}
    return {"group": facts}


RETRAIN = "train in a new workdir"  # the way out when a run's workdir was trained on other data


def check_same_data(workdir: str, identity: dict, remedy: str) -> None:
    """DataError if the run in `workdir` trained on other data than `identity` names (other files under one name): a
    resume, a shared stage or an evaluation would mix them silently. `remedy`: the other way out the message offers.
    A workdir whose training recorded no checksums (before they were) gets a warning; this run records them."""
    trained = provenance.trained_data(workdir)
    if trained is None:
        if provenance.read_segments(workdir):
            logging.warning("%s recorded no data checksums (trained before they were); not checked: %s", workdir, data.describe(identity))
        return
    if trained.get("checksums") != identity.get("checksums"):
        raise DataError(
            f"{workdir} was trained on {data.describe(trained)}, but the data now read are {data.describe(identity)}; "
            f"point BITNET_MNIST_DIR or config.data.source_dir at the data it was trained on, or {remedy}"
        )


def check_finished(stage: plan.Stage) -> None:
    """ConfigError unless `stage` has trained all its epochs in its source workdir (read holding that workdir's lock
    shared, so it is not being written): an unfinished stage 1 would give stage 2 a worse start, with no error."""
    meta = checkpoints.latest_meta(stage.source_workdir, stage.name)
    epoch = 0 if meta is None else int(meta["epoch"])
    if epoch < stage.epochs:
        raise ConfigError(
            f"config.stage2.stage1_workdir={stage.source_workdir}: its {stage.name} stage is not finished ({epoch} of "
            f"{stage.epochs} epochs); finish it first: python -m experiments.train --config=configs/workdir.py:{stage.source_workdir} "
            f"--workdir={stage.source_workdir}"
        )


def finished_variables(stage: plan.Stage, input_size: int, identity: dict) -> dict:
    """The best variables of a stage finished in another workdir (a shared stage 1), on the same data as this run."""
    with workdir_lock.shared(stage.source_workdir):
        check_finished(stage)
        check_same_data(stage.source_workdir, identity, "share a stage 1 trained on these data")
        return loop.stage_variables(stage, stage.source_workdir, input_size)


def load_dataset(inputs: plan.Inputs) -> Dataset:
    """Load the train/validation splits and encode them once, onto the device, with the run's encoding."""
    encoding = configuration.encoding_of(inputs)
    splits = data.load_splits(**inputs.data_kwargs())
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


def _write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as file:
        file.write(text)
    os.replace(path + ".tmp", path)
