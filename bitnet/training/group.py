"""K runs in one program: the runs of a sweep that share shapes train as a group, stacked on a run axis.

Runs whose stages agree on everything but the seed and the per-run numbers in `TRACED` (learning
rate, weight decay, dropout rates, lambda) share one compiled chunk: their states (parameters,
optimizer states, epoch totals) are stacked on a leading run axis, and so are their batch orders
and stage keys, so each run's data order and dropout keys are the pure functions of (its seed,
epoch, step) they are when it trains alone. Numbers that differ between the runs are traced
inputs of the chunk, one per run; numbers all runs share stay constants, as in a single run.

The chunk is the single run's (`steps.chunk_function` of `steps.step_function`), mapped over the
run axis in one of two ways (`AXES`):
    vmap   the runs' steps as batched operations: one program step for all K (accelerators)
    map    a loop over the runs inside the program (lax.map): each run's operations exactly as
           alone, so a group ends bit for bit where its runs alone would; on the CPU a batched
           reduction rounds differently (about 1e-8 per step), and vmap gains nothing there
A run marked inactive (diverged, or ahead of the others after a resume) keeps its state.

With several devices visible the run axis is sharded over them (`run_mesh`): each device holds
its shard of the runs' states, values, orders and keys, the training data is on every device, and
each runs the chunk above (vmap or map) on its own runs only (`jax.shard_map`: no communication
between devices inside a chunk). So a run's operations are those of the single-device group on a
smaller batch of runs: with map, bit for bit as on one device. A group of K runs uses min(K, D)
of the D devices, its run axis padded to a multiple of that with inactive copies of the first run
(`spread`), which are never read back (`held_runs`). With one device nothing is sharded or padded.

Over several processes (jax.distributed: hosts, each with its devices) the mesh is every device of
every process, so each process takes part in every chunk; each builds the arrays of its own
devices (`place`: every process loads the data itself, and states of runs it does not hold are
stand-ins of the right shape, never placed), reads back only the runs its devices hold (`holders`)
and writes only their workdirs. The processes agree, at a few points, on what decides the
program they run (`agreed`: a stop, the runs that stopped, the chunk size).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bitnet.core import models, quantizers
from bitnet.input import augmentation
from bitnet.training import plan, steps
from bitnet.training.plan import Stage

TRACED = ("learning_rate", "weight_decay", "dropout_rate", "input_dropout_rate", "sparsity")  # Hyperparameters that may differ
AXES = ("vmap", "map")
RUNS = "runs"  # the mesh axis that the run axis is sharded over


def default_axis() -> str:
    """vmap on accelerators; on the CPU map, which is exact and no slower (BENCHMARKS.md)."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


def traced_fields(stage: Stage) -> tuple[str, ...]:
    """The `TRACED` fields of this stage: all but the learning rate with an exponential schedule (optax tests its decay
    rate final / learning rate in Python)."""
    return tuple(field for field in TRACED if not (field == "learning_rate" and stage.schedule == "exponential"))


def shape_of(stage: Stage) -> Stage:
    """The stage with its seed, source workdir and traced numbers blanked: stages train together when these agree."""
    return dataclasses.replace(stage, seed=0, source_workdir="", hyper=dataclasses.replace(stage.hyper, **dict.fromkeys(traced_fields(stage), 0.0)))


def group_key(run: plan.Run) -> tuple:
    """Runs with equal keys can train as one group: the same data and encoding, and stages that differ only in
    the seed and `TRACED` numbers."""
    return (run.inputs, tuple(shape_of(stage) for stage in run.stages))


def varying(stages: Sequence[Stage]) -> tuple[str, ...]:
    """The traced fields whose values differ between the stages (traced inputs of the group's chunk)."""
    return tuple(field for field in traced_fields(stages[0]) if len({getattr(stage.hyper, field) for stage in stages}) > 1)


def layer_counts(stage: Stage, input_size: int) -> tuple[int, ...]:
    """k = floor(lambda * size) of each layer's kernel, in layer order (quantizers.num_off)."""
    params = steps.abstract_variables(stage, input_size)["params"]
    return tuple(quantizers.num_off(stage.hyper.sparsity, params[name]["kernel"].size) for name in models.layer_names(params))


