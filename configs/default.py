"""The paper's setting: 784 -> 3 x 1024 -> 10 bitwise MLP on MNIST, bipolar input, both stages.

    python -m experiments.train --config configs/default.py --workdir workdirs/default
    python -m experiments.evaluate --workdir workdirs/default        # (./launch.sh runs both)

Expect: 1.94 % test error of the packed bitwise net with seed 0 (2.05 +- 0.09 % over seeds 0-2;
stage-1 compressed net 2.00 %; RESULTS.md, Table 1). Cost: ~28 min on the 2-core CPU
(60 + 40 epochs of ~8.5 s).

Stage 1 trains the compressed real-valued net (tanh weights and activations); stage 2 starts from
its best-by-validation parameters and runs noisy backpropagation. Any field is overridable, e.g.
`--config.encoding=fixed2 --config.stage2.sparsity=0.25`.
"""

import ml_collections

from bitnet.training import options


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # parameters, dropout and data order all derive from it
    config.run_kind = "bitwise"  # "bitwise": stage 1 (compressed) + stage 2 (bitwise); "float": one float stage
    config.encoding = "bipolar"  # float | bipolar | binary | fixedK (bitnet/core/encodings.py)
    config.encoding_thresholds = ()  # on the p/255 scale; () = the encoding's default

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist"  # prepared under this name; any IDX data set (fashion_mnist, kmnist) works
    config.data.source_dir = ""  # folder of the four IDX files; "" = $BITNET_MNIST_DIR, else download
    config.data.data_dir = ""  # TFDS cache; "" = $BITNET_DATA_DIR, else ~/tensorflow_datasets
    config.data.validation_size = 10000  # held out of the end of the training set for model selection
    config.data.train_subset = 0  # >0: use only the first N training images (smoke runs)
    config.data.test_subset = 0  # >0: use only the first N test images

    config.model = ml_collections.ConfigDict()
    config.model.hidden_sizes = (1024, 1024, 1024)
    config.model.num_classes = 10
    config.model.activation = "relu"  # float runs only; compressed uses tanh, bitwise uses sign
    # Batch norm of each hidden layer's pre-activation (not the output's), running statistics kept in the
    # checkpoints, for every stage (one parameter tree: stage 2 starts from stage 1's). Not in the paper;
    # a bitwise net with it evaluates and exports its hidden layers as threshold neurons (bitnet-packed-v2).
    config.model.batch_norm = False

    # Stage 1: the compressed real-valued net (or the float net of a float run). Its fields, each declared
    # once in bitnet/training/options.py (type, default, allowed values, check), at their defaults:
    # <options:stage1>
    #   epochs = 60                               # stage 1: a better stage 1 is the main lever for the bitwise net
    #   batch_size = 100
    #   optimizer = 'adam'                        # adam | adamw | sgd (momentum 0.9)
    #   learning_rate = 0.001                     # stage 2: shadow weights are small, large steps flip many signs
    #   schedule = 'cosine'                       # cosine | constant | exponential | step (after warmup, over the stage)
    #   final_learning_rate = 0.0                 # cosine, exponential: the rate at the last step (exponential: > 0)
    #   decay_factor = 0.5                        # step: the rate is multiplied by this every decay_every_epochs epochs
    #   decay_every_epochs = 40
    #   warmup_epochs = 0
    #   weight_decay = 0.0                        # adamw only
    #   dropout_rate = 0.2                        # hidden activations
    #   input_dropout_rate = 0.1
    #   max_shift = 0                             # >0: shift training images by up to this many pixels (not in the paper)
    #   select = 'best'                           # the state it hands on and ends with: best (lowest validation error) | last (its final state: the final fit, with data.validation_size = 0)
    #   eval_every_epochs = 1                     # validate (best-model candidates) every N epochs and after the last; never by seconds
    #   checkpoint_every_epochs = 1               # save the latest state every N epochs (and after the last)
    #   checkpoint_every_seconds = 0.0            # also at an epoch's end once this long after the last save (0: off)
    #   loss = 'cross_entropy'                    # cross_entropy (softmax) | squared_hinge (BinaryNet's, +-1 targets)
    #   layer_lr_scale = 'fan_in'                 # kernel updates of layers wider than 1024 times 1024/fan_in (1 up to 1024); glorot: 1/H (BinaryNet); none
    #   clip_weights = 0.0                        # > 0: clip kernels to [-c, c] after every update (0: off)
    #   clip_unit = 'absolute'                    # glorot: c is in units of each kernel's H (BinaryNet's H="Glorot")
    # </options:stage1>
    config.stage1 = options.stage_block("stage1")

    # Stage 2: noisy backpropagation of the bitwise net (ignored for float runs); where its defaults differ:
    # <options:stage2>
    #   init = 'stage1'                           # stage1: start from stage 1 (the paper) | random: no weight compression
    #   stage1_workdir = ''                       # reuse the finished stage 1 of another workdir (same data/model/stage1)
    #   epochs = 40                               # stage 1: a better stage 1 is the main lever for the bitwise net
    #   learning_rate = 0.0003                    # stage 2: shadow weights are small, large steps flip many signs
    #   sparsity = 0.0                            # lambda: fraction of each layer's weights set to 0
    #   surrogate = 'hard_tanh'                   # STE backward: hard_tanh | identity | tanh
    # </options:stage2>
    config.stage2 = options.stage_block("stage2")

    config.eval_batch_size = 1000
    return config
