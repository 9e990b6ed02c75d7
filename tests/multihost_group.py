"""A child process of tests/test_group_multihost.py: experiments.train_group with its own flags, in this process, with
one run forced to stop as a diverging run stops (the tiny config never diverges by itself).

    python -m tests.multihost_group STOPPING_RUN [train_group flags ...]

STOPPING_RUN's loss "becomes non-finite" at the end of its first epoch (bitnet.training.loop._check_finite raises the
TrainingError a real divergence raises, at the same point); the rest is the real entry point, --distributed included.
"""

from __future__ import annotations

import os
import sys

from absl import app

from bitnet.errors import TrainingError
from bitnet.training import loop
from experiments import cli, train_group

CHECK_FINITE = loop._check_finite


def stopping(run: str):
    """loop._check_finite, except that `run`'s first epoch ends as a diverged one."""

    def check_finite(workdir, stage, epoch, totals):
        if os.path.basename(workdir) == run and stage.name == "compressed" and epoch == 1:
            raise TrainingError(f"{stage.name}: the loss became non-finite at step 12 (epoch {epoch}); forced by the test")
        CHECK_FINITE(workdir, stage, epoch, totals)

    return check_finite


if __name__ == "__main__":
    loop._check_finite = stopping(sys.argv[1])
    app.run(train_group.main, argv=[sys.argv[0], *sys.argv[2:]], flags_parser=cli.parse_flags)
