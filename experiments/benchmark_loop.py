"""Training-loop speed: the compiled chunk of steps (bitnet.training.loop) against a Python loop of jitted steps.

    python -m experiments.benchmark_loop                         # smoke and paper MLP, bitwise stage, batch 100
    python -m experiments.benchmark_loop --models=paper --steps=200 --rounds=7

Both run the same stage (configs/default.py with the model's hidden sizes, stage 2: bitwise STE,
dropout, Adam) on random +-1 data resident on the device, over the same rows of one epoch's batch
order, in one process:

    python loop   the loop before chunks: per step, the host takes a row of the order, folds the
                  step into the stage key and calls the jitted step (`steps.make_train_step`)
    chunk         one call of `steps.make_train_chunk` for all the steps (a device loop)

After a first call of each (compilation; its time is reported), rounds alternate the two, so load from other processes
hits both alike; each time ends with `block_until_ready`. Both must end in the same state, bit for
bit (checked). The last line of output is one JSON object with every number.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bitnet.input import data
from bitnet.training import plan, steps
from configs import default

_MODELS = flags.DEFINE_list("models", ["smoke", "paper"], "MLPs: smoke (784-256-256-10), paper (784-1024x3-10).")
_STEPS = flags.DEFINE_integer("steps", 100, "Steps per timed call.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed calls of each loop (alternating).")

MODELS = {"smoke": (256, 256), "paper": (1024, 1024, 1024)}
NUM_TRAIN = 10000


def bitwise_stage(hidden: tuple[int, ...]) -> plan.Stage:
    config = default.get_config()
    config.model.hidden_sizes = hidden
    return plan.plan(config)[-1]


def time_loops(hidden: tuple[int, ...], num_steps: int, rounds: int) -> dict:
    """Seconds per step of both loops over `num_steps` steps: median and spread of `rounds` calls each."""
    stage = bitwise_stage(hidden)
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(np.where(rng.random((NUM_TRAIN, 784)) < 0.5, 1.0, -1.0), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, NUM_TRAIN), jnp.int32)
    steps_per_epoch = NUM_TRAIN // stage.batch_size
    order = jnp.asarray(data.batch_indices(stage.seed, 1, NUM_TRAIN, stage.batch_size))
    model = steps.make_model(stage)
    optimizer = steps.make_optimizer(stage, steps.make_schedule(stage, steps_per_epoch))
    key = steps.stage_key(stage)
    state = steps.init_state(model, optimizer, key, inputs[:1])
    train_step, train_chunk = steps.make_train_step(model, optimizer), steps.make_train_chunk(model, optimizer)
    num_steps = min(num_steps, steps_per_epoch)

    def python_loop(state):
        for row in range(num_steps):
            state = train_step(state, inputs, labels, order[row], jax.random.fold_in(key, row))
        return state

    def chunk(state):
        return train_chunk(state, inputs, labels, order, 0, num_steps, key)

    loops = {"python loop": python_loop, "chunk": chunk}
    ends, first_call = {}, {}
    for name, loop in loops.items():  # compile and warm up
        start = time.perf_counter()
        ends[name] = jax.block_until_ready(loop(state))
        first_call[name] = time.perf_counter() - start
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ends["python loop"]), jax.tree.leaves(ends["chunk"])))
    if not same:
        raise AssertionError("the chunk and the Python loop end in different states")
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            jax.block_until_ready(loop(state))
            times[name].append((time.perf_counter() - start) / num_steps)
    result = {
        name: {"median_step_s": statistics.median(values), "min_step_s": min(values), "max_step_s": max(values), "first_call_s": first_call[name]}
        for name, values in times.items()
    }
    result["chunk_over_python_loop"] = result["chunk"]["median_step_s"] / result["python loop"]["median_step_s"]
    result["steps"] = num_steps
    result["bit_identical"] = same
    return result


def main(argv):
    del argv
    results = {"device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(), "load_1min_at_start": os.getloadavg()[0], "models": {}}
    for name in _MODELS.value:
        entry = time_loops(MODELS[name], _STEPS.value, _ROUNDS.value)
        results["models"][name] = entry
        print(
            f"{name} MLP {MODELS[name]}, bitwise stage, batch 100, {entry['steps']} steps per call: "
            + ", ".join(f"{loop} {entry[loop]['median_step_s'] * 1e3:.3f} ms/step ({entry[loop]['min_step_s'] * 1e3:.3f}-{entry[loop]['max_step_s'] * 1e3:.3f})" for loop in ("python loop", "chunk"))
            + f"; chunk / python loop = {entry['chunk_over_python_loop']:.2f}x; first call (compilation + {entry['steps']} steps): "
            + ", ".join(f"{loop} {entry[loop]['first_call_s']:.2f} s" for loop in ("python loop", "chunk"))
            + f"; same final state: {entry['bit_identical']}",
            flush=True,
        )
    results["load_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
