"""Timing shared by the benchmarks: interleaved medians of jitted calls, and the machine they ran on."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import jax

FLOAT32 = "float32"  # the float32 MLP's (or matmul's) key among timed paths


def interleaved_medians(calls: dict[str, tuple[Callable, tuple]], repeats: int, budget: float) -> dict[str, tuple[float, int]]:
    """Median wall seconds of each `function(*args)` and its number of timed calls.

    After one warm-up call each, the calls take turns (round robin), so load from other processes
    hits all of them alike. At least 3 rounds; then rounds go on up to `repeats` while the time
    spent stays under `budget` seconds per call.
    """
    for function, args in calls.values():
        jax.block_until_ready(function(*args))  # compile and warm up
    times: dict[str, list[float]] = {name: [] for name in calls}
    rounds, spent = 0, 0.0
    while rounds < 3 or (rounds < repeats and spent < budget * len(calls)):
        for name, (function, args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(function(*args))
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
        rounds += 1
    return {name: (statistics.median(values), len(values)) for name, values in times.items()}


def device_info() -> dict[str, Any]:
    """The machine a timing ran on: JAX's device, the CPU's kind (model name and vector instruction set), load."""
    from bitnet.workdir import provenance

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "cpu": provenance.cpu_kind(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "load_average_1min_at_start": os.getloadavg()[0],
    }
