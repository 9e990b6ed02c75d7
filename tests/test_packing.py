"""Packing layout and exact round trips."""

import jax
import numpy as np
import pytest

from bitnet.deploy import export, packing

LENGTHS = [1, 31, 32, 33, 784, 1568]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
def test_round_trip(length, bit_values):
    bits = np.asarray(jax.random.bernoulli(jax.random.key(length), 0.5, (3, length)))
    values = 2 * bits.astype(np.int8) - 1 if bit_values == "bipolar" else bits.astype(np.int8)
    words = packing.pack_bits(values)
    assert words.dtype == np.uint32 and words.shape == (3, packing.num_words(length))
    np.testing.assert_array_equal(packing.unpack_bits(words, length, bit_values), values)
    np.testing.assert_array_equal(export.numpy_pack(values), words)  # NumPy twin, same layout


def test_layout_lsb_first_and_zero_padding():
    values = -np.ones(40, np.int8)
    values[[0, 5, 31, 32, 39]] = 1
    words = np.asarray(packing.pack_bits(values))
    assert words[0] == (1 << 0) | (1 << 5) | (1 << 31)
    assert words[1] == (1 << 0) | (1 << 7)  # bits 40..63 are padding: 0


def test_unpack_rejects_too_many_bits():
    with pytest.raises(ValueError, match="cannot unpack 65 bits from 2"):
        packing.unpack_bits(np.zeros(2, np.uint32), 65)
