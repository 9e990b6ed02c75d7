"""Orbax checkpoints of a workdir: per-stage latest and best, and the final binarized model.

    WORKDIR/checkpoints/<stage>/latest   {params, opt_state, step, totals} (+ batch_stats) + meta (resume)
    WORKDIR/checkpoints/<stage>/best     the same, kept for the lowest validation error
    WORKDIR/checkpoints/binarized        bitnet-packed-v1 or -v2 arrays (packed uint32 words) + meta

Orbax writes into a temporary folder and renames it when complete, so a save interrupted mid-write
never replaces the last good checkpoint; a save that fails (a full disk) removes its temporary
folder at once. Saves are asynchronous, so every writer waits before it returns. Paths are made
absolute because orbax requires it.

One of several processes (jax.distributed: a group over several hosts, bitnet.training.group) saves
and restores the checkpoints of the runs its devices hold, alone, at its own times: orbax runs as
for local storage (its "emergency" local checkpoints do the same), this process the only active one
and primary (no barrier with the others), directories made at once (orbax's asynchronous creation
signals through keys shared by all processes), and each array handed to orbax as a global array
replicated over every device, of which this process writes the copy it holds (orbax refuses a
process-local array when there are several processes, and writes numpy arrays from process 0
only). No sharding file is written (it would name devices of the other processes), so every
restore names the devices it restores onto: this process's first (`restore_stage`,
`restore_variables`), or numpy (`read_arrays`, `restore_binarized`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from bitnet import faults
from bitnet.workdir import workdir_lock
from bitnet.errors import CheckpointError  # defined with the other user errors; still importable from here


def _several_processes() -> bool:
    """Whether this process is one of several (jax.distributed): its saves are then its own (module docstring)."""
    return jax.process_count() > 1


@functools.cache
def _alone_among_processes() -> tuple[ocp.options.MultiprocessingOptions, ocp.handlers.DefaultCheckpointHandlerRegistry]:
    """orbax's options and handlers for the saves of this process alone, one of several; registers, once, the
    handler of arrays that writes the copy this process holds (orbax's local checkpoints)."""
    array_handler = ocp.type_handlers.ArrayHandler(primary_host=None, replica_id=None, use_replica_parallel=False, enable_write_sharding_file=False)
    ocp.type_handlers.register_type_handler(jax.Array, array_handler, override=True)
    options = ocp.options.MultiprocessingOptions(
        primary_host=jax.process_index(), active_processes={jax.process_index()}, barrier_sync_key_prefix=f"process{jax.process_index()}"
    )
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for handler, arguments in (
        (ocp.StandardCheckpointHandler(multiprocessing_options=options), (ocp.args.StandardSave, ocp.args.StandardRestore)),
        (ocp.PyTreeCheckpointHandler(multiprocessing_options=options), (ocp.args.PyTreeSave, ocp.args.PyTreeRestore)),
        (ocp.JsonCheckpointHandler(multiprocessing_options=options), (ocp.args.JsonSave, ocp.args.JsonRestore)),
    ):
        for argument in arguments:
            registry.add(None, argument, handler)
    return options, registry


def _manager(path: str, best: bool = False, fault_point: str | None = None) -> ocp.CheckpointManager:
    """orbax's manager of one checkpoint folder (which must exist); `fault_point`: the faults point its background
    save reaches once the files are written and before they are renamed into place (test-only; nothing unless armed)."""
    path = os.path.abspath(path)
    alone = _several_processes()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1,
        best_fn=(lambda metrics: metrics["val_error"]) if best else None,
        best_mode="min",
        create=False,
        async_options=ocp.AsyncOptions(
            post_finalization_callback=faults.hook(fault_point, path) if fault_point else None, create_directories_asynchronously=not alone
        ),
        **({"multiprocessing_options": _alone_among_processes()[0]} if alone else {}),
    )
    return ocp.CheckpointManager(path, options=options, handler_registry=_alone_among_processes()[1] if alone else None)


def _savable(tree: Any) -> Any:
    """`tree` as orbax saves it from this process: unchanged, or with several processes each array a global one
    replicated over every device, of which this process holds (and writes) its own copies (module docstring)."""
    if not _several_processes():
        return tree
    everywhere = NamedSharding(Mesh(np.array(jax.devices()), ("devices",)), PartitionSpec())
    return jax.tree.map(
        lambda leaf: jax.make_array_from_single_device_arrays(np.shape(leaf), everywhere, [jax.device_put(leaf, device) for device in jax.local_devices()]),
        tree,
    )


