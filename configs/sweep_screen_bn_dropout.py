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

from configs import sweep_screen_bn

NO_DROPOUT = "stage1.dropout_rate=0.0,stage1.input_dropout_rate=0.0,stage2.dropout_rate=0.0,stage2.input_dropout_rate=0.0"
CHANGES = (
    "name=bn-dropout0",
    "name=bn-hinge-dropout0,stage1.loss=squared_hinge,stage2.loss=squared_hinge",
)


def get_config() -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.base = "configs/augmented.py"
    sweep.runs = tuple(f"stage2.sparsity=0.0,model.batch_norm=True,{NO_DROPOUT},{sweep_screen_bn.SCREEN},{change}" for change in CHANGES)
    return sweep
