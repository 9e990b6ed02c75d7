"""Every field of a stage block (config.stage1, config.stage2), declared once.

An `Option` has its name, type, default (per stage where they differ), the comment configs/default.py
shows, the value an older config.json without it meant (`before`; fields present from the start have
none), where the stage plan puts it (`part`), and its allowed values: the keys of the registry that
implements it (`choices`), so a name that passes the check always has an implementation, or a
constraint (`check`, a message when a value cannot work). From these follow:

    configuration.check           the type, the allowed values and the constraint of every field
                                  (and that a stage block holds no other field: plan.config_fields)
    configuration.ADDED_FIELDS    the upgrade of older config.json files (`before`)
    plan.Stage / Hyperparameters  their option fields, and plan.plan filling them
    configs/default.py            both stage blocks (`stage_block`) and the listing of every field with its
                                  comment (`listing`, kept current by tests/test_options.py)

Adding an option is one `Option` here and the code that uses it (a `part="hyper"` or `"stage"` option
arrives in every Stage as `stage.hyper.<name>` or `stage.<name>`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Collection

import ml_collections

from bitnet.core import quantizers
from bitnet.training import steps

STAGES = ("stage1", "stage2")
PARTS = ("stage", "hyper", "plan")  # a Stage field | a Stage.hyper field | read by plan.plan itself (stage 2's start, lambda, the STE)
_ALWAYS = object()  # `before` of a field present since the first workdirs


@dataclasses.dataclass(frozen=True)
class Option:
    """One field of a stage block."""

    name: str
    kind: type  # int | float | str
    default: Any
    comment: str = ""
    part: str = "stage"  # see PARTS
    stage2_default: Any = _ALWAYS  # stage 2's default where it differs
    before: Any = _ALWAYS  # the value that behaves as the code did before the field existed
    choices: Callable[[], Collection[str]] | None = None  # the registry whose keys are the allowed values
    check: Callable[[Any, ml_collections.ConfigDict], str | None] | None = None  # a message if the value cannot work
    only: str = ""  # "stage2": a field of stage 2's block only
    label: str = ""  # its name in messages, where it differs

    def default_of(self, stage: str) -> Any:
        return self.stage2_default if stage == "stage2" and self.stage2_default is not _ALWAYS else self.default

    @property
    def added(self) -> bool:
        return self.before is not _ALWAYS


def _integer_at_least(low: int) -> Callable:
    return lambda value, block: None if value >= low else f"must be an integer >= {low}"


def _finite_at_least(low: float) -> Callable:
    return lambda value, block: None if math.isfinite(value) and value >= low else f"must be a finite number >= {low:g}"


def _at_least(low: float, note: str) -> Callable:
    return lambda value, block: None if math.isfinite(value) and value >= low else f"must be >= {low:g}{note}"


def _fraction(value, block) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


OPTIONS: tuple[Option, ...] = (
    Option("init", str, "stage1", "stage1: start from stage 1 (the paper) | random: no weight compression", part="plan",
           choices=lambda: _plan().STAGE2_INITS, only="stage2"),
    Option("stage1_workdir", str, "", "reuse the finished stage 1 of another workdir (same data/model/stage1)", part="plan", only="stage2"),
    Option("epochs", int, 60, "stage 1: a better stage 1 is the main lever for the bitwise net", stage2_default=40, check=_integer_at_least(1)),
    Option("batch_size", int, 100, check=_integer_at_least(1)),
    Option("optimizer", str, "adam", "adam | adamw | sgd (momentum 0.9)", choices=lambda: steps.OPTIMIZERS),
    Option("learning_rate", float, 1e-3, "stage 2: shadow weights are small, large steps flip many signs", part="hyper", stage2_default=3e-4,
           check=lambda value, block: None if math.isfinite(value) and value > 0 else "must be a finite number > 0"),
    Option("schedule", str, "cosine", "cosine | constant | exponential | step (after warmup, over the stage)", choices=lambda: steps.SCHEDULES,
           check=lambda value, block: "needs final_learning_rate > 0 (the rate at the last step), got 0"
           if value == "exponential" and block.final_learning_rate <= 0 else None),
    Option("final_learning_rate", float, 0.0, "cosine, exponential: the rate at the last step (exponential: > 0)", part="hyper", before=0.0,
           check=lambda value, block: None if 0 <= value <= block.learning_rate else f"must be in [0, learning_rate={block.learning_rate}]"),
    Option("decay_factor", float, 0.5, "step: the rate is multiplied by this every decay_every_epochs epochs", part="hyper", before=0.5,
           check=lambda value, block: None if 0 < value <= 1 else "must be in (0, 1]"),
    Option("decay_every_epochs", int, 40, part="hyper", before=40, check=_integer_at_least(1)),
    Option("warmup_epochs", int, 0, check=lambda value, block: None if 0 <= value < block.epochs else "must be in [0, epochs)"),
    Option("weight_decay", float, 0.0, "adamw only", part="hyper", check=_finite_at_least(0)),
    Option("dropout_rate", float, 0.2, "hidden activations", part="hyper", check=_fraction),
    Option("input_dropout_rate", float, 0.1, part="hyper", check=_fraction),
    Option("max_shift", int, 0, ">0: shift training images by up to this many pixels (not in the paper)", before=0,
           check=lambda value, block: None if 0 <= value <= 8 else "must be an integer number of pixels in [0, 8]"),
    Option("select", str, "best", "the state it hands on and ends with: best (lowest validation error) | last (its final "
           "state: the final fit, with data.validation_size = 0)", before="best", choices=lambda: _plan().SELECTIONS),
    Option("eval_every_epochs", int, 1, "validate (best-model candidates) every N epochs and after the last; never by seconds",
           before=1, check=_integer_at_least(1)),
    Option("checkpoint_every_epochs", int, 1, "save the latest state every N epochs (and after the last)", before=1, check=_integer_at_least(1)),
    Option("checkpoint_every_seconds", float, 0.0, "also at an epoch's end once this long after the last save (0: off)", before=0.0,
           check=_at_least(0, " (0: by epochs only)")),
    Option("loss", str, "cross_entropy", "cross_entropy (softmax) | squared_hinge (BinaryNet's, +-1 targets)", before="cross_entropy",
           choices=lambda: steps.LOSSES),
    Option("layer_lr_scale", str, "fan_in", "kernel updates of layers wider than 1024 times 1024/fan_in (1 up to 1024); glorot: 1/H "
           "(BinaryNet); none", before="none", choices=lambda: steps.LAYER_LR_SCALES),
    Option("clip_weights", float, 0.0, "> 0: clip kernels to [-c, c] after every update (0: off)", part="hyper", before=0.0,
           check=_at_least(0, " (0: no clipping)")),
    Option("clip_unit", str, "absolute", "glorot: c is in units of each kernel's H (BinaryNet's H=\"Glorot\")", before="absolute",
           choices=lambda: steps.CLIP_UNITS),
    Option("sparsity", float, 0.0, "lambda: fraction of each layer's weights set to 0", part="plan", label="sparsity (lambda)",
           check=lambda value, block: None if 0 <= value < 1 else "must be in [0, 1); 0 gives pure +-1 weights", only="stage2"),
    Option("surrogate", str, "hard_tanh", "STE backward: hard_tanh | identity | tanh", part="plan",
           choices=lambda: quantizers.SURROGATES, only="stage2"),
)


def _plan():
    from bitnet.training import plan  # late: plan builds its Stage from these declarations

    return plan


def of_stage(stage: str) -> tuple[Option, ...]:
    """The options of config.<stage>'s block, in declaration order."""
    return tuple(option for option in OPTIONS if option.only in ("", stage))


