"""`--overwrite` without a stale result: what the replaced stages made is moved aside, never deleted.

A run overwritten with a new config keeps the checkpoints of the stages the new config trains alike
(bitnet.training.configuration.kept_stages) and moves everything else that came from the old
config into WORKDIR/replaced/<time>/, under the same relative paths:

    checkpoints/<stage>  of each stage not kept      checkpoints/binarized, bitwise.npz,
    metrics.jsonl, tensorboard/, config.json         eval.json, eval-*.json, error.txt

metrics.jsonl keeps the lines of the kept stages and TensorBoard gets them again, so the workdir
then holds what a fresh run of the new config holds once it has trained the kept stages, and the
training that follows ends as that fresh run, bit for bit.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Sequence

from bitnet.errors import ERROR_FILE
from bitnet.workdir import metrics

FOLDER = "replaced"
RESULTS = (os.path.join("checkpoints", "binarized"), "bitwise.npz", "eval.json", "eval-*.json", ERROR_FILE)


def _new_folder(workdir: str) -> str:
    """WORKDIR/replaced/<UTC time> (with a count if one of that second exists)."""
    base = os.path.join(workdir, FOLDER, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    folder, count = base, 1
    while os.path.exists(folder):
        folder, count = f"{base}-{count}", count + 1
    return folder


def _replaced_paths(workdir: str, kept: Sequence[str]) -> list[str]:
    """Workdir-relative paths of the results and of the checkpoints of every stage not in `kept`."""
    paths = [os.path.relpath(path, workdir) for pattern in RESULTS for path in sorted(glob.glob(os.path.join(glob.escape(workdir), pattern)))]
    stages = os.path.join(workdir, "checkpoints")
    if os.path.isdir(stages):
        paths += [os.path.join("checkpoints", name) for name in sorted(os.listdir(stages)) if name not in (*kept, "binarized")]
    return paths


def move_aside(workdir: str, kept: Sequence[str], results: bool = True) -> str:
    """Move what the old config made, but the checkpoints and metric lines of the stages `kept`, into a new
    WORKDIR/replaced/<time>/ (config.json copied: the caller writes the new one); that folder. `results` False:
    every stage is kept and its results stay valid, so only config.json is copied."""
    workdir = os.path.abspath(workdir)
    folder = _new_folder(workdir)
    os.makedirs(folder)
    if os.path.exists(os.path.join(workdir, "config.json")):
        shutil.copy2(os.path.join(workdir, "config.json"), os.path.join(folder, "config.json"))
    if results:
        for relative in _replaced_paths(workdir, kept):  # results first: a kill from here on leaves none of them stale
            os.makedirs(os.path.dirname(os.path.join(folder, relative)), exist_ok=True)
            os.rename(os.path.join(workdir, relative), os.path.join(folder, relative))
        _keep_metric_lines(workdir, folder, kept)
    return folder


def _keep_metric_lines(workdir: str, folder: str, kept: Sequence[str]) -> None:
    """Copy metrics.jsonl aside and keep only the kept stages' lines in it (atomically); move the TensorBoard events
    aside and write those lines' events again."""
    path = os.path.join(workdir, metrics.FILENAME)
    if os.path.exists(path):
        shutil.copy2(path, os.path.join(folder, metrics.FILENAME))
        lines = [line for line in metrics.read_metrics(workdir) if line["stage"] in kept]
        with open(path + ".tmp", "w") as file:
            file.writelines(json.dumps(line) + "\n" for line in lines)
        os.replace(path + ".tmp", path)
    writer = metrics.MetricWriter(workdir)
    if os.path.exists(writer.tensorboard_dir):
        os.rename(writer.tensorboard_dir, os.path.join(folder, "tensorboard"))
    try:
        for line in metrics.read_metrics(workdir):
            writer.mirror(line)
    finally:
        writer.close()
