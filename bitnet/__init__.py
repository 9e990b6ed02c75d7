"""bitnet: Bitwise Neural Networks (Kim & Smaragdis, 2016) in JAX/Flax.

Modules, one job each, in the order of the paper's method:
  quantizers  sign, straight-through sign, ternarizer (sparsity lambda)
  encodings   float / bipolar / binary / fixed-K input encodings
  models      BitDense (float | compressed | bitwise) and the MLP
  packing     +-1 / 0-1 values <-> uint32 words
  inference   jitted XNOR-popcount forward pass on packed words
  export      the portable "bitnet-packed-v1" (and -v2: threshold neurons) .npz format and a NumPy-only reader

Training, in the order a run goes: plan (config -> stages), steps (the jitted step and chunk of
steps), loop (one stage: chunks, validation, checkpoints), train (train_and_evaluate), binarized
(the packed model, stored once), evaluate (test errors). Runs of a sweep trained as one program:
group (the step's chunk over a run axis), group_train (train_group: each run in its own workdir).
"""

__version__ = "0.1.0"
