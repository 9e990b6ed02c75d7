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

    # Stage 1: the compressed real-valued net (or the float net of a float run).
    config.stage1 = ml_collections.ConfigDict()
    config.stage1.epochs = 60  # a better stage 1 is the main lever for the bitwise net
    config.stage1.batch_size = 100
    config.stage1.optimizer = "adam"  # adam | adamw | sgd (momentum 0.9)
    config.stage1.learning_rate = 1e-3
    config.stage1.schedule = "cosine"  # cosine | constant | exponential | step (after warmup, over the stage)
    config.stage1.final_learning_rate = 0.0  # cosine, exponential: the rate at the last step (exponential: > 0)
    config.stage1.decay_factor = 0.5  # step: the rate is multiplied by this every decay_every_epochs epochs
    config.stage1.decay_every_epochs = 40
    config.stage1.warmup_epochs = 0
    config.stage1.weight_decay = 0.0  # adamw only
    config.stage1.dropout_rate = 0.2  # hidden activations
    config.stage1.input_dropout_rate = 0.1
    config.stage1.max_shift = 0  # >0: shift training images by up to this many pixels (not in the paper)
    config.stage1.eval_every_epochs = 1  # validate every N epochs (and after the last): best-model candidates
    # (by epochs only, never by seconds: the model a run selects must not depend on the machine's speed)
    config.stage1.checkpoint_every_epochs = 1  # save the latest state every N epochs (and after the last)
    config.stage1.checkpoint_every_seconds = 0.0  # also at an epoch's end once this long after the last save (0: off)
    config.stage1.loss = "cross_entropy"  # cross_entropy (softmax) | squared_hinge (BinaryNet's, +-1 targets)
    config.stage1.layer_lr_scale = "fan_in"  # kernel updates of layers wider than 1024 times 1024/fan_in (1 up to 1024); glorot: 1/H (BinaryNet)
    config.stage1.clip_weights = 0.0  # > 0: clip kernels to [-c, c] after every update (0: off)
    config.stage1.clip_unit = "absolute"  # glorot: c is in units of each kernel's H (BinaryNet's H="Glorot")

    # Stage 2: noisy backpropagation of the bitwise net (ignored for float runs).
    config.stage2 = ml_collections.ConfigDict()
    config.stage2.init = "stage1"  # stage1: start from stage 1 (the paper) | random: no weight compression
    config.stage2.stage1_workdir = ""  # reuse the finished stage 1 of another workdir (same data/model/stage1)
    config.stage2.epochs = 40
    config.stage2.batch_size = 100
    config.stage2.optimizer = "adam"
    config.stage2.learning_rate = 3e-4  # shadow weights are small: large steps flip many signs
    config.stage2.schedule = "cosine"
    config.stage2.final_learning_rate = 0.0
    config.stage2.decay_factor = 0.5
    config.stage2.decay_every_epochs = 40
    config.stage2.warmup_epochs = 0
    config.stage2.weight_decay = 0.0
    config.stage2.dropout_rate = 0.2
    config.stage2.input_dropout_rate = 0.1
    config.stage2.max_shift = 0
    config.stage2.eval_every_epochs = 1
    config.stage2.checkpoint_every_epochs = 1
    config.stage2.checkpoint_every_seconds = 0.0
    config.stage2.loss = "cross_entropy"
    config.stage2.layer_lr_scale = "fan_in"
    config.stage2.clip_weights = 0.0
    config.stage2.clip_unit = "absolute"
    config.stage2.sparsity = 0.0  # lambda: fraction of each layer's weights set to 0
    config.stage2.surrogate = "hard_tanh"  # STE backward: hard_tanh | identity | tanh

    config.eval_batch_size = 1000
    return config
