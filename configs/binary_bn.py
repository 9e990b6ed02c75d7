"""Beyond the paper (issue #14): a fully binary net with threshold neurons, 0/1 input, no dropout.

    python -m experiments.train --config configs/binary_bn.py --workdir workdirs/binary_bn
    python -m experiments.evaluate --workdir workdirs/binary_bn

configs/augmented.py (random 1-pixel shifts, 100 + 60 epochs) with the choices of RESULTS.md's
issue #14 tuning log, each made on the validation split: 0/1 input pixels (`encoding=binary`),
binary weights (lambda = 0: no weight mask), batch norm on every hidden layer, and no dropout in
either stage (with batch norm, dropout lowered neither stage's validation error; without it stage 1
reached 1.21 % in 20 epochs against 1.39 %). The bitwise net's hidden neurons are XNOR-popcount
sums compared with one integer threshold each (batch norm folded exactly at export,
bitnet-packed-v2); its input, weights and activations are all single bits.
Expect: see RESULTS.md. Cost: ~30 min on the 2-core CPU.
"""

import ml_collections

from configs import augmented


def get_config() -> ml_collections.ConfigDict:
    config = augmented.get_config()
    config.encoding = "binary"
    config.model.batch_norm = True
    config.stage2.sparsity = 0.0
    for stage in (config.stage1, config.stage2):
        stage.dropout_rate = 0.0
        stage.input_dropout_rate = 0.0
    return config
