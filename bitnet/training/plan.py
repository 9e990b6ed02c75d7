"""The stage plan: a config turned into the explicit list of stages a run trains, in order.

    run_kind float    [float]                  one real-valued stage (config.stage1)
    run_kind bitwise  [compressed, bitwise]    stage 1, weight compression (config.stage1), then
                                               stage 2, noisy backprop (config.stage2), started from
                                               stage 1's best parameters (the paper), at random
                                               (stage2.init=random), and with stage 1 taken as
                                               finished from another workdir (stage2.stage1_workdir)

This is where a config is resolved, once (`resolve`): a `Run` holds the stages, the `Inputs` (the
data and the encoding) and the config's record for config.json; the step, the loop, the run pipeline
below it and evaluation receive these plain typed values and never read the config or branch on a
mode to pick settings. A stage's settings are split by what they are to a compiled step:
`Network` (shapes and structure: static), `Hyperparameters` (numbers a step could take as traced
inputs, one per run when runs of a sweep train stacked) and the stage's loop settings; the option
fields of the last two are generated from their declarations (bitnet.training.options).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from bitnet.training import options

# fold_in(key(seed), salt) is a stage's key (parameters, dropout). Frozen numbers: they equal the
# position of each mode in models.MODES when workdirs were first written, so those workdirs resume
# bit for bit; reordering MODES changes nothing.
SALTS = {"float": 0, "compressed": 1, "bitwise": 2}

RANDOM = "random"  # parameters initialised from the stage's key
PREVIOUS = "previous"  # the previous stage's best-by-validation parameters
FINISHED = "finished"  # not trained here: the finished stage of `source_workdir` is used as it is
STARTS = (RANDOM, PREVIOUS, FINISHED)
# config.stageN.select -> the checkpoint whose state a stage hands on to the next and ends with: the lowest validation
# error's (model selection on the validation split) or the last epoch's (the final fit: no split chooses anything)
SELECTIONS = {"best": "best", "last": "latest"}
STAGE2_INITS = {"stage1": PREVIOUS, "random": RANDOM}  # config.stage2.init -> how stage 2 starts (unless shared)
# config.run_kind -> its stages: (config block, mode)
RUN_KINDS = {"float": (("stage1", "float"),), "bitwise": (("stage1", "compressed"), ("stage2", "bitwise"))}

# The config's fields outside the stage blocks, by block ("": the top level): every one `resolve` reads. The stage
# blocks' are their options (bitnet.training.options); `config_fields` joins the two, and a config holding any
# other field is refused (bitnet.training.configuration.check), so a misspelled name never trains at a default.
FIELDS = {
    "": ("seed", "run_kind", "encoding", "encoding_thresholds", "eval_batch_size"),
    "data": ("name", "source_dir", "data_dir", "validation_size", "train_subset", "test_subset"),
    "model": ("hidden_sizes", "num_classes", "activation", "batch_norm"),
}


def config_fields() -> dict[str, tuple[str, ...]]:
    """Every field of a config, by block ("": the top level, which also holds the blocks): FIELDS and the options."""
    stages = {stage: tuple(option.name for option in options.of_stage(stage)) for stage in options.STAGES}
    blocks = {**{block: names for block, names in FIELDS.items() if block}, **stages}
    return {"": FIELDS[""] + tuple(blocks), **blocks}


@dataclasses.dataclass(frozen=True)
class Network:
    """The MLP of a stage: shapes and structure, fixed for a compiled step."""

    hidden_sizes: tuple[int, ...]
    num_classes: int
    mode: str  # float | compressed | bitwise (bitnet.core.models)
    activation: str  # float mode only
    surrogate: str  # bitwise mode only: the STE backward
    batch_norm: bool = False  # batch norm of each hidden layer's pre-activation (bitnet.core.models)


def _option_fields(part: str) -> list[tuple]:
    return [(option.name, option.kind, dataclasses.field(default=option.default)) for option in options.of_part(part)]


# A stage's numbers that could become traced inputs of the step (they change no shape): lambda (the
# fraction of each bitwise layer's weights set to 0; 0 in other stages) and the options of part "hyper".
Hyperparameters = dataclasses.make_dataclass(
    "Hyperparameters", [("sparsity", float, dataclasses.field(default=0.0))] + _option_fields("hyper"), frozen=True,
)
Hyperparameters.__doc__, Hyperparameters.__module__ = "A stage's numbers that could become traced inputs of the step (lambda and the options of part 'hyper').", __name__

# One stage of a run: what it trains, how it starts (its name: checkpoints/<name>/ and the "stage" of its
# metric lines; field: the config block of its settings; salt: see SALTS; seed: config.seed, from which
# parameters, dropout keys and data order derive; start: see STARTS; source_workdir: with start FINISHED,
# the workdir whose finished stage it is), its network, its hyperparameters, the evaluation batch, and
# the options of part "stage" (bitnet.training.options).
Stage = dataclasses.make_dataclass(
    "Stage",
    [("name", str), ("field", str), ("salt", int), ("seed", int), ("start", str), ("source_workdir", str),
     ("network", Network), ("hyper", Hyperparameters), ("eval_batch_size", int)] + _option_fields("stage"),
    frozen=True,
)
Stage.__doc__, Stage.__module__ = "One stage of a run: what it trains, how it starts, and its settings (bitnet.training.options).", __name__


def _stage(config: ml_collections.ConfigDict, field: str, mode: str, start: str, source_workdir: str = "") -> Stage:
    settings = config[field]
    return Stage(
        name=mode,
        field=field,
        salt=SALTS[mode],
        seed=int(config.seed),
        start=start,
        source_workdir=source_workdir,
        network=Network(
            hidden_sizes=tuple(int(size) for size in config.model.hidden_sizes),
            num_classes=int(config.model.num_classes),
            mode=mode,
            activation=str(config.model.activation),
            surrogate=str(config.stage2.surrogate),
            batch_norm=bool(config.model.batch_norm),
        ),
        hyper=Hyperparameters(sparsity=float(config.stage2.sparsity) if mode == "bitwise" else 0.0, **_values(settings, field, "hyper")),
        eval_batch_size=int(config.eval_batch_size),
        **_values(settings, field, "stage"),
    )


def _values(settings: ml_collections.ConfigDict, field: str, part: str) -> dict:
    """The values of a stage block's options of one part (an option of another stage's block only: its default)."""
    return {option.name: option.kind(settings[option.name] if option.name in settings else option.default_of(field))
            for option in options.of_part(part)}


def plan(config: ml_collections.ConfigDict) -> tuple[Stage, ...]:
    """The stages of a (checked) config, in training order: RUN_KINDS[config.run_kind]. The first starts at random
    (or, finished, from config.stage2.stage1_workdir's), a later one as STAGE2_INITS[config.stage2.init] says."""
    shared = config.stage2.get("stage1_workdir", "") if config.run_kind == "bitwise" else ""
    stages = []
    for index, (field, mode) in enumerate(RUN_KINDS[config.run_kind]):
        if index == 0:
            stages.append(_stage(config, field, mode, FINISHED if shared else RANDOM, shared))
        else:
            stages.append(_stage(config, field, mode, STAGE2_INITS[config.stage2.init]))
    return tuple(stages)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The data a run reads and how its images are encoded: config.data and config.encoding resolved ("" and 0
    unset; the cache folder from $BITNET_DATA_DIR when the config names none)."""

    name: str
    source_dir: str | None
    data_dir: str | None
    validation_size: int
    train_subset: int | None
    test_subset: int | None
    encoding: str
    encoding_thresholds: tuple[float, ...]

    def data_kwargs(self) -> dict[str, Any]:
        """Arguments of `bitnet.input.data.load_splits`: the fields of config.data, resolved."""
        return {name: getattr(self, name) for name in FIELDS["data"]}


@dataclasses.dataclass(frozen=True)
class Run:
    """A config resolved once (`resolve`): what the pipeline below the plan reads instead of the config."""

    stages: tuple[Stage, ...]
    inputs: Inputs
    record: dict = dataclasses.field(compare=False, hash=False)  # the config as config.json holds it (plain JSON values)


def inputs(config: ml_collections.ConfigDict) -> Inputs:
    data = config.data
    return Inputs(
        name=str(data.name),
        source_dir=data.source_dir or None,
        data_dir=data.data_dir or os.environ.get("BITNET_DATA_DIR") or None,
        validation_size=int(data.validation_size),
        train_subset=int(data.train_subset) or None,
        test_subset=int(data.test_subset) or None,
        encoding=str(config.encoding),
        encoding_thresholds=tuple(float(value) for value in config.encoding_thresholds),
    )


def resolve(config: ml_collections.ConfigDict) -> Run:
    """The stages, the inputs and the record of a (checked) config."""
    return Run(stages=plan(config), inputs=inputs(config), record=json.loads(config.to_json()))


def binarized_stage(stages: tuple[Stage, ...]) -> Stage | None:
    """The stage whose best parameters become the packed XNOR-popcount model (a bitwise last stage)."""
    return stages[-1] if stages[-1].network.mode == "bitwise" else None


def stage_workdir(stage: Stage, workdir: str) -> str:
    """Where a stage's checkpoints are: its source workdir if it was finished elsewhere, else this one."""
    return stage.source_workdir if stage.start == FINISHED else workdir
