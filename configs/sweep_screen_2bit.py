"""Sweep (tuning, issue #13 section 2): why the 2-bit input loses more than the others, by intervention.

    ./launch.sh sweep configs/sweep_screen_2bit.py --noevaluate

The paper protocol (configs/default.py) at the screen length of configs/sweep_screen_stage1.py
(20 + 5 epochs, whose `base` run is the bipolar reference), changing only the input: the 2-bit
code with +-1 bits (`fixed2`, the Table 1 cell), the same bits as 0/1 inputs (`fixed2_01`), the
thermometer code as 0/1 inputs (`thermo2_01`), `fixed2` without input dropout (its two planes of a
pixel are dropped independently), and the 0/1 single-plane reference (`binary`). Read on the
validation split (the tuning log in RESULTS.md).
Cost: ~30 min per run on the 2-core CPU.
"""

import ml_collections

from bitnet.runs import hyper

STAGE1_EPOCHS = 20
STAGE2_EPOCHS = 5
CHANGES = hyper.chain(
    hyper.named("{encoding}", hyper.sweep("encoding", ("fixed2", "fixed2_01", "thermo2_01"))),
    [{"name": "fixed2-input-dropout0", "encoding": "fixed2", "stage1.input_dropout_rate": 0.0, "stage2.input_dropout_rate": 0.0}],
    hyper.named("{encoding}", hyper.sweep("encoding", ("binary",))),
)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.product(CHANGES, hyper.fixed({"stage1.epochs": STAGE1_EPOCHS, "stage2.epochs": STAGE2_EPOCHS})))
