"""Sweep (tuning, issue #14 section 3): the batch-norm net without dropout in either stage.

    ./launch.sh sweep configs/sweep_screen_bn_dropout.py --noevaluate

configs/sweep_screen_bn_stage2.py found that dropping stage 2's dropout (hidden 0.2, input 0.1)
lowers the batch-norm net's bitwise validation error the most (1.74 -> 1.57 %): batch norm's
statistics see a different variance with dropout in training than without it in evaluation.
These runs drop it in stage 1 too, with cross-entropy and with the squared hinge loss, at the
length of configs/sweep_screen_bn.py (20 + 10 epochs), whose lambda0-bn / lambda0-bn-hinge rows
are the references. Read on the validation split.
Cost: ~5 min per run alone on the 2-core CPU.
"""

import ml_collections

from bitnet.runs import hyper
from configs import sweep_screen_bn

NO_DROPOUT = {f"stage{n}.{field}": 0.0 for n in (1, 2) for field in ("dropout_rate", "input_dropout_rate")}
CHANGES = [{"name": "bn-dropout0"}, {"name": "bn-hinge-dropout0", **sweep_screen_bn.HINGE}]


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/augmented.py", hyper.product(
        hyper.fixed({**sweep_screen_bn.BATCH_NORM, **NO_DROPOUT, **sweep_screen_bn.SCREEN}), CHANGES))