def per_run_values(stages: Sequence[Stage], input_size: int) -> dict[str, Any]:
    """The varying numbers, stacked on the run axis: float32 [K] each; lambda as int32 [K] counts per layer."""
    values: dict[str, Any] = {}
    for field in varying(stages):
        if field == "sparsity":
            counts = [layer_counts(stage, input_size) for stage in stages]
            values[field] = tuple(jnp.asarray(layer, jnp.int32) for layer in zip(*counts))
        else:
            values[field] = jnp.asarray([getattr(stage.hyper, field) for stage in stages], jnp.float32)
    return values


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of the same structure stacked on a new leading (run) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def take(tree: Any, index: int) -> Any:
    """Run `index`'s pytree of a stacked one."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def unstack(tree: Any) -> list[Any]:
    """The per-run pytrees of a stacked one."""
    return [take(tree, index) for index in range(len(jax.tree.leaves(tree)[0]))]


def run_mesh(num_runs: int) -> Mesh | None:
    """The mesh a group of `num_runs` runs is sharded over: min(K, D) of the D visible devices, on
    the axis RUNS; None with one (nothing to shard, so a single device runs exactly the unsharded program).
    Over several processes every device of every process (each process must take part in every chunk)."""
    devices = jax.devices() if jax.process_count() > 1 else jax.devices()[:num_runs]
    return Mesh(np.array(devices), (RUNS,)) if len(devices) > 1 else None


def join_processes(coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Make this process one of the processes of a group over several hosts (`jax.distributed.initialize`, before
    anything touches a device): from SLURM's or a TPU VM's environment, or the arguments where none says them.
    A process uses every GPU it sees (JAX's default under SLURM is one process per GPU; here one per node)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    local = list(range(len(visible.split(",")))) if visible and "JAX_LOCAL_DEVICE_IDS" not in os.environ else None
    jax.distributed.initialize(coordinator_address, num_processes, process_id, local_device_ids=local)


def holders(num_runs: int) -> list[int]:
    """The process whose devices hold each run of a group of `num_runs` (the only one that reads it back and writes
    its workdir): this one for all, unless there are several."""
    mesh = run_mesh(num_runs)
    if mesh is None:
        return [jax.process_index()] * num_runs
    per_device = padded_size(num_runs, mesh) // mesh.size
    return [mesh.devices.flat[run // per_device].process_index for run in range(num_runs)]


def agreed(values: Sequence[int]) -> list[int]:
    """The largest of each value over the processes (a flag set on any process is set): what decides the program
    every process runs, known to all; the values themselves with one process."""
    if jax.process_count() == 1:
        return list(values)
    from jax.experimental import multihost_utils  # late: only several processes need it

    return [int(value) for value in np.max(multihost_utils.process_allgather(np.asarray(values, np.int32)), axis=0)]


def padded_size(num_runs: int, mesh: Mesh | None) -> int:
    """The run axis's length on `mesh`: `num_runs` rounded up to a multiple of its devices (an even split)."""
    devices = 1 if mesh is None else mesh.size
    return -(-num_runs // devices) * devices


def place(tree: Any, sharding: NamedSharding) -> Any:
    """`tree` as global arrays with `sharding`, each process placing the parts its devices hold from its own copy
    (the others' parts of it are never read: stand-ins are fine there, and no process waits for another)."""
    return jax.tree.map(lambda leaf: jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index]), tree)


def spread(stacked: Any, mesh: Mesh | None, filler: Any = None) -> Any:
    """A stacked tree on `mesh`: padded to `padded_size` with copies of run 0 (or `filler`, a one-run tree), and
    sharded on its run axis; unchanged without a mesh."""
    leaves = jax.tree.leaves(stacked)
    if mesh is None or not leaves:  # no values vary: an empty tree
        return stacked
    missing = padded_size(len(leaves[0]), mesh) - len(leaves[0])
    fill = jax.tree.map(lambda leaf: leaf[:1], stacked) if filler is None else stack([filler])
    padded = jax.tree.map(lambda leaf, one: jnp.concatenate([leaf] + [one] * missing), stacked, fill)
    return place(padded, NamedSharding(mesh, PartitionSpec(RUNS)))


