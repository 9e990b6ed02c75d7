"""Evaluation of a trained workdir on the full test split, and export of its binarized model.

For a bitwise run it reports three test errors: the compressed real-valued net (stage 1), the
simulated bitwise net (stage 2, Flax forward) and the packed XNOR-popcount path run on the stored
binarized model. The last two must agree on every prediction; any difference is an error. Writes
WORKDIR/eval.json and WORKDIR/bitwise.npz (bitnet-packed-v1), both with the identity of the test data.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
from absl import logging

from bitnet import checkpoints, configuration, data, export, inference, provenance, train, workdir_lock


class EvaluationError(RuntimeError):
    """The simulated and packed bitwise paths disagree."""


@workdir_lock.holding_workdir  # never beside a training run in the same workdir
def evaluate_workdir(workdir: str) -> dict:
    """Evaluate the checkpoints of `workdir` on the test split; write eval.json (and bitwise.npz)."""
    config = configuration.read_config(workdir)
    encoding = configuration.encoding_of(config)
    splits = data.load_splits(**configuration.data_kwargs(config))
    inputs = jnp.asarray(encoding(splits.test_images))
    labels = np.asarray(splits.test_labels)
    results: dict = {"run_kind": config.run_kind, "encoding": encoding.name, "num_examples": int(len(labels))}
    results["provenance"] = provenance.record(workdir)
    results["data"] = splits.identity  # name and file checksums: which data the errors were measured on

    def test_error(mode: str) -> tuple[float, np.ndarray]:
        source = configuration.stage1_workdir(config, workdir) if mode == "compressed" else workdir
        params = train.load_best_params(config, source, mode, inputs[:1])
        predict = train.make_predict(train.make_model(config, mode, config.stage1))
        predictions = np.concatenate(
            [np.asarray(predict(params, inputs[i : i + config.eval_batch_size])) for i in range(0, len(labels), config.eval_batch_size)]
        )
        return float(np.mean(predictions != labels)), predictions

    if config.run_kind == "float":
        results["float_error"], _ = test_error("float")
    else:
        results["compressed_error"], _ = test_error("compressed")
        results["bitwise_error"], simulated = test_error("bitwise")
        arrays, meta = checkpoints.restore_binarized(workdir)
        arrays = {key: np.asarray(value) for key, value in arrays.items()}
        arrays.update(format=np.array(export.FORMAT), meta=np.array(json.dumps(meta)))
        export.check_arrays(arrays, f"{workdir}/checkpoints/binarized")
        packed_model = export.to_packed_model(arrays, meta)
        packed = np.asarray(inference.packed_predict(packed_model, inputs))
        results["packed_error"] = float(np.mean(packed != labels))
        mismatches = int(np.sum(packed != simulated))
        if mismatches:
            raise EvaluationError(
                f"{workdir}: the packed XNOR-popcount path disagrees with the simulated bitwise net on "
                f"{mismatches} of {len(labels)} test images; the binarized checkpoint does not match the stage-2 "
                "parameters (delete checkpoints/binarized and rerun training to rebuild it)"
            )
        model_meta = {**meta, "test_error": results["packed_error"], "num_test_examples": len(labels)}
        model_meta["provenance"] = results["provenance"]
        model_meta["data"] = splits.identity
        export.save_npz(os.path.join(workdir, "bitwise.npz"), packed_model, encoding, model_meta)
    path = os.path.join(workdir, "eval.json")
    with open(path + ".tmp", "w") as file:
        json.dump(results, file, indent=2)
    os.replace(path + ".tmp", path)
    logging.info("evaluation of %s: %s", workdir, results)
    return results