def _here(abstract: Any) -> Any:
    """The abstract arrays of a restore placed on this process's first device (where a restored state is used)."""
    device = SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), abstract)


def stage_dir(workdir: str, stage: str, which: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints", stage, which)


def save_stage(
    workdir: str, stage: str, state: Any, meta: dict, val_error: float | None, is_best: bool, latest: bool = True
) -> None:
    """Save the state of a stage as latest (unless `latest` is False) and as best when it has the lowest validation error.

    Best goes first: a run killed between the two saves resumes from the previous latest, redoes the
    epoch and finds its best already saved, so it ends like an uninterrupted run.
    """
    step = int(meta["step"])
    targets = ([("best", True)] if is_best else []) + ([("latest", False)] if latest else [])
    for which, best in targets:
        if which == "latest" and is_best:
            faults.point("between_best_and_latest")  # test-only
        path = stage_dir(workdir, stage, which)
        os.makedirs(path, exist_ok=True)
        with _removing_a_failed_save(path), _manager(path, best, "checkpoint_written") as manager:
            if step in manager.all_steps():
                continue  # already saved (a resumed run reaching the same step): orbax never overwrites
            args = ocp.args.Composite(state=ocp.args.StandardSave(_savable(state)), meta=ocp.args.JsonSave(meta))
            manager.save(step, args=args, metrics={"val_error": float(val_error)} if best else None)
            manager.wait_until_finished()


@contextlib.contextmanager
def _removing_a_failed_save(path: str) -> Iterator[None]:
    """If the save in the block fails (a full disk), remove its unfinished folder: it would hold the space the
    error asks to free. Outside the manager's block, which waits for orbax's background write when it closes."""
    try:
        yield
    except Exception:
        workdir_lock.remove_unfinished_saves(path)
        raise


def _restore(workdir: str, stage: str, which: str, abstract: Any, args: Any, partial: bool = False) -> Any:
    """orbax's restore of a stage's latest or best step with `args`; None if there is none."""
    path = stage_dir(workdir, stage, which)
    if not os.path.isdir(path):
        return None
    with _manager(path, which == "best") as manager:
        step = manager.latest_step()
        if step is None:
            return None
        _check_fits(path, step, abstract, partial)
        try:
            return manager.restore(step, args=args)
        except Exception as error:  # damaged files: orbax raises many kinds
            raise _damaged(path, step, error) from None


def restore_stage(workdir: str, stage: str, which: str, like: Any) -> tuple[Any, dict] | None:
    """(state, meta) of a stage's latest or best checkpoint, shaped like `like`, on this process's first device; None
    if absent."""
    abstract = _here(jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    restored = _restore(workdir, stage, which, abstract, args)
    return None if restored is None else (restored.state, dict(restored.meta))


def _arrays(tree: Any) -> dict[str, str]:
    """'dtype[shape]' of each array of a tree (or of orbax's metadata of one), by dotted path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="."): f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}"
        for path, leaf in leaves
    }


def _mismatch(step_dir: str, abstract: Any, partial: bool = False) -> str | None:
    """How the arrays stored in a checkpoint's state differ from `abstract`; None if they match or are unreadable."""
    try:
        stored = _arrays(ocp.PyTreeCheckpointHandler().metadata(epath.Path(step_dir, "state")))
    except Exception:  # damaged metadata: not a question of the config (the restore reports it)
        return None
    if not stored:
        return None  # damaged files can read as an empty tree
    wanted = _arrays(abstract)
    for key in sorted(wanted, key=lambda key: not key.startswith("params.")):
        if key not in stored:
            return f"it has no {key}, which this config needs"
        if stored[key] != wanted[key]:
            return f"{key} is {stored[key]} there, but this config needs {wanted[key]}"
    extra = sorted(set(stored) - set(wanted))
    if extra and not partial:
        return f"it has {extra[0]}, which this config does not"
    return None


def _check_fits(path: str, step: int, abstract: Any, partial: bool = False) -> None:
    """CheckpointError naming the first array whose stored shape or dtype differs from `abstract`.

    Checked before restoring: a restore that fails on shapes floods stderr with orbax's async tracebacks.
    """
    mismatch = _mismatch(os.path.join(path, str(step)), abstract, partial)
    if mismatch:
        raise CheckpointError(
            f"checkpoint {path}/{step} does not fit this config ({mismatch}); "
            "use the config it was trained with, or another workdir"
        )


def _damaged(path: str, step: int, error: Exception) -> CheckpointError:
    """The CheckpointError for a restore that failed on the files themselves."""
    reason = str(error).split(" See full TensorStore details")[0].strip().splitlines()
    return CheckpointError(
        f"checkpoint {path}/{step} is damaged and cannot be read ({type(error).__name__}: {reason[0] if reason else ''}); "
        "delete that step folder to fall back to an older one, or retrain in a new workdir"
    )


def latest_meta(workdir: str, stage: str) -> dict | None:
    """The meta ({epoch, step, val_error, best_val_error}) of a stage's latest checkpoint; None if there is none.
    Its epoch says how far the stage trained: the last epoch's latest state is saved only once that epoch ended."""
    path = stage_dir(workdir, stage, "latest")
    if not os.path.isdir(path):
        return None
    with _manager(path) as manager:
        step = manager.latest_step()
        if step is None:
            return None
        try:
            return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        except Exception as error:  # damaged files
            raise _damaged(path, step, error) from None


def restore_variables(workdir: str, stage: str, which: str, like_variables: dict) -> dict | None:
    """Only the model variables ({"params"} + {"batch_stats"} with batch norm) of a stage checkpoint
    (orbax partial restore); None if absent.

    Evaluation and stage 2 need no optimizer state, so they do not depend on its structure.
    """
    abstract = _here(jax.tree.map(ocp.utils.to_shape_dtype_struct, like_variables))
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    args = ocp.args.Composite(state=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=True))
    restored = _restore(workdir, stage, which, abstract, args, partial=True)
    return None if restored is None else {name: restored.state[name] for name in like_variables}


def restore_stage_variables(workdir: str, stage: str, which: str, like_variables: dict) -> dict:
    """The model variables of a finished stage's best or latest checkpoint; CheckpointError if there are none."""
    restored = restore_variables(workdir, stage, which, like_variables)
    if restored is None:
        raise CheckpointError(
            f"no {stage} checkpoint in {stage_dir(workdir, stage, which)}; train this workdir first (experiments.train)"
        )
    return restored


def save_binarized(workdir: str, arrays: dict, meta: dict) -> None:
    """Store the final binarized model (packed words + meta) once; a rerun keeps the first."""
    path = os.path.join(os.path.abspath(workdir), "checkpoints", "binarized")
    os.makedirs(path, exist_ok=True)
    with _removing_a_failed_save(path), _manager(path, fault_point="binarized_written") as manager:
        if manager.latest_step() is not None:
            return
        args = ocp.args.Composite(arrays=ocp.args.StandardSave(_savable(arrays)), meta=ocp.args.JsonSave(meta))
        manager.save(0, args=args)
        manager.wait_until_finished()


def restore_binarized(workdir: str) -> tuple[dict, dict]:
    """(arrays, meta) of the binarized model; CheckpointError if training has not produced it."""
    path = os.path.join(os.path.abspath(workdir), "checkpoints", "binarized")
    if not os.path.isdir(path):
        raise CheckpointError(f"no binarized model in {workdir}; finish training there first (experiments.train)")
    with _manager(path) as manager:
        if manager.latest_step() is None:
            raise CheckpointError(f"no binarized model in {workdir}; finish training there first (experiments.train)")
        step = manager.latest_step()
        try:
            arrays = _as_numpy(os.path.join(path, str(step), "arrays"))
            restored = manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.PyTreeRestore(restore_args=arrays), meta=ocp.args.JsonRestore()))
        except Exception as error:  # damaged files
            raise _damaged(path, step, error) from None
    return {key: value for key, value in restored.arrays.items()}, dict(restored.meta)


def _as_numpy(item_dir: str) -> Any:
    """orbax's restore arguments that read every array of a saved pytree as numpy (whichever devices saved it)."""
    metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(os.path.abspath(item_dir)))
    return jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata.tree)


def read_arrays(item_dir: str) -> Any:
    """Every array of a saved pytree (a checkpoint step's "state" or "arrays" folder), as numpy: for tools and tests
    that read a checkpoint without the config that shapes it."""
    return ocp.PyTreeCheckpointer().restore(os.path.abspath(item_dir), args=ocp.args.PyTreeRestore(restore_args=_as_numpy(item_dir)))
