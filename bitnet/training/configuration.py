"""Config checks and the workdir's config.json: every bad field is refused before any work starts.

A workdir belongs to one config: starting a run whose config differs from WORKDIR/config.json
names the differing fields and stops, unless the caller asks to overwrite.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from typing import Any

import ml_collections
from absl import logging

from bitnet.core import encodings, models
from bitnet.errors import ConfigError  # defined with the other user errors; still importable from here
from bitnet.training import options, plan, steps
from bitnet.workdir import replaced


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def encoding_of(inputs: plan.Inputs) -> encodings.Encoding:
    """The encoding a run's inputs name; ConfigError if there is none of that name."""
    try:
        return encodings.get_encoding(inputs.encoding, inputs.encoding_thresholds or None)
    except ValueError as error:
        raise ConfigError(f"config.encoding: {error}") from None


def unknown_field(config: ml_collections.ConfigDict) -> str | None:
    """The dotted name of the first field of `config` that is not a config field (plan.config_fields), or None.
    ConfigDicts take any new key, so a misspelled field in a config file would otherwise train at its default."""
    known = plan.config_fields()
    for key in config.keys():
        if key not in known[""]:
            return key
        if key in known and isinstance(config[key], ml_collections.ConfigDict):
            unknown = next((name for name in config[key].keys() if name not in known[key]), None)
            if unknown is not None:
                return f"{key}.{unknown}"
    return None


def closest_field(dotted: str) -> str | None:
    """The config field a name that is none was meant to be (difflib): the closest in its block, else the same name
    in another block (stage1.sparsity -> stage2.sparsity); None if no field is close."""
    known = plan.config_fields()
    block, _, name = dotted.rpartition(".")
    close = difflib.get_close_matches(name, known.get(block, ()), n=1)
    if close:
        return f"{block}.{close[0]}" if block else close[0]
    return next((f"{other}.{name}" for other, names in known.items() if other and name in names), None)


def not_a_field(dotted: str, fix: str) -> str:
    """The one-line message for config.<dotted>, not a config field; `fix` names where to fix it."""
    closest = closest_field(dotted)
    hint = f"did you mean config.{closest}?" if closest else "configs/default.py lists every field"
    return f"config.{dotted} is not a config field; {hint} ({fix})"


