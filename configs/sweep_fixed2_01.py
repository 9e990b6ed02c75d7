"""Sweep (issue #13 section 2): Table 1's 2-bit cell with the code's bits as 0/1 inputs (`fixed2_01`).

    ./launch.sh sweep configs/sweep_fixed2_01.py

The paper protocol (configs/default.py, 60 + 40 epochs; the float net 60 epochs) with
`encoding=fixed2_01`, chosen on validation by configs/sweep_screen_2bit.py (the same bits as +-1
inputs, the Table 1 cell `fixed2`, lost 0.5 points more from stage 1 to stage 2 there).
Three seeds of the bitwise net and of the float net.
Expect: see RESULTS.md. Cost: ~20 min per bitwise run, ~10 min for the float run (2-core CPU).
"""

import ml_collections

from bitnet.runs import hyper

SEEDS = (0, 1, 2)


def get_config() -> ml_collections.ConfigDict:
    return hyper.config("configs/default.py", hyper.chain(
        hyper.named("fixed2_01-bitwise-seed{seed}", hyper.product(hyper.fixed({"encoding": "fixed2_01"}), hyper.sweep("seed", SEEDS))),
        hyper.named("fixed2_01-float-seed{seed}", hyper.product(hyper.fixed({"encoding": "fixed2_01", "run_kind": "float"}), hyper.sweep("seed", SEEDS))),
    ))
