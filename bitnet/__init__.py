"""bitnet: Bitwise Neural Networks (Kim & Smaragdis, 2016) in JAX/Flax.

Folders by job, each importing only the ones above it (its docstring's "Imports:" line, checked
by tests/test_layout.py):

  errors, faults  the user errors every layer raises; test-only fault points
  core/       quantizers (sign, STE, ternary lambda), encodings (bipolar / 0-1 / fixed-K / thermometer
              inputs), thresholds (threshold neurons), models (BitDense and the MLP)
  input/      data (IDX data sets through a TFDS builder, splits, batch order), augmentation
  deploy/     packing (uint32 words), inference (XNOR-popcount forward), export (the .npz format),
              summary (bits, bytes, binary ops per layer)
  workdir/    workdir_lock, provenance, checkpoints (orbax), metrics, preemption (SIGTERM saves)
  training/   configuration, plan (config -> stages), steps (the jitted step and chunk), loop (one
              stage), group (K runs in one program), binarized (the packed model a run ends with),
              train (train_runs for K >= 1 runs; train_and_evaluate, a run alone)
  runs/       evaluate (test errors), sweep (expand, group, tabulate), registry (published runs), children (a
              launcher's child commands: logs, SIGINT/SIGTERM passed on, how each ended)

The names users call keep their short paths: bitnet.inference, bitnet.export, bitnet.summary,
bitnet.train are the modules above (thin aliases, tests/test_layout.py).
"""

__version__ = "0.1.0"