def spread_mask(active: Sequence[bool], mesh: Mesh | None) -> jax.Array:
    """The active mask of a group's runs on `mesh`: the padding's fillers inactive, so they never train."""
    return spread(jnp.asarray(active), mesh, filler=jnp.asarray(False))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """A tree every run reads (the training data) on each device of `mesh`, once, not at every chunk; unchanged
    without a mesh."""
    return tree if mesh is None else place(tree, NamedSharding(mesh, PartitionSpec()))


def held_runs(stacked: Any, num_runs: int, mesh: Mesh | None) -> dict[int, Any]:
    """The runs (not the padding) of a stacked tree that this process's devices hold, by index, each on this
    process's first device, where its evaluation and checkpoints happen as on one device; all runs without a mesh."""
    if mesh is None:
        return dict(enumerate(unstack(stacked)))
    leaves, structure = jax.tree.flatten(stacked)
    rows: dict[int, list] = {}
    for number, leaf in enumerate(leaves):
        for shard in leaf.addressable_shards:
            start = shard.index[0].start or 0
            for row in range(min(shard.data.shape[0], num_runs - start)):
                rows.setdefault(start + row, [None] * len(leaves))[number] = shard.data[row]
    home = jax.local_devices()[0]
    return {run: jax.device_put(jax.tree.unflatten(structure, rows[run]), home) for run in sorted(rows)}


def check_compatible(stages: Sequence[Stage]) -> None:
    """ValueError unless the stages can train as one group (they agree on everything but seeds and `TRACED`)."""
    shapes = {shape_of(stage) for stage in stages}
    if len(shapes) > 1:
        first, other = shapes.pop(), shapes.pop()
        fields = [field.name for field in dataclasses.fields(Stage) if getattr(first, field.name) != getattr(other, field.name)]
        raise ValueError(f"stages {stages[0].name} differ in {fields}: they cannot train as one group")


def make_group_chunk(
    stages: Sequence[Stage], steps_per_epoch: int, augment: augmentation.Augment | None = None, axis: str | None = None,
    mesh: Mesh | None = None,
) -> Callable:
    """The jitted chunk of a group: (states, values, active, inputs, labels, orders, start_row, num_steps, keys) -> states.

    states, values (`per_run_values`), active (bool [K]), orders [K, steps_per_epoch, batch] and
    keys (`steps.stage_key` of each run) are stacked on the run axis; the training data, the start
    row and the number of steps are shared. With a `mesh` (`run_mesh`) each device runs the chunk
    on its shard of the run axis (`spread`, with the data `replicate`d).
    """
    check_compatible(stages)
    stage, axis = stages[0], axis or default_axis()
    if axis not in AXES:
        raise ValueError(f"unknown run axis {axis!r}; choose one of {list(AXES)}")

    def run_chunk(state, values, active, inputs, labels, order, start_row, num_steps, key):
        run = dataclasses.replace(stage, hyper=dataclasses.replace(stage.hyper, **values))
        optimizer = steps.make_optimizer(run, steps.make_schedule(run, steps_per_epoch))
        step = steps.step_function(steps.make_model(run), optimizer, augment, loss=steps.make_loss(run), project=steps.make_projection(run))
        chunk = steps.chunk_function(step)
        trained = chunk(state, inputs, labels, order, start_row, num_steps, key)
        return jax.tree.map(lambda new, old: jnp.where(active, new, old), trained, state)

    def group_chunk(states, values, active, inputs, labels, orders, start_row, num_steps, keys):
        def one(state, values, active, order, key):
            return run_chunk(state, values, active, inputs, labels, order, start_row, num_steps, key)

        if axis == "vmap":
            return jax.vmap(one)(states, values, active, orders, keys)
        return jax.lax.map(lambda args: one(*args), (states, values, active, orders, keys))

    if mesh is None:
        return jax.jit(group_chunk)
    runs, shared = PartitionSpec(RUNS), PartitionSpec()
    specs = (runs, runs, runs, shared, shared, runs, shared, shared, runs)
    return jax.jit(jax.shard_map(group_chunk, mesh=mesh, in_specs=specs, out_specs=runs))
