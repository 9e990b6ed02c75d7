"""The stage plan: a config turned into the explicit list of stages a run trains, in order.

    run_kind float    [float]                  one real-valued stage (config.stage1)
    run_kind bitwise  [compressed, bitwise]    stage 1, weight compression (config.stage1), then
                                               stage 2, noisy backprop (config.stage2), started from
                                               stage 1's best parameters (the paper), at random
                                               (stage2.init=random), and with stage 1 taken as
                                               finished from another workdir (stage2.stage1_workdir)

This is the only place that reads stage settings out of a config: the step, the loop, the run
pipeline and evaluation receive a `Stage` (plain typed values) and never branch on a mode to pick
settings. A stage's settings are split by what they are to a compiled step:
`Network` (shapes and structure: static), `Hyperparameters` (numbers a step could take as traced
inputs, one per run when runs of a sweep train stacked) and the stage's loop settings.
"""

from __future__ import annotations

import dataclasses

import ml_collections

# fold_in(key(seed), salt) is a stage's key (parameters, dropout). Frozen numbers: they equal the
# position of each mode in models.MODES when workdirs were first written, so those workdirs resume
# bit for bit; reordering MODES changes nothing.
SALTS = {"float": 0, "compressed": 1, "bitwise": 2}

RANDOM = "random"  # parameters initialised from the stage's key
PREVIOUS = "previous"  # the previous stage's best-by-validation parameters
FINISHED = "finished"  # not trained here: the finished stage of `source_workdir` is used as it is
STARTS = (RANDOM, PREVIOUS, FINISHED)


@dataclasses.dataclass(frozen=True)
class Network:
    """The MLP of a stage: shapes and structure, fixed for a compiled step."""

    hidden_sizes: tuple[int, ...]
    num_classes: int
    mode: str  # float | compressed | bitwise (bitnet.core.models)
    activation: str  # float mode only
    surrogate: str  # bitwise mode only: the STE backward
    batch_norm: bool = False  # batch norm of each hidden layer's pre-activation (bitnet.core.models)


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """A stage's numbers that could become traced inputs of the step (they change no shape)."""

    learning_rate: float
    weight_decay: float  # adamw only
    dropout_rate: float
    input_dropout_rate: float
    sparsity: float  # lambda: fraction of each bitwise layer's weights set to 0
    final_learning_rate: float = 0.0  # cosine / exponential: the rate the decay reaches at the stage's last step
    decay_factor: float = 0.5  # step schedule: the rate is multiplied by this ...
    decay_every_epochs: int = 40  # ... every this many epochs
    clip_weights: float = 0.0  # > 0: kernels clipped to [-c, c] after every update (c in clip_unit); 0: off


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run: what it trains, how it starts, and its settings."""

    name: str  # checkpoints/<name>/ and the "stage" of its metric lines
    field: str  # the config field of its settings (stage1 | stage2), for messages
    salt: int  # see SALTS
    seed: int  # config.seed: parameters, dropout keys and data order derive from it
    start: str  # see STARTS
    source_workdir: str  # start == FINISHED: the workdir whose finished stage this is; else ""
    network: Network
    hyper: Hyperparameters
    epochs: int
    batch_size: int
    optimizer: str  # adam | adamw | sgd
    schedule: str  # cosine | constant | exponential | step (bitnet.training.steps.make_schedule)
    warmup_epochs: int
    max_shift: int  # random shifts of the training images, in pixels (0: none)
    eval_batch_size: int
    eval_every_epochs: int  # validate (and maybe save the best) every N epochs, and after the last
    checkpoint_every_epochs: int  # save the latest state every N epochs, and after the last
    checkpoint_every_seconds: float  # ... and at the end of an epoch T seconds after the last save (0: off)
    loss: str = "cross_entropy"  # cross_entropy | squared_hinge (bitnet.training.steps.LOSSES)
    layer_lr_scale: str = "none"  # none | glorot (times 1/H) | fan_in (times 1024/fan_in but the input layer): bitnet.training.steps
    clip_unit: str = "absolute"  # absolute | glorot: clip_weights is a value, or a multiple of each kernel's H


def _stage(config: ml_collections.ConfigDict, field: str, mode: str, start: str, source_workdir: str = "") -> Stage:
    settings = config[field]
    bitwise = mode == "bitwise"
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
        hyper=Hyperparameters(
            learning_rate=float(settings.learning_rate),
            weight_decay=float(settings.weight_decay),
            dropout_rate=float(settings.dropout_rate),
            input_dropout_rate=float(settings.input_dropout_rate),
            sparsity=float(config.stage2.sparsity) if bitwise else 0.0,
            final_learning_rate=float(settings.final_learning_rate),
            decay_factor=float(settings.decay_factor),
            decay_every_epochs=int(settings.decay_every_epochs),
            clip_weights=float(settings.clip_weights),
        ),
        epochs=int(settings.epochs),
        batch_size=int(settings.batch_size),
        optimizer=str(settings.optimizer),
        schedule=str(settings.schedule),
        warmup_epochs=int(settings.warmup_epochs),
        max_shift=int(settings.max_shift),
        eval_batch_size=int(config.eval_batch_size),
        eval_every_epochs=int(settings.eval_every_epochs),
        checkpoint_every_epochs=int(settings.checkpoint_every_epochs),
        checkpoint_every_seconds=float(settings.checkpoint_every_seconds),
        loss=str(settings.loss),
        layer_lr_scale=str(settings.layer_lr_scale),
        clip_unit=str(settings.clip_unit),
    )


def plan(config: ml_collections.ConfigDict) -> tuple[Stage, ...]:
    """The stages of a (checked) config, in training order."""
    if config.run_kind == "float":
        return (_stage(config, "stage1", "float", RANDOM),)
    shared = config.stage2.get("stage1_workdir", "")
    stage1 = _stage(config, "stage1", "compressed", FINISHED if shared else RANDOM, shared)
    stage2 = _stage(config, "stage2", "bitwise", RANDOM if config.stage2.init == "random" else PREVIOUS)
    return (stage1, stage2)


def binarized_stage(stages: tuple[Stage, ...]) -> Stage | None:
    """The stage whose best parameters become the packed XNOR-popcount model (a bitwise last stage)."""
    return stages[-1] if stages[-1].network.mode == "bitwise" else None


def stage_workdir(stage: Stage, workdir: str) -> str:
    """Where a stage's checkpoints are: its source workdir if it was finished elsewhere, else this one."""
    return stage.source_workdir if stage.start == FINISHED else workdir
