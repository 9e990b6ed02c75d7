"""Layers and models: one dense layer with three modes, and the MLP built from it.

Modes of `BitDense` (all share ONE parameter tree {kernel, bias}, so stage 2 starts from the
stage-1 parameters as they are):

    float       a = x @ W + b                                   plain real-valued layer
    compressed  a = x @ tanh(W) + tanh(b)                       the paper's weight compression
    bitwise     a = x @ ternarize(W; lam) + sign(b)             noisy backprop: binary forward,
                                                                straight-through backward to W, b

In bitwise mode, with +-1 (or 0/1) inputs, `a` holds exact small integers: the same numbers the
packed XNOR-popcount path computes (see `bitnet.deploy.inference`).

`MLP` activations: tanh for compressed, sign with an STE for bitwise, relu or tanh for float.
For bitwise networks the STE sees a / sqrt(fan_in) (sign is unchanged by a positive scale), so the
|x| <= 1 window of the hard-tanh surrogate covers about one standard deviation of the integer
pre-activation instead of only |a| <= 1; the output logits are likewise a / sqrt(fan_in), which
keeps the softmax cross-entropy in a trainable range.

With `batch_norm`, each hidden layer (not the output) is  h = act(BN(x @ W')),  W' the mode's
kernel, no bias (BN's shift replaces it: BN cancels any bias, whose gradient would be noise), and

    BN(a) = scale * (a - mean) / sqrt(var + 1e-4) + bias

with the batch's mean and variance in training and the running averages (momentum 0.9: BinaryNet's
alpha = 0.1 and epsilon) in evaluation. BN already brings a to about unit variance, so the STE sees
BN(a) unscaled. Layer l's parameters are params["bn{l}"] = {scale, bias} and its statistics
batch_stats["bn{l}"] = {mean, var}.

A bitwise net with batch norm evaluates its hidden layers as threshold neurons: sign(BN(a)) of the
integer a, with the running statistics, folded exactly into "+1 iff s a >= T" (bitnet.core.thresholds).
That is sign(BN(a)) in exact arithmetic; float32 BN could round across 0 next to a threshold, and
the fold is what the packed path and the bitnet-packed-v2 file compute, so every path agrees.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bitnet.core import quantizers, thresholds

MODES = ("float", "compressed", "bitwise")
BN_MOMENTUM = 0.9  # running statistics: new = 0.9 old + 0.1 batch (BinaryNet's alpha = 0.1)
BN_EPSILON = 1e-4  # BinaryNet's
FLOAT_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown layer mode {mode!r}; choose one of {list(MODES)}")
    return mode


def _weights(values: jax.Array, mode: str, sparsity: float | jax.Array) -> jax.Array:
    if mode == "compressed":
        return jnp.tanh(values)
    if mode == "bitwise":
        return quantizers.ternarize(values, sparsity)
    return values


def layer_weights(params: dict, mode: str, sparsity: float | jax.Array = 0.0) -> tuple[jax.Array, jax.Array]:
    """The (kernel, bias) a layer of `mode` multiplies with, from its raw parameters (bias 0 if it has none)."""
    kernel = _weights(params["kernel"], mode, sparsity)
    bias = _weights(params["bias"], mode, 0.0) if "bias" in params else jnp.zeros(kernel.shape[-1], kernel.dtype)
    return kernel, bias


class BitDense(nn.Module):
    """Dense layer whose weights are real, tanh-compressed or ternary, chosen by `mode`."""

    features: int
    mode: str = "bitwise"
    sparsity: float | jax.Array = 0.0  # lambda, or the traced count k (quantizers.sparsity_mask)
    use_bias: bool = True  # False before batch norm

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        params = {"kernel": self.param("kernel", nn.initializers.glorot_uniform(), (x.shape[-1], self.features))}
        if self.use_bias:
            params["bias"] = self.param("bias", nn.initializers.zeros, (self.features,))
        kernel, bias = layer_weights(params, self.mode, self.sparsity)
        return x @ kernel + bias if self.use_bias else x @ kernel


class Dropout(nn.Module):
    """flax's nn.Dropout (same module names, keys and numbers), but the rate may be traced: one per run of a group.

    Train: x * m / (1 - rate), m ~ Bernoulli(1 - rate) elementwise; evaluation: x.
    """

    rate: float | jax.Array

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or (isinstance(self.rate, (int, float)) and self.rate == 0.0):
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep, shape=x.shape)
        return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


class MLP(nn.Module):
    """Multi-layer perceptron; returns logits for softmax cross-entropy.

    Records each layer's pre-activation under the "intermediates" collection
    ("preactivations"), which the bit-exactness checks compare with the packed path.
    """

    hidden_sizes: Sequence[int]
    num_classes: int = 10
    mode: str = "bitwise"
    sparsity: float | Sequence[jax.Array] = 0.0  # lambda, or (a group's traced values) each layer's count k
    surrogate: str = "hard_tanh"
    activation: str = "relu"  # float mode only: relu or tanh
    dropout_rate: float | jax.Array = 0.0  # on hidden activations (a group's runs: traced, one each)
    input_dropout_rate: float | jax.Array = 0.0
    batch_norm: bool = False  # BN of each hidden pre-activation (module docstring)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_mode(self.mode)
        sizes = [*self.hidden_sizes, self.num_classes]
        x = Dropout(self.input_dropout_rate)(x, deterministic=not train)
        for index, size in enumerate(sizes):
            scale = 1.0 / math.sqrt(x.shape[-1])
            output = index == len(sizes) - 1
            sparsity = self.sparsity[index] if isinstance(self.sparsity, (tuple, list)) else self.sparsity
            a = BitDense(size, self.mode, sparsity, use_bias=output or not self.batch_norm, name=f"dense{index}")(x)
            self.sow("intermediates", "preactivations", a)
            if output:
                return a * scale if self.mode == "bitwise" else a
            if self.batch_norm:
                normalize = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn{index}")
                normalized = normalize(a)
                if self.mode == "bitwise" and not train:
                    x = threshold_sign(a, self.variables["params"][normalize.name], self.variables["batch_stats"][normalize.name], x.shape[-1])
                else:
                    x = self._activate(normalized, 1.0)
            else:
                x = self._activate(a, scale)
            x = Dropout(self.dropout_rate)(x, deterministic=not train)
        raise AssertionError("unreachable")

    def _activate(self, a: jax.Array, scale: float) -> jax.Array:
        if self.mode == "bitwise":
            return quantizers.ste_sign(a * scale, self.surrogate)
        if self.mode == "compressed":
            return jnp.tanh(a)
        if self.activation not in FLOAT_ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(FLOAT_ACTIVATIONS)}")
        return FLOAT_ACTIVATIONS[self.activation](a)


def threshold_sign(a: jax.Array, bn_params: dict, bn_stats: dict, n_in: int) -> jax.Array:
    """+-1 outputs of threshold neurons for integer pre-activations a [..., n] (in float): batch norm
    and sign folded exactly by `bitnet.core.thresholds` (on the host: the fold is exact rational
    arithmetic, which no accelerator does)."""
    layer = jax.ShapeDtypeStruct(a.shape[-1:], jnp.int32)

    def fold(*variables) -> tuple[np.ndarray, np.ndarray]:
        bn_params, bn_stats = jax.tree.unflatten(structure, variables)
        return tuple(np.asarray(values, np.int32) for values in thresholds.fold_batch_norm(bn_params, bn_stats, n_in))

    leaves, structure = jax.tree.flatten((bn_params, bn_stats))
    polarity, threshold = jax.pure_callback(fold, (layer, layer), *leaves, vmap_method="sequential")
    return jnp.where(polarity * a >= threshold, 1, -1).astype(a.dtype)


def ternary_layers(params: dict, sparsity: float = 0.0) -> list[tuple[jax.Array, jax.Array]]:
    """The bitwise network's (W [n_in, n_out], b [n_out]) per layer, values in {-1, 0, +1}."""
    return [layer_weights(params[name], "bitwise", sparsity) for name in layer_names(params)]


def layer_names(params: dict) -> list[str]:
    """The MLP's dense layer names in forward order (dense0, dense1, ..., dense10: numeric, not lexical)."""
    return sorted((name for name in params if name.startswith("dense")), key=lambda name: int(name.removeprefix("dense")))
