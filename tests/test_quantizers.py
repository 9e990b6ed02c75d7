"""Straight-through sign and ternarizer: forward values and gradients equal their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.core import quantizers

X = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5])
EXPECTED_GRAD = {
    "hard_tanh": np.array([0, 1, 1, 1, 1, 1, 0], np.float32),
    "identity": np.ones(7, np.float32),
    "tanh": 1 - np.tanh(np.asarray(X)) ** 2,
}
SURROGATE_OF = {
    "hard_tanh": lambda x: (np.abs(x) <= 1).astype(np.float32),
    "identity": np.ones_like,
    "tanh": lambda x: 1 - np.tanh(x) ** 2,
}


def test_sign_of_zero_is_plus_one():
    np.testing.assert_array_equal(quantizers.sign(X), [-1, -1, -1, 1, 1, 1, 1])


@pytest.mark.parametrize("surrogate", sorted(EXPECTED_GRAD))
def test_ste_gradient_matches_definition(surrogate):
    upstream = jnp.arange(1.0, 8.0)
    loss = lambda x: jnp.sum(quantizers.ste_sign(x, surrogate) * upstream)
    expected = EXPECTED_GRAD[surrogate] * np.asarray(upstream)
    np.testing.assert_allclose(jax.grad(loss)(X), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(X), expected, rtol=1e-6)
    # vmap over a batch of rows: each row gets its own gradient
    batch = jnp.stack([X, -X])
    grads = jax.vmap(jax.grad(loss))(batch)
    np.testing.assert_allclose(grads[0], expected, rtol=1e-6)
    expected_neg = SURROGATE_OF[surrogate](-np.asarray(X)) * np.asarray(upstream)
    np.testing.assert_allclose(grads[1], expected_neg, rtol=1e-6)


def test_ste_forward_under_jit_and_vmap():
    out = jax.jit(jax.vmap(lambda x: quantizers.ste_sign(x, "hard_tanh")))(jnp.stack([X, -X]))
    np.testing.assert_array_equal(out[0], quantizers.sign(X))
    np.testing.assert_array_equal(out[1], quantizers.sign(-X))


def test_unknown_surrogate_is_rejected():
    with pytest.raises(ValueError, match="unknown STE surrogate"):
        quantizers.check_surrogate("relu")


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_ternarizer_zero_fraction_matches_lambda(sparsity):
    w = jax.random.normal(jax.random.key(0), (64, 48))
    t = quantizers.ternarize(w, sparsity)
    assert set(np.unique(np.asarray(t))) <= {-1.0, 0.0, 1.0}
    assert int(jnp.sum(t == 0)) == int(sparsity * w.size)
    kept = t != 0
    np.testing.assert_array_equal(t[kept], jnp.sign(w)[kept])
    # the zeros are exactly the smallest magnitudes
    if sparsity > 0:
        assert float(jnp.max(jnp.abs(w)[~kept])) < float(jnp.min(jnp.abs(w)[kept]))


def test_kth_smallest_equals_sort_for_every_rank():
    """The radix select must agree with a sort, including ties, zeros, subnormals and big values."""
    rng = np.random.default_rng(0)
    values = np.concatenate([
        np.abs(rng.normal(size=300)) * 0.03,
        np.full(20, 0.0125), np.zeros(7), np.full(5, 1e-40), [3e38, 1.0, 1.0 + 2**-23],
        rng.integers(0, 3, size=40) * 0.5,  # many exact ties across 16-bit buckets
    ]).astype(np.float32)
    rng.shuffle(values)
    expected = np.sort(values)
    select = jax.jit(quantizers.kth_smallest)  # k traced: one compilation for every rank
    for k in range(values.size):
        assert float(select(jnp.asarray(values), k)) == expected[k], k


def test_kth_smallest_on_a_full_layer():
    w = jnp.abs(jax.random.normal(jax.random.key(1), (1024, 1024))) * 0.03
    for k in (0, 104857, 524288, w.size - 1):
        assert float(quantizers.kth_smallest(w, k)) == float(jnp.sort(w.ravel())[k])


def test_ternarizer_lambda_zero_is_pure_sign_even_with_zero_weight():
    w = jnp.array([[0.0, -0.1], [0.2, -3.0]])
    np.testing.assert_array_equal(quantizers.ternarize(w, 0.0), [[1, -1], [1, -1]])


def test_ternarizer_gradient_is_straight_through():
    w = jax.random.normal(jax.random.key(1), (10, 10))
    upstream = jax.random.normal(jax.random.key(2), (10, 10))
    grad = jax.jit(jax.grad(lambda w: jnp.sum(quantizers.ternarize(w, 0.5) * upstream)))(w)
    np.testing.assert_allclose(grad, upstream)  # switched-off weights get updates too


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match=r"sparsity lambda must be in \[0, 1\)"):
        quantizers.ternarize(jnp.ones(4), bad)
