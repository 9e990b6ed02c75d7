"""The binarized model: the best bitwise parameters as packed XNOR-popcount words, stored once.

    binarize    bitwise-stage variables -> bitnet-packed-v1 arrays and meta (bitnet.deploy.export); -v2, with
                threshold neurons, for a net with batch norm (bitnet.core.thresholds)
    save, load  WORKDIR/checkpoints/binarized (orbax): the one stored copy of the model
    export_npz  that checkpoint -> a bitnet-packed .npz (e.g. WORKDIR/bitwise.npz) with provenance

Evaluation, export, tests and reports read the model through `load` (or the exported .npz), so no
two copies of it can drift apart.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from bitnet.core import encodings
from bitnet.deploy import export, inference
from bitnet.workdir import checkpoints
from bitnet.training.plan import Stage


def binarize(stage: Stage, variables: dict, encoding: encodings.Encoding) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The bitnet-packed arrays and meta of the bitwise net given by a bitwise stage's variables
    ({"params"}, and {"batch_stats"} with batch norm: then v2, threshold neurons)."""
    packed = inference.pack_params(variables["params"], stage.hyper.sparsity, encoding.bit_values, variables.get("batch_stats"))
    meta = export.model_meta(packed, encoding, {"sparsity": stage.hyper.sparsity, "seed": stage.seed})
    return export.model_arrays(packed), meta


def save(workdir: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Store the binarized model once; a rerun keeps the first (orbax never overwrites)."""
    checkpoints.save_binarized(workdir, arrays, meta)


def load(workdir: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The stored model as the arrays of a bitnet-packed file (format tag and meta included), checked."""
    arrays, meta = checkpoints.restore_binarized(workdir)
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    arrays.update(format=np.array(export.format_of(arrays)), meta=np.array(json.dumps(meta)))
    export.check_arrays(arrays, os.path.join(workdir, "checkpoints", "binarized"))
    return arrays, meta


def export_npz(workdir: str, path: str, extra_meta: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Write the stored model of `workdir` to `path` (bitnet-packed-v1, or -v2 with thresholds), its meta extended by `extra_meta`."""
    arrays, meta = load(workdir)
    meta = {**meta, **(extra_meta or {})}
    export.write_npz(path, arrays, meta)
    return arrays, meta