def check(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first field that cannot work, and how to fix it."""
    unknown = unknown_field(config)
    if unknown is not None:
        raise ConfigError(not_a_field(unknown, "fix the config file"))
    _require(config.run_kind in plan.RUN_KINDS, f"config.run_kind={config.run_kind!r} is unknown; use one of {list(plan.RUN_KINDS)}")
    encoding = encoding_of(plan.inputs(config))
    _require(
        config.run_kind == "float" or encoding.is_binary,
        f"config.encoding={config.encoding!r} is real-valued but a bitwise network needs binary inputs; "
        "use bipolar, binary or fixedK (or run_kind=float)",
    )
    sizes = tuple(config.model.hidden_sizes)
    _require(
        all(isinstance(size, int) and size > 0 for size in sizes),
        f"config.model.hidden_sizes={sizes} must be positive integers",
    )
    _require(config.model.num_classes >= 2, f"config.model.num_classes={config.model.num_classes} must be >= 2")
    _require(
        isinstance(config.model.batch_norm, bool),
        f"config.model.batch_norm={config.model.batch_norm!r} must be True or False",
    )
    _require(
        config.model.activation in models.FLOAT_ACTIVATIONS,
        f"config.model.activation={config.model.activation!r} is unknown; use one of {sorted(models.FLOAT_ACTIVATIONS)}",
    )
    for stage in options.STAGES:
        block = config[stage]
        for option in options.of_stage(stage):
            value = block[option.name]
            problem = options.problem(option, value, block)
            _require(problem is None, f"config.{stage}.{option.label or option.name}={value!r} {problem}")
    _require(config.data.validation_size >= 0, f"config.data.validation_size={config.data.validation_size} must be >= 0")
    if config.data.validation_size == 0:  # the final fit: nothing to select a checkpoint by
        for field, _ in plan.RUN_KINDS[config.run_kind]:
            _require(
                config[field].select == "last",
                f"config.data.validation_size=0 (the final fit) needs config.{field}.select='last': without validation "
                "examples there is no best epoch",
            )
    _require(config.eval_batch_size >= 1, f"config.eval_batch_size={config.eval_batch_size} must be >= 1")


STAGE1_FIELDS = ("seed", "encoding", "encoding_thresholds", "data", "model", "stage1")


def stage1_workdir(record: dict, workdir: str) -> str:
    """The workdir whose stage 1 the run of this config record (`plan.Run.record`) uses: its own, or
    config.stage2.stage1_workdir.

    Sharing one stage 1 between runs that differ only in stage 2 (ablations of lambda, the STE,
    stage-2 schedules) is exact: stage 1 does not read any stage-2 field.
    """
    other = record["stage2"].get("stage1_workdir", "")
    if record["run_kind"] != "bitwise" or not other:
        return workdir
    other_config = config_dict(read_config(other))
    changed = config_differences(
        {key: other_config.get(key) for key in STAGE1_FIELDS}, {key: record.get(key) for key in STAGE1_FIELDS}
    )
    if changed:
        raise ConfigError(
            f"config.stage2.stage1_workdir={other} was trained with another stage-1 setting "
            f"(differs in: {', '.join(changed)}); share stage 1 only between runs that agree on it"
        )
    return other


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"stage1": {"epochs": 60}} -> {"stage1.epochs": 60}."""
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def unflatten(flat: dict[str, Any]) -> dict:
    """The inverse of `flatten`."""
    tree: dict = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


# Fields added after workdirs were first written, with the value that behaves as the code did before
# them: an older config.json without the field matches a config holding that value. The stage fields'
# come from their declarations (bitnet.training.options: `before`).
ADDED_FIELDS = {"model.batch_norm": False, **options.added_fields()}


def layer_lr_scale_is_one(scale: str, hidden_sizes) -> bool:
    """Whether `scale` multiplies every kernel's update by exactly 1 in a net of these hidden sizes (then it is "none"):
    the scaled kernels' fan-ins are the hidden sizes."""
    return scale == "none" or (scale == "fan_in" and all(steps.fan_in_scale(size) == 1.0 for size in hidden_sizes))


def same_run_fields(flat: dict[str, Any]) -> dict[str, Any]:
    """A flat config with the fields added since at their ADDED_FIELDS values where absent, and each
    stage's layer_lr_scale "none" where it multiplies every update by 1 (fan_in up to 1024 units, the
    default since it became one): configs that train exactly alike compare equal."""
    flat = {**ADDED_FIELDS, **flat}
    for stage in ("stage1", "stage2"):
        key = f"{stage}.layer_lr_scale"
        if layer_lr_scale_is_one(flat[key], flat.get("model.hidden_sizes", ())):
            flat[key] = "none"
    return flat


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted names of the fields whose values differ (or exist on one side only) in what they train."""
    flat_old, flat_new = same_run_fields(flatten(old)), same_run_fields(flatten(new))
    return sorted(key for key in flat_old.keys() | flat_new.keys() if flat_old.get(key, "<absent>") != flat_new.get(key, "<absent>"))


def config_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON values (tuples become lists)."""
    return json.loads(config.to_json())


# Keys of config.json that are records about the run, not config fields.
RECORD_KEYS = ("provenance",)


def config_fields(content: dict) -> dict:
    """config.json's content without its records (provenance)."""
    return {key: value for key, value in content.items() if key not in RECORD_KEYS}


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """WORKDIR/config.json, with the fields added since it was written set to their ADDED_FIELDS values."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"{workdir} has no config.json; is it a bitnet workdir? train there first (experiments.train)")
    with open(path) as file:
        stored = flatten(config_fields(json.load(file)))
    return ml_collections.ConfigDict(unflatten({**ADDED_FIELDS, **stored}))


def check_workdir(record: dict, workdir: str, overwrite: bool = False) -> bool:
    """Refuse a config record (`plan.Run.record`) that differs from WORKDIR/config.json (unless overwrite); True if it is
    already there."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return False
    with open(path) as file:
        old = config_fields(json.load(file))
    changed = config_differences(old, record)
    if changed and not overwrite:
        raise ConfigError(
            f"{workdir} holds a run with another config (differs in: {', '.join(changed)}); use a new workdir, or pass "
            f"--overwrite to train what the change touches again (what it replaces moves to {workdir}/{replaced.FOLDER}/)"
        )
    return not changed


def _comparable(inputs: plan.Inputs) -> plan.Inputs:
    """Inputs without the folders they are read from (machine paths): the data's checksums say which data they are."""
    return dataclasses.replace(inputs, source_dir=None, data_dir=None)


def kept_stages(run: plan.Run, workdir: str) -> tuple[str, ...]:
    """The stages of the run in `workdir` that `run` trains alike, so an overwrite keeps their checkpoints: the leading
    stages with the same settings (that stage's and every earlier one's) on the same inputs. () without a run there."""
    try:
        old = plan.resolve(read_config(workdir))
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError):  # none, or one today's code cannot read
        return ()
    if _comparable(old.inputs) != _comparable(run.inputs):
        return ()
    kept = []
    for old_stage, stage in zip(old.stages, run.stages):
        if old_stage != stage:
            break
        kept.append(stage.name)
    return tuple(kept)


def write_or_check(run: plan.Run, workdir: str, overwrite: bool = False) -> None:
    """Write WORKDIR/config.json, or refuse a config that differs from the one already there. With `overwrite`, what
    the old config made beyond the stages the new one keeps moves to WORKDIR/replaced/<time>/ first; the run's
    provenance stays with the kept stages (all gone: it starts as a fresh run)."""
    if check_workdir(run.record, workdir, overwrite):
        return
    path = os.path.join(workdir, "config.json")
    new = dict(run.record)
    kept = kept_stages(run, workdir)
    if os.path.exists(path):
        all_kept = kept == tuple(stage.name for stage in run.stages)  # then every result stays valid: only config.json moves
        folder = replaced.move_aside(workdir, kept, results=not all_kept)
        logging.info("--overwrite: kept the stages %s; moved what the old config made beyond them to %s", list(kept) or "none", folder)
    if kept:
        with open(path) as file:
            new.update({key: value for key, value in json.load(file).items() if key in RECORD_KEYS})
    tmp = path + ".tmp"
    with open(tmp, "w") as file:
        json.dump(new, file, indent=2, sort_keys=True)
    os.replace(tmp, path)
