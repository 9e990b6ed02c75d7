"""The packed XNOR-popcount path is bit-exact with the simulated bitwise forward of the MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.core import encodings, models
from bitnet.deploy import export, inference, packing

SIZES = (65, 33)  # odd sizes: padding bits in every layer
PIXELS = 37


def _random_bitwise_model(seed, encoding, sparsity):
    model = models.MLP(hidden_sizes=SIZES, num_classes=10, mode="bitwise", sparsity=sparsity)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (50, PIXELS), dtype=np.uint8)
    inputs = encoding(pixels)
    params = model.init(jax.random.key(seed), inputs)["params"]
    # random shadow weights and biases, with exact zeros in the bias too
    params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(seed + 1), p.shape), params)
    params["dense1"]["bias"] = params["dense1"]["bias"].at[:5].set(0.0)
    return model, params, inputs


@pytest.mark.parametrize("encoding_name", ["bipolar", "binary", "fixed2", "fixed3", "thermo2"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_packed_equals_simulated(encoding_name, sparsity):
    encoding = encodings.get_encoding(encoding_name)
    model, params, inputs = _random_bitwise_model(3, encoding, sparsity)
    logits, state = model.apply({"params": params}, inputs, mutable=["intermediates"])
    simulated = state["intermediates"]["preactivations"]

    packed = inference.pack_params(params, sparsity, encoding.bit_values)
    assert all(layer.dense == (sparsity == 0) for layer in packed.layers)
    scores = inference.packed_scores(packed, packing.pack_bits(inputs))
    assert len(scores) == len(simulated) == 3
    for got, want in zip(scores, simulated):
        assert got.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want).astype(np.int64))
    predictions = inference.packed_predict(packed, inputs)
    np.testing.assert_array_equal(predictions, np.argmax(logits, axis=-1))

    # the NumPy-only reader of the exported arrays agrees too
    arrays = export.model_arrays(packed)
    arrays.update(format=np.array(export.FORMAT))
    meta = {"bit_values": encoding.bit_values, "layer_sizes": [65, 33, 10]}
    np.testing.assert_array_equal(export.numpy_predict(arrays, meta, inputs, chunk=16), predictions)


def test_ties_go_to_lowest_index_and_sign_zero_is_plus_one():
    # one hidden neuron with a = 0 exactly must output +1; equal output scores -> index 0
    w0 = np.array([[1], [-1]], np.int8)  # x = (+1, +1) -> a = 0 -> +1
    b0 = np.array([0], np.int8)
    w1 = np.array([[1, 1, -1]], np.int8)  # scores (1, 1, -1)
    b1 = np.array([0, 0, 0], np.int8)
    packed = inference.pack_model([(w0, b0), (w1, b1)], "bipolar")
    scores = inference.packed_scores(packed, np.array([[3]], np.uint32))
    np.testing.assert_array_equal(scores[0], [[0]])
    np.testing.assert_array_equal(scores[1], [[1, 1, -1]])
    assert int(inference.packed_predict(packed, np.array([[1.0, 1.0]]))[0]) == 0


def test_pack_model_rejects_unknown_input_bits():
    with pytest.raises(ValueError, match="input_bits"):
        inference.pack_model([], "float")


@pytest.mark.parametrize("batch", [1023, 1025, 2049])
def test_batches_across_chunk_boundaries(batch):
    """Large batches run in chunks (lax.map); rows past a chunk boundary must not be lost or mixed."""
    encoding = encodings.get_encoding("bipolar")
    model = models.MLP(hidden_sizes=(40,), mode="bitwise")
    rng = np.random.default_rng(batch)
    inputs = encoding(rng.integers(0, 256, (batch, PIXELS), dtype=np.uint8))
    params = model.init(jax.random.key(batch), inputs[:1])["params"]
    params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(batch + 1), p.shape), params)
    packed = inference.pack_params(params, 0.0, "bipolar")
    expected = np.argmax(model.apply({"params": params}, inputs), axis=-1)
    np.testing.assert_array_equal(inference.packed_predict(packed, inputs), expected)
