"""Packed bitwise inference: XOR + popcount on uint32 words, integer accumulation.

For one output neuron with sign bits w, mask bits m (1 = weight nonzero) and input bits x,
packed as in `bitnet.packing`, the integer pre-activation a = sum_i W_i x_i + b is

    +-1 inputs ("bipolar"):  a = popcount(m) - 2 * popcount((x XOR w) AND m) + b
                              (dense layer, m all ones:  a = n - 2 * popcount(x XOR w) + b)
    0/1 inputs ("binary"):   a = 2 * popcount(x AND m AND w) - popcount(x AND m) + b

since a +-1 product is +1 exactly where the two bits agree. Hidden layers always see +-1
inputs: x_{l+1} = sign(a_l) with sign(0) = +1, i.e. bit = (a_l >= 0), packed again. The
prediction is argmax of the last layer's integers, ties to the lowest index. Padding bits are 0
in x, w and m, so they never count. This path is bit-exact with the simulated bitwise forward of
`bitnet.models.MLP` (tests/test_inference.py).
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bitnet import models, packing


@flax.struct.dataclass
class PackedLayer:
    """One layer as packed words: rows are output neurons."""

    sign: jax.Array  # uint32 [n_out, words], bit = 1 where the weight is +1
    mask: jax.Array  # uint32 [n_out, words], bit = 1 where the weight is nonzero
    bias: jax.Array  # int32 [n_out] in {-1, 0, +1}
    nonzeros: jax.Array  # int32 [n_out], popcount of each mask row
    n_in: int = flax.struct.field(pytree_node=False)
    dense: bool = flax.struct.field(pytree_node=False)  # every mask bit set: skip the AND

    @property
    def n_out(self) -> int:
        return self.sign.shape[0]


@flax.struct.dataclass
class PackedModel:
    layers: tuple[PackedLayer, ...]
    input_bits: str = flax.struct.field(pytree_node=False)  # "bipolar" or "binary"


def pack_layer(weights: np.ndarray, bias: np.ndarray) -> PackedLayer:
    """Pack ternary W [n_in, n_out] and b [n_out] (values in {-1, 0, +1})."""
    weights_t = jnp.asarray(weights).T
    mask = packing.pack_bits(weights_t != 0)
    nonzeros = jnp.sum(jax.lax.population_count(mask), axis=-1, dtype=jnp.int32)
    return PackedLayer(
        sign=packing.pack_bits(weights_t > 0),
        mask=mask,
        bias=jnp.asarray(bias, jnp.int32),
        nonzeros=nonzeros,
        n_in=int(weights_t.shape[1]),
        dense=bool(jnp.all(nonzeros == weights_t.shape[1])),
    )


def pack_model(layers: Sequence[tuple[jax.Array, jax.Array]], input_bits: str) -> PackedModel:
    """Pack the ternary (W, b) layers of a bitwise MLP whose inputs are `input_bits` values."""
    if input_bits not in packing.BIT_VALUES:
        raise ValueError(f"input_bits must be one of {packing.BIT_VALUES}, got {input_bits!r}")
    return PackedModel(tuple(pack_layer(w, b) for w, b in layers), input_bits)


def pack_params(params: dict, sparsity: float, input_bits: str) -> PackedModel:
    """Pack the bitwise network defined by MLP parameters (the shadow weights) and lambda."""
    return pack_model(models.ternary_layers(params, sparsity), input_bits)


def _popcount_sum(words: jax.Array) -> jax.Array:
    return jnp.sum(jax.lax.population_count(words).astype(jnp.int32), axis=-1)


def layer_scores(x: jax.Array, layer: PackedLayer, input_bits: str) -> jax.Array:
    """Integer pre-activations int32 [batch, n_out] of one layer for packed inputs [batch, words]."""
    x = x[:, None, :]
    sign, mask = layer.sign[None], layer.mask[None]
    if input_bits == "binary":
        active = x & mask
        return 2 * _popcount_sum(active & sign) - _popcount_sum(active) + layer.bias
    if layer.dense:
        return layer.n_in - 2 * _popcount_sum(x ^ sign) + layer.bias
    return layer.nonzeros - 2 * _popcount_sum((x ^ sign) & mask) + layer.bias


@jax.jit
def packed_scores(model: PackedModel, x: jax.Array) -> list[jax.Array]:
    """Every layer's integer pre-activations for packed input words x [batch, words]."""
    scores = []
    input_bits = model.input_bits
    for layer in model.layers:
        a = layer_scores(x, layer, input_bits)
        scores.append(a)
        x = packing.pack_bits(a >= 0)  # sign(0) = +1
        input_bits = "bipolar"
    return scores


@jax.jit
def packed_predict(model: PackedModel, inputs: jax.Array) -> jax.Array:
    """Class predictions from encoded inputs [batch, n_in] (+-1 or 0/1): pack, then XNOR-popcount."""
    return jnp.argmax(packed_scores(model, packing.pack_bits(inputs))[-1], axis=-1)
