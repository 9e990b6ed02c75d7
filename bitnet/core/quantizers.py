"""Quantizers: the sign function, its straight-through estimators, and the weight ternarizer.

Everything that turns a real number into a bit lives here, so the forward rule and the backward
(straight-through) rule of each quantizer can be read side by side.

Forward rules
    sign(x) = +1 if x >= 0 else -1            (sign(0) = +1, so every output is a valid bit)
    ternarize(w; lam) = sign(w) * [|w| >= beta],  beta = the lam-quantile of |w| in the layer

Backward rules (the straight-through estimator, STE), selectable by name because the paper
does not pin one down:
    "hard_tanh": dL/dx = dL/dy * 1{|x| <= 1}    (Larq's ste_sign; the default)
    "identity":  dL/dx = dL/dy
    "tanh":      dL/dx = dL/dy * (1 - tanh(x)^2)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def sign(x: Array) -> Array:
    """Sign with sign(0) = +1, in the dtype of x."""
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def _hard_tanh_grad(x: Array) -> Array:
    return (jnp.abs(x) <= 1).astype(x.dtype)


def _identity_grad(x: Array) -> Array:
    return jnp.ones_like(x)


def _tanh_grad(x: Array) -> Array:
    return 1 - jnp.tanh(x) ** 2


SURROGATES: dict[str, Callable[[Array], Array]] = {
    "hard_tanh": _hard_tanh_grad,
    "identity": _identity_grad,
    "tanh": _tanh_grad,
}


def check_surrogate(name: str) -> str:
    if name not in SURROGATES:
        raise ValueError(f"unknown STE surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    return name


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def ste_sign(x: Array, surrogate: str = "hard_tanh") -> Array:
    """sign(x) forward; backward multiplies the incoming gradient by surrogate'(x)."""
    return sign(x)


def _ste_sign_fwd(x: Array, surrogate: str) -> tuple[Array, Array]:
    return sign(x), x


def _ste_sign_bwd(surrogate: str, x: Array, g: Array) -> tuple[Array]:
    return (g * SURROGATES[surrogate](x),)


ste_sign.defvjp(_ste_sign_fwd, _ste_sign_bwd)


def check_sparsity(sparsity: float) -> float:
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity lambda must be in [0, 1), got {sparsity}; 0 gives pure +-1 weights")
    return float(sparsity)


def num_off(sparsity: float, size: int) -> int:
    """k = floor(lambda * size): how many weights of a layer of `size` ternarize sets to 0."""
    check_sparsity(sparsity)
    return int(sparsity * size)


def sparsity_mask(w: Array, sparsity: float | Array) -> Array:
    """1 where |w| >= beta, 0 for the floor(sparsity * size) weights of smallest magnitude.

    beta is the order statistic |w|_(k), k = floor(sparsity * w.size), over the whole layer, so
    exactly k weights are switched off when magnitudes are distinct. sparsity = 0 gives all ones
    without sorting. `sparsity` may also be k itself as an integer array: a traced count, one per
    run when runs with different lambdas train as a group (bitnet.training.group computes it with `num_off`
    on the host, since float32 lambda * size can round across an integer).
    """
    count = num_off(sparsity, w.size) if isinstance(sparsity, (int, float)) else sparsity
    if isinstance(count, int) and count == 0:
        return jnp.ones_like(w)
    magnitude = jnp.abs(w).astype(jnp.float32)
    beta = kth_smallest(magnitude, count)
    return (magnitude >= beta).astype(w.dtype)


def kth_smallest(values: Array, k: int | Array) -> Array:
    """The k-th smallest (0-based) of non-negative float32 `values`, exactly: sort(values)[k].

    A radix select instead of a sort, because beta is recomputed every training step and a full
    sort of a 1024 x 1024 layer costs ~40x the rest of the step on CPU. Non-negative float32
    values order like their bit patterns read as int32, so two counting passes find the answer:
    a histogram of the high 16 bits picks the bucket holding the k-th value, and a histogram of
    the low 16 bits inside that bucket picks the value.
    """
    bits = jax.lax.bitcast_convert_type(values.ravel(), jnp.int32)
    high, low = bits >> 16, bits & 0xFFFF
    below_or_at = jnp.cumsum(jnp.zeros(1 << 15, jnp.int32).at[high].add(1))
    bucket = jnp.argmax(below_or_at >= k + 1)
    rank_in_bucket = k - jnp.where(bucket > 0, below_or_at[bucket - 1], 0)
    in_bucket = jnp.zeros(1 << 16, jnp.int32).at[low].add((high == bucket).astype(jnp.int32))
    low_value = jnp.argmax(jnp.cumsum(in_bucket) >= rank_in_bucket + 1)
    return jax.lax.bitcast_convert_type((bucket << 16) | low_value, jnp.float32)


def ternarize(w: Array, sparsity: float | Array = 0.0) -> Array:
    """Ternary weights sign(w) * mask in {-1, 0, +1}; the backward pass is the identity.

    The identity backward sends every update straight to the real-valued shadow weights,
    including those currently switched off, so a connection can come back on once its
    magnitude climbs over beta again (the paper's noisy backpropagation).

    In bitnet the shadow weights are the stage-1 parameters w_bar (compressed weight
    tanh(w_bar)). Because tanh is odd and increasing, ternarize(tanh(w_bar)) equals
    ternarize(w_bar) exactly, so layers ternarize w_bar directly and the gradient does NOT pass
    through tanh: tanh'(w_bar) would shrink the updates of exactly the confident (saturated)
    weights and freeze them, while the binarized forward pass does not depend on tanh at all.
    """
    return _masked_sign(w, jax.lax.stop_gradient(sparsity_mask(w, sparsity)))


@jax.custom_vjp
def _masked_sign(w: Array, mask: Array) -> Array:
    """sign(w) * mask; backward: the identity to w (the mask is a constant: a traced sparsity may be one per run)."""
    return sign(w) * mask


def _masked_sign_fwd(w: Array, mask: Array) -> tuple[Array, None]:
    return _masked_sign(w, mask), None


def _masked_sign_bwd(_: None, g: Array) -> tuple[Array, None]:
    return (g, None)


_masked_sign.defvjp(_masked_sign_fwd, _masked_sign_bwd)
