"""Bit packing: +-1 or {0, 1} values along the last axis into uint32 words.

Layout: element 32k + j is bit j (least significant first) of word k; a bit is 1 where the
value is > 0 (+1, or 1). Padding bits past the last element are 0, so any length works and
XOR / AND of two padded rows never counts the padding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

WORD_BITS = 32
BIT_VALUES = ("bipolar", "binary")


def num_words(length: int) -> int:
    """uint32 words needed for `length` bits."""
    return -(-length // WORD_BITS)


def pack_bits(values: jax.Array) -> jax.Array:
    """Pack [..., n] values into uint32 [..., ceil(n / 32)] (bit = value > 0)."""
    values = jnp.asarray(values)
    length = values.shape[-1]
    pad = num_words(length) * WORD_BITS - length
    bits = jnp.pad((values > 0).astype(jnp.uint32), [(0, 0)] * (values.ndim - 1) + [(0, pad)])
    bits = bits.reshape(*values.shape[:-1], -1, WORD_BITS)
    shifts = jnp.arange(WORD_BITS, dtype=jnp.uint32)
    return jnp.sum(bits << shifts, axis=-1, dtype=jnp.uint32)


def unpack_bits(words: jax.Array, length: int, bit_values: str = "bipolar", dtype=jnp.int8) -> jax.Array:
    """Inverse of `pack_bits`: uint32 [..., k] -> [..., length] in +-1 ("bipolar") or {0, 1}."""
    if bit_values not in BIT_VALUES:
        raise ValueError(f"bit_values must be one of {BIT_VALUES}, got {bit_values!r}")
    words = jnp.asarray(words, jnp.uint32)
    if not 0 < length <= words.shape[-1] * WORD_BITS:
        raise ValueError(f"cannot unpack {length} bits from {words.shape[-1]} uint32 words")
    shifts = jnp.arange(WORD_BITS, dtype=jnp.uint32)
    bits = ((words[..., None] >> shifts) & 1).reshape(*words.shape[:-1], -1)[..., :length]
    bits = bits.astype(dtype)
    return 2 * bits - 1 if bit_values == "bipolar" else bits
