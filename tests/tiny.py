"""The tiny config the tests train: configs/smoke.py on a synthetic IDX folder, small enough for seconds on a CPU."""

from __future__ import annotations

import os

import ml_collections

from configs import smoke


def tiny_config(source_dir: str | os.PathLike, data_dir: str | os.PathLike) -> ml_collections.ConfigDict:
    """smoke.py on every image of `source_dir` (prepared into `data_dir`): 60 validation images, batches of 20,
    one hidden layer of 32, 2 epochs per stage."""
    config = smoke.get_config()
    config.data.source_dir = str(source_dir)
    config.data.data_dir = str(data_dir)
    config.data.train_subset = 0
    config.data.test_subset = 0
    config.data.validation_size = 60
    config.model.hidden_sizes = (32,)
    for stage in (config.stage1, config.stage2):
        stage.batch_size = 20
        stage.epochs = 2
    config.eval_batch_size = 64
    return config
