"""Issue #24's Pallas probe: can a popcount kernel on a GPU's general-purpose cores beat its tensor cores?

One +-1 layer's integer sums [batch, n] as a Pallas kernel of XOR + popcount on packed uint32 words
(`pallas_xor_scores`, lowered through Triton on a GPU; interpret mode on the CPU), checked exact
against the int8 matmul and timed beside it and the float32 matmul of the same shape. A failure to
lower or run is recorded, not raised. Run by experiments/device_inference.py on a lent GPU; the
result (slower than int8 at both widths on an H200) is in BENCHMARKS.md.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bitnet.deploy import packing
from experiments import timing


PALLAS_CHUNK = 8  # words per step of the kernel's loop: the [rows, neurons, chunk] XOR block stays in registers


def padded_words(words: jax.Array) -> jax.Array:
    """uint32 words [rows, k] zero-padded to a power of two >= PALLAS_CHUNK (Triton's blocks are powers of two);
    zero words XOR to zero, so the sums do not change."""
    k = words.shape[1]
    return jnp.pad(words, ((0, 0), (0, max(PALLAS_CHUNK, 1 << (k - 1).bit_length()) - k)))


def pallas_xor_scores(x_words: jax.Array, w_words: jax.Array, n_bits: int, block: int = 32, interpret: bool = False) -> jax.Array:
    """int32 [rows, n_out] = n_bits - 2 popcount(x ^ w) summed over words: the +-1 dot products of packed
    rows x [rows, k] and w [n_out, k] (k a power of two), as a Pallas kernel over `block` x `block` tiles
    (rows and neurons padded to whole tiles, the padding cut from the result)."""
    from jax.experimental import pallas as pl  # only this probe uses Pallas

    (rows, k), n_out = x_words.shape, w_words.shape[0]
    x_words = jnp.pad(x_words, ((0, -rows % block), (0, 0)))
    w_words = jnp.pad(w_words, ((0, -n_out % block), (0, 0)))
    chunks = k // PALLAS_CHUNK

    def kernel(x_ref, w_ref, out_ref):
        def step(c, total):
            x = jax.lax.bitcast_convert_type(x_ref[:, pl.ds(c * PALLAS_CHUNK, PALLAS_CHUNK)], jnp.int32)
            w = jax.lax.bitcast_convert_type(w_ref[:, pl.ds(c * PALLAS_CHUNK, PALLAS_CHUNK)], jnp.int32)
            return total + jnp.sum(jax.lax.population_count(x[:, None, :] ^ w[None, :, :]), axis=-1)

        differing = jax.lax.fori_loop(0, chunks, step, jnp.zeros((block, block), jnp.int32))
        out_ref[...] = n_bits - 2 * differing

    scores = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((x_words.shape[0], w_words.shape[0]), jnp.int32),
        grid=(x_words.shape[0] // block, w_words.shape[0] // block),
        in_specs=[pl.BlockSpec((block, k), lambda i, j: (i, 0)), pl.BlockSpec((block, k), lambda i, j: (j, 0))],
        out_specs=pl.BlockSpec((block, block), lambda i, j: (i, j)),
        interpret=interpret,
    )(x_words, w_words)
    return scores[:rows, :n_out]


def pallas_probe(shapes: list[tuple[int, int]], repeats: int, budget: float, interpret: bool = False) -> dict[str, Any]:
    """Per (batch, width): one width x width +-1 layer as the Pallas kernel, the int8 matmul and the float32 matmul
    (random signs), the Pallas sums checked against int8's, each timed; or the error that stopped it."""
    result: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for batch, width in shapes:
        key = f"{batch}x{width}"
        try:
            x_signs = rng.choice(np.array([-1, 1], np.int8), (batch, width))
            w_signs = rng.choice(np.array([-1, 1], np.int8), (width, width))
            x_words = padded_words(packing.pack_bits(jnp.asarray(x_signs)))
            w_words = padded_words(packing.pack_bits(jnp.asarray(w_signs)))
            pallas = jax.jit(functools.partial(pallas_xor_scores, n_bits=width, interpret=interpret))
            int8 = jax.jit(lambda x, w: jax.lax.dot_general(x, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32))
            float32 = jax.jit(lambda x, w: x @ w.T)
            x8, w8 = jnp.asarray(x_signs), jnp.asarray(w_signs)
            exact = bool(np.array_equal(np.asarray(pallas(x_words, w_words)), np.asarray(int8(x8, w8))))
            calls = {"pallas": (pallas, (x_words, w_words)), "int8": (int8, (x8, w8)), timing.FLOAT32: (float32, (x8.astype(jnp.float32), w8.astype(jnp.float32)))}
            seconds = {name: value for name, (value, _) in timing.interleaved_medians(calls, repeats, budget).items()}
            result[key] = {"exact": exact, "seconds": seconds, "pallas_over_int8": seconds["int8"] / seconds["pallas"]}
        except Exception as error:  # noqa: BLE001 -- a probe: what failed is the finding
            result[key] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]}
        print(f"  pallas probe {key}: {result[key]}", flush=True)
    return result
