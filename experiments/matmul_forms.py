"""The whole-net forms experiments/matmul_probe.py checks and times on a GPU: each a formulation of the
packed model's integers as matmuls (operand dtype, weights layout, dot precision), with the bias and
threshold neurons folded in as `bitnet.deploy.inference.folded` does. No flags here, so tests import it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bitnet.deploy import inference

FP8 = jnp.float8_e4m3fn
PRESETS = {
    "default": None,
    "precise": "ANY_F8_ANY_F8_F32",  # cuBLASLt without fast accumulation (partial sums promoted to float32)
    "fast": "ANY_F8_ANY_F8_F32_FAST_ACCUM",
    "highest": "HIGHEST",
}
# form: (operand dtype, weights layout, precision key)
FORMS = {
    "int8_kn": (jnp.int8, "kn", "default"),
    "int8_nk": (jnp.int8, "nk", "default"),
    "bf16_kn": (jnp.bfloat16, "kn", "default"),
    "bf16_nk": (jnp.bfloat16, "nk", "default"),
    "fp8_kn": (FP8, "kn", "default"),
    "fp8_nk": (FP8, "nk", "default"),
    "fp8_nk_precise": (FP8, "nk", "precise"),
    "fp8_nk_fast": (FP8, "nk", "fast"),
    "fp8_nk_highest": (FP8, "nk", "highest"),
    "fp8_nk_narrow": (FP8, "nk", "default"),  # hidden sums rounded to bf16 / f16 where every threshold allows (narrow_dtype)
}


def precision(key: str) -> Any:
    name = PRESETS[key]
    if name is None:
        return None
    if name == "HIGHEST":
        return jax.lax.Precision.HIGHEST
    return getattr(jax.lax.DotAlgorithmPreset, name)


def accumulator(dtype: Any) -> Any:
    return jnp.int32 if dtype == jnp.int8 else jnp.float32


def dot(x: jax.Array, w: jax.Array, layout: str, key: str) -> jax.Array:
    """x [M, K] times W ([K, N] as "kn", [N, K] as "nk"), accumulated in int32 (int8) or float32."""
    contract = (((1,), (0,)), ((), ())) if layout == "kn" else (((1,), (1,)), ((), ()))
    return jax.lax.dot_general(x, w, contract, precision=precision(key), preferred_element_type=accumulator(x.dtype))


def stored(weights: np.ndarray, dtype: Any, layout: str) -> jax.Array:
    """int weights [N, K] in {-1, 0, +1} as `dtype` in `layout` (via float32: every dtype holds them exactly)."""
    array = weights if layout == "nk" else weights.T
    return jnp.asarray(np.ascontiguousarray(array).astype(np.float32)).astype(dtype)


def folded_layers(model: inference.PackedModel) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer (W [N, K] int, t [N] int), the library's fold (`inference.folded`) with t = -c:
    hidden layers' bits x W >= t, the last layer's scores x W - t."""
    last = len(model.layers) - 1
    return [(np.asarray(w), -np.asarray(c, np.int64)) for w, c in (inference.folded(layer, index == last) for index, layer in enumerate(model.layers))]


def narrow_dtype(threshold: np.ndarray) -> str:
    """The narrowest float whose rounding of integer sums keeps [sum >= t] for every t: bf16 where
    t and t - 1 are integers it holds (|.| <= 256), f16 likewise (<= 2048), else float32. Rounding
    to nearest is monotone, so sum >= t gives round(sum) >= t and sum <= t - 1 gives round(sum) <= t - 1."""
    low, high = int(threshold.min()) - 1, int(threshold.max())
    for name, exact in (("bfloat16", 256), ("float16", 2048)):
        if -exact <= low and high <= exact:
            return name
    return "float32"


def prepare(model: inference.PackedModel, form: str) -> tuple[tuple, tuple[str, ...]]:
    """(layers, the hidden layers' comparison dtypes) of a folded net in `form`."""
    dtype, layout, _ = FORMS[form]
    acc = accumulator(dtype)
    folded = folded_layers(model)
    narrow = tuple(narrow_dtype(t) if form.endswith("_narrow") else "" for _, t in folded[:-1])
    return tuple((stored(w, dtype, layout), jnp.asarray(t).astype(acc)) for w, t in folded), narrow


@functools.partial(jax.jit, static_argnames=("form", "input_bits", "narrow"))
def net_forward(layers: tuple, values: jax.Array, form: str, input_bits: str, narrow: tuple[str, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """(predictions, the last layer's scores) of a folded net in `form`, from encoded inputs [batch, n_in]
    (both from one compiled call: the exactness check and the timing run the same program)."""
    dtype, layout, key = FORMS[form]
    low = -1 if input_bits == "bipolar" else 0
    x = jnp.where(values > 0, 1, low).astype(dtype)
    for index, (weights, threshold) in enumerate(layers[:-1]):
        sums = dot(x, weights, layout, key)
        if narrow and narrow[index]:
            sums, threshold = sums.astype(narrow[index]), threshold.astype(narrow[index])
        x = jnp.where(sums >= threshold, 1, -1).astype(dtype)
    weights, threshold = layers[-1]
    last = dot(x, weights, layout, key) - threshold
    return jnp.argmax(last, axis=-1), last
