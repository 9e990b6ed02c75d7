"""Sweeps as data: a sweep's runs built from typed axes (in the spirit of Google's hyper.product / hyper.sweep).

A run is a dict of config overrides, {dotted field: value}, plus "name" where its workdir name is not
the default one (bitnet.runs.sweep: the overridden values joined, e.g. bipolar-bitwise-seed0). An axis
is a list of runs; the helpers combine them:

    sweep("seed", (0, 1, 2))           [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    fixed({"stage2.epochs": 10})       [{"stage2.epochs": 10}]: one run, these overrides
    product(axis, other, ...)          every combination, the first axis varying slowest; a field set twice
                                       takes the later axis's value
    chain(axis, other, ...)            the runs of each axis, one after another
    named(template, axis)              each run named template.format(values by their last name part), e.g.
                                       named("long-{encoding}-{run_kind}-seed{seed}", ...)
    config(base, axis)                 a sweep file's get_config(): the base config file and the runs as the
                                       `--config.` override strings experiments.sweep expands

A sweep file is then one get_config() returning config(base, <axes>) with its constants.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

import ml_collections

Run = dict[str, Any]


def sweep(field: str, values: Iterable[Any]) -> list[Run]:
    return [{field: value} for value in values]


def fixed(overrides: dict[str, Any]) -> list[Run]:
    return [dict(overrides)]


def product(*axes: Sequence[Run]) -> list[Run]:
    return [{key: value for run in combination for key, value in run.items()} for combination in itertools.product(*axes)]


def chain(*axes: Sequence[Run]) -> list[Run]:
    return [dict(run) for axis in axes for run in axis]


def named(template: str, axis: Sequence[Run]) -> list[Run]:
    return [{"name": template.format(**{key.rsplit(".", 1)[-1]: value for key, value in run.items()}), **run} for run in axis]


def format_value(value: Any) -> str:
    """A value as a `--config.field=` override writes it: tuples as (a,b,c)."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(format_value(item) for item in value) + ")"
    return str(value)


def override_string(run: Run) -> str:
    """A run as experiments.sweep reads it: "name=...,field=value,..." (the name first)."""
    items = ([("name", run["name"])] if "name" in run else []) + [(key, value) for key, value in run.items() if key != "name"]
    return ",".join(f"{key}={format_value(value)}" for key, value in items)


def config(base: str, axis: Sequence[Run]) -> ml_collections.ConfigDict:
    """A sweep file's config: `base` (a config file, relative to the repository root) and the runs of `axis`."""
    sweep_config = ml_collections.ConfigDict()
    sweep_config.base = base
    sweep_config.runs = tuple(override_string(run) for run in axis)
    return sweep_config
