"""Test errors: of a trained workdir (every stage, and its binarized model) or of any bitnet-packed model.

For a bitwise run `evaluate_workdir` reports three test errors: the compressed real-valued net
(stage 1), the simulated bitwise net (stage 2, Flax forward) and the packed XNOR-popcount path run
on the stored binarized model, by the backend `bitnet.deploy.backends` chooses (or a forced one; eval.json's
`backend` names it). The last two must agree on every prediction; any difference is an
error. It writes WORKDIR/eval.json and exports the binarized model to WORKDIR/bitwise.npz
(bitnet-packed-v1, or -v2 with the threshold neurons of a net with batch norm), both with the
identity of the test data and the run's provenance. `evaluate_npz` gives the test error of a .npz
model alone (published or downloaded, either version): the model's meta names its input encoding.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from bitnet import faults
from bitnet.core import encodings
from bitnet.input import data
from bitnet.deploy import backends, export, inference
from bitnet.workdir import provenance, workdir_lock
from bitnet.training import binarized, configuration, loop, plan, steps, train
from bitnet.errors import EvaluationError  # defined with the other user errors; still importable from here


def packed_run(arrays: dict[str, np.ndarray], meta: dict[str, Any], images: np.ndarray, backend: str = backends.AUTO) -> tuple[np.ndarray, str]:
    """Predictions of a bitnet-packed model (arrays, meta) for raw uint8 images [N, pixels], and the backend
    (bitnet.deploy.backends) that computed them: `backend`, or the one "auto" chooses here (logged)."""
    inputs = encodings.get_encoding(meta["encoding"], meta["thresholds"])(images)
    model = export.to_packed_model(arrays, meta)
    chosen = inference.backend_for(model, len(inputs), backend)
    logging.info("packed inference backend: %s (asked for %s; platform %s, batch %d)", chosen, backend, jax.default_backend(), len(inputs))
    return np.asarray(inference.packed_predict(model, inputs, chosen)), chosen


def packed_predictions(arrays: dict[str, np.ndarray], meta: dict[str, Any], images: np.ndarray, backend: str = backends.AUTO) -> np.ndarray:
    """`packed_run`'s predictions alone."""
    return packed_run(arrays, meta, images, backend)[0]


def evaluate_npz(path: str, data_kwargs: dict[str, Any], backend: str = backends.AUTO) -> dict:
    """The test error of the .npz model at `path` on the test split of the data `data_kwargs` names, by `backend`."""
    arrays, meta = export.load_npz(path)
    splits = data.load_splits(**{**data_kwargs, "validation_size": 1, "train_subset": 1})  # only the test split is needed
    predictions, chosen = packed_run(arrays, meta, splits.test_images, backend)
    results = {
        "npz": path,
        "encoding": meta["encoding"],
        "num_examples": int(len(splits.test_labels)),
        "packed_error": float(np.mean(predictions != splits.test_labels)),
        "backend": chosen,
        "data": splits.identity,
    }
    logging.info("evaluation of %s: %s", path, results)
    return results


OTHER_DATA_FLAG = "--other_data"


def result_name(identity: dict, trained: dict | None) -> str:
    """eval.json for the data the run trained on; eval-<content key>.json for other data (never over eval.json)."""
    if trained is None or trained.get("checksums") == identity.get("checksums"):
        return "eval.json"
    return f"eval-{data.content_key(identity['checksums'])}.json"


@workdir_lock.holding_workdir  # never beside a training run in the same workdir
def evaluate_workdir(workdir: str, other_data: bool = False, backend: str = backends.AUTO) -> dict:
    """Evaluate the checkpoints of `workdir` on the test split; write eval.json (and bitwise.npz). On other data than
    the run trained on: a DataError, unless `other_data`; then the result goes to eval-<key>.json only. The packed
    path runs on `backend` (bitnet.deploy.backends; eval.json names the one that ran)."""
    run = plan.resolve(configuration.read_config(workdir))  # the config resolved once
    stages = run.stages
    configuration.stage1_workdir(run.record, workdir)  # a shared stage 1 must still fit this config
    encoding = configuration.encoding_of(run.inputs)
    splits = data.load_splits(**run.inputs.data_kwargs())
    if not other_data:
        remedy = f"pass {OTHER_DATA_FLAG} to evaluate it on these data (the result goes to eval-<key>.json, not eval.json)"
        train.check_same_data(workdir, splits.identity, remedy)
    trained = provenance.trained_data(workdir)  # what the run trained on, read once
    name = result_name(splits.identity, trained)
    inputs = jnp.asarray(encoding(splits.test_images))
    labels = np.asarray(splits.test_labels)
    results: dict = {"run_kind": run.record["run_kind"], "encoding": encoding.name, "num_examples": int(len(labels))}
    results["provenance"] = provenance.record(workdir)
    results["data"] = splits.identity  # name and file checksums: which data the errors were measured on

    simulated = None
    for stage in stages:
        if stage.start == plan.FINISHED:  # a shared stage 1: finished, not being written, on the same data
            variables = train.finished_variables(stage, int(inputs.shape[1]), trained or splits.identity)
        else:
            variables = loop.stage_variables(stage, workdir, int(inputs.shape[1]))
        simulated = np.asarray(steps.predictions(steps.make_predict(steps.make_model(stage)), variables, inputs, stage.eval_batch_size))
        results[f"{stage.name}_error"] = float(np.mean(simulated != labels))
    if plan.binarized_stage(stages) is not None:
        packed, results["backend"] = packed_run(*binarized.load(workdir), splits.test_images, backend)
        results["packed_error"] = float(np.mean(packed != labels))
        mismatches = int(np.sum(packed != simulated))
        if mismatches:
            raise EvaluationError(
                f"{workdir}: the packed XNOR-popcount path disagrees with the simulated bitwise net on "
                f"{mismatches} of {len(labels)} test images; the binarized checkpoint does not match the stage-2 "
                "parameters (delete checkpoints/binarized and rerun training to rebuild it)"
            )
        if name == "eval.json":  # the exported model carries the test error on the data it was trained with
            extra = {"test_error": results["packed_error"], "num_test_examples": len(labels)}
            extra.update(provenance=results["provenance"], data=splits.identity)
            binarized.export_npz(workdir, os.path.join(workdir, "bitwise.npz"), extra)
    path = os.path.join(workdir, name)
    with open(path + ".tmp", "w") as file:
        json.dump(results, file, indent=2)
        faults.point("eval_json_written", path + ".tmp")  # test-only
    os.replace(path + ".tmp", path)
    logging.info("evaluation of %s: %s", workdir, results)
    return results