def of_part(part: str) -> tuple[Option, ...]:
    """The options that land in one part of a Stage (PARTS)."""
    return tuple(option for option in OPTIONS if option.part == part)


def problem(option: Option, value: Any, block: ml_collections.ConfigDict) -> str | None:
    """What is wrong with `value` for `option` in a stage `block`, as the end of a one-line message; None if it can work."""
    if option.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return "must be an integer"
    if option.kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "must be a number"
    if option.kind is str and not isinstance(value, str):
        return "must be a string"
    if option.choices is not None and value not in option.choices():
        return f"is unknown; use one of {list(option.choices())}"
    return None if option.check is None else option.check(value, block)


def added_fields() -> dict[str, Any]:
    """{"stage1.loss": "cross_entropy", ...}: each added field's value that behaves as the code did before it."""
    return {f"{stage}.{option.name}": option.before for stage in STAGES for option in of_stage(stage) if option.added}


def stage_block(stage: str) -> ml_collections.ConfigDict:
    """config.<stage>: every option of the stage at its default (configs/default.py)."""
    return ml_collections.ConfigDict({option.name: option.default_of(stage) for option in of_stage(stage)})


def listing(stage: str) -> list[str]:
    """configs/default.py's comment lines for config.<stage>: `name = default  # comment` for each of its options
    (stage 2: those whose default differs from stage 1's, and its own)."""
    lines = []
    for option in of_stage(stage):
        if stage != STAGES[0] and not option.only and option.default_of(stage) == option.default_of(STAGES[0]):
            continue
        line = f"    #   {option.name} = {option.default_of(stage)!r}"
        lines.append(f"{line:<48}  # {option.comment}" if option.comment else line)
    return lines


def with_listings(text: str) -> str:
    """`text` (configs/default.py) with each `# <options:STAGE>` ... `# </options:STAGE>` block holding `listing(STAGE)`."""
    for stage in STAGES:
        start, end = f"    # <options:{stage}>\n", f"    # </options:{stage}>\n"
        if start not in text or end not in text:
            raise ValueError(f"no '# <options:{stage}>' ... '# </options:{stage}>' block to fill")
        head, rest = text.split(start, 1)
        text = head + start + "".join(line + "\n" for line in listing(stage)) + end + rest.split(end, 1)[1]
    return text
