"""Layers and models: one dense layer with three modes, and the MLP built from it.

Modes of `BitDense` (all share ONE parameter tree {kernel, bias}, so stage 2 starts from the
stage-1 parameters as they are):

    float       a = x @ W + b                                   plain real-valued layer
    compressed  a = x @ tanh(W) + tanh(b)                       the paper's weight compression
    bitwise     a = x @ ternarize(W; lam) + sign(b)             noisy backprop: binary forward,
                                                                straight-through backward to W, b

In bitwise mode, with +-1 (or 0/1) inputs, `a` holds exact small integers: the same numbers the
packed XNOR-popcount path computes (see `bitnet.inference`).

`MLP` activations: tanh for compressed, sign with an STE for bitwise, relu or tanh for float.
For bitwise networks the STE sees a / sqrt(fan_in) (sign is unchanged by a positive scale), so the
|x| <= 1 window of the hard-tanh surrogate covers about one standard deviation of the integer
pre-activation instead of only |a| <= 1; the output logits are likewise a / sqrt(fan_in), which
keeps the softmax cross-entropy in a trainable range.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bitnet import quantizers

MODES = ("float", "compressed", "bitwise")
FLOAT_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown layer mode {mode!r}; choose one of {list(MODES)}")
    return mode


def layer_weights(params: dict, mode: str, sparsity: float | jax.Array = 0.0) -> tuple[jax.Array, jax.Array]:
    """The (kernel, bias) a layer of `mode` multiplies with, from its raw parameters."""
    kernel, bias = params["kernel"], params["bias"]
    if mode == "compressed":
        return jnp.tanh(kernel), jnp.tanh(bias)
    if mode == "bitwise":
        return quantizers.ternarize(kernel, sparsity), quantizers.ternarize(bias, 0.0)
    return kernel, bias


class BitDense(nn.Module):
    """Dense layer whose weights are real, tanh-compressed or ternary, chosen by `mode`."""

    features: int
    mode: str = "bitwise"
    sparsity: float | jax.Array = 0.0  # lambda, or the traced count k (quantizers.sparsity_mask)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        params = {
            "kernel": self.param("kernel", nn.initializers.glorot_uniform(), (x.shape[-1], self.features)),
            "bias": self.param("bias", nn.initializers.zeros, (self.features,)),
        }
        kernel, bias = layer_weights(params, self.mode, self.sparsity)
        return x @ kernel + bias


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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        check_mode(self.mode)
        sizes = [*self.hidden_sizes, self.num_classes]
        x = Dropout(self.input_dropout_rate)(x, deterministic=not train)
        for index, size in enumerate(sizes):
            scale = 1.0 / math.sqrt(x.shape[-1])
            sparsity = self.sparsity[index] if isinstance(self.sparsity, (tuple, list)) else self.sparsity
            a = BitDense(size, self.mode, sparsity, name=f"dense{index}")(x)
            self.sow("intermediates", "preactivations", a)
            if index == len(sizes) - 1:
                return a * scale if self.mode == "bitwise" else a
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


def ternary_layers(params: dict, sparsity: float = 0.0) -> list[tuple[jax.Array, jax.Array]]:
    """The bitwise network's (W [n_in, n_out], b [n_out]) per layer, values in {-1, 0, +1}."""
    return [layer_weights(params[name], "bitwise", sparsity) for name in layer_names(params)]


def layer_names(params: dict) -> list[str]:
    """The MLP's layer names in forward order (dense0, dense1, ..., dense10: numeric, not lexical)."""
    return sorted(params, key=lambda name: int(name.removeprefix("dense")))
