"""Orbax checkpoints of a workdir: per-stage latest and best, and the final binarized model.

    WORKDIR/checkpoints/<stage>/latest   {params, opt_state, step} + meta, every epoch (resume)
    WORKDIR/checkpoints/<stage>/best     the same, kept for the lowest validation error
    WORKDIR/checkpoints/binarized        bitnet-packed-v1 arrays (packed uint32 words) + meta

Orbax writes into a temporary folder and renames it when complete, so a save interrupted mid-write
never replaces the last good checkpoint; saves are asynchronous, so every writer waits before it
returns. Paths are made absolute because orbax requires it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged, or from an incompatible config."""


def _manager(path: str, best: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1,
        best_fn=(lambda metrics: metrics["val_error"]) if best else None,
        best_mode="min",
        create=True,
    )
    return ocp.CheckpointManager(os.path.abspath(path), options=options)


def stage_dir(workdir: str, stage: str, which: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints", stage, which)


def save_stage(workdir: str, stage: str, state: Any, meta: dict, val_error: float, is_best: bool) -> None:
    """Save the latest state of a stage (and as best when it has the lowest validation error)."""
    step = int(meta["step"])
    targets = [("latest", False)] + ([("best", True)] if is_best else [])
    for which, best in targets:
        with _manager(stage_dir(workdir, stage, which), best) as manager:
            if step in manager.all_steps():
                continue  # already saved (a resumed run reaching the same step): orbax never overwrites
            args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
            manager.save(step, args=args, metrics={"val_error": float(val_error)} if best else None)
            manager.wait_until_finished()


def restore_stage(workdir: str, stage: str, which: str, like: Any) -> tuple[Any, dict] | None:
    """(state, meta) of a stage's latest or best checkpoint, shaped like `like`; None if absent."""
    path = stage_dir(workdir, stage, which)
    if not os.path.isdir(path):
        return None
    with _manager(path, which == "best") as manager:
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
            )
        except ValueError as error:
            raise CheckpointError(
                f"checkpoint {path}/{step} does not fit this config ({str(error).splitlines()[0]}); "
                "use the config it was trained with, or another workdir"
            ) from None
        except Exception as error:  # damaged files: orbax raises many kinds
            raise CheckpointError(
                f"checkpoint {path}/{step} cannot be read ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                "delete that step folder to fall back to an older one, or retrain in a new workdir"
            ) from None
    return restored.state, dict(restored.meta)


def restore_params(workdir: str, stage: str, which: str, like_params: Any) -> dict | None:
    """Only the parameters of a stage checkpoint (orbax partial restore); None if absent.

    Evaluation and stage 2 need no optimizer state, so they do not depend on its structure.
    """
    path = stage_dir(workdir, stage, which)
    if not os.path.isdir(path):
        return None
    with _manager(path, which == "best") as manager:
        step = manager.latest_step()
        if step is None:
            return None
        abstract = {"params": jax.tree.map(ocp.utils.to_shape_dtype_struct, like_params)}
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        item=abstract,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                        partial_restore=True,
                    )
                ),
            )
        except ValueError as error:
            raise CheckpointError(
                f"checkpoint {path}/{step} does not fit this config ({str(error).splitlines()[0]}); "
                "use the config it was trained with, or another workdir"
            ) from None
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {path}/{step} cannot be read ({type(error).__name__}); "
                "delete that step folder to fall back to an older one, or retrain in a new workdir"
            ) from None
    return restored.state["params"]


def save_binarized(workdir: str, arrays: dict, meta: dict) -> None:
    """Store the final binarized model (packed words + meta) once; a rerun keeps the first."""
    path = os.path.join(os.path.abspath(workdir), "checkpoints", "binarized")
    with _manager(path) as manager:
        if manager.latest_step() is not None:
            return
        args = ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
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
        restored = manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    return {key: value for key, value in restored.arrays.items()}, dict(restored.meta)
