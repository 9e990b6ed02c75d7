"""WORKDIR/metrics.jsonl: one JSON line per epoch, written by training, read by sweeps and reports.

Writing and reading live together so the two agree on the format. A run killed mid-write can leave
half a line at the end: the reader skips it, and a resumed run's writer removes it together with
the lines of epochs past its checkpoint (they are trained again).
"""

from __future__ import annotations

import json
import os
from typing import Any

Metrics = dict[str, Any]
FILENAME = "metrics.jsonl"


def _parse(line: str) -> Metrics | None:
    """The metrics of a completely written line; None for a line cut short by a kill."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if line.endswith("\n") and isinstance(value, dict) else None


def read_metrics(workdir: str) -> list[Metrics]:
    """The complete lines of WORKDIR/metrics.jsonl ([] before the first epoch)."""
    return read_metrics_file(os.path.join(workdir, FILENAME))


def read_metrics_file(path: str) -> list[Metrics]:
    """The complete lines of a metrics file: a workdir's, or a published copy (results/<sweep>/<run>.metrics.jsonl)."""
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [metrics for metrics in map(_parse, file) if metrics is not None]


class MetricWriter:
    """One JSON line per epoch in WORKDIR/metrics.jsonl, mirrored to TensorBoard event files."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, FILENAME)
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        self._tensorboard = None

    def drop_after(self, stage: str, epoch: int) -> None:
        """Forget lines of `stage` past `epoch` (written before a crash, not checkpointed), and any line cut short."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as file:
            lines = [line for line in file if line.strip()]
        kept = [line for line in lines if (metrics := _parse(line)) is not None and not (metrics["stage"] == stage and metrics["epoch"] > epoch)]
        if len(kept) != len(lines):
            with open(self.path + ".tmp", "w") as file:
                file.writelines(kept)
            os.replace(self.path + ".tmp", self.path)  # a kill while rewriting loses no line

    def write(self, metrics: Metrics) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(metrics) + "\n")
        self.mirror(metrics)

    def mirror(self, metrics: Metrics) -> None:
        """Write a metrics line's numbers to TensorBoard (each new line; the kept lines again after --overwrite)."""
        if self._tensorboard is None:
            from tensorboardX import SummaryWriter  # imported late: only writers need it

            self._tensorboard = SummaryWriter(self.tensorboard_dir)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self._tensorboard.add_scalar(f"{metrics['stage']}/{key}", value, metrics["step"])
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
