"""Exact backends of packed inference, and the rule that picks one per platform and shape.

Every backend computes the same integer pre-activations a = sum_i W_i x_i + b (W in {-1, 0, +1},
x in {-1, +1} or {0, 1}) and so the same predictions:

    popcount  XOR / AND + popcount on uint32 words (bitnet.deploy.inference's kernels, XLA loops).
    native    the same words and formulas in one C++ kernel, an XLA FFI call on the CPU
              (bitnet.deploy.native, built with the system compiler): register-blocked over rows
              and neurons, which XLA's loop fusion does not do. The CPU's, where it builds.
    int8      W and x as int8, `dot_general` with int32 accumulation: exact (|a| <= n_in + 1 < 2^31);
              the int8 tensor cores of a GPU, the MXU of TPU v5e and later.
    bf16      W and x as bf16 (which holds -1, 0, +1 exactly), float32 accumulation, rounded back
              to int32: exact while every partial sum is an integer of at most n_in <= 2^24 in
              magnitude (float32 holds every such integer), i.e. for n_in <= 2^24; the bias is
              added in int32 afterwards. Every GPU's tensor cores and every TPU's MXU take bf16.

`choose_backend` is a pure function of platform, batch, layer sizes and whether the native kernel
built here (see its docstring for the rule and its evidence); `resolve_backend` turns "auto" into its
choice and checks a forced one.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from bitnet.deploy import packing

AUTO = "auto"
POPCOUNT, NATIVE, INT8, BF16 = "popcount", "native", "int8", "bf16"
BACKENDS = (POPCOUNT, NATIVE, INT8, BF16)
CPU_ONLY = (NATIVE,)
# (operand dtype, accumulator dtype) of each matmul backend
MATMUL_TYPES = {INT8: (jnp.int8, jnp.int32), BF16: (jnp.bfloat16, jnp.float32)}
BF16_MAX_FAN_IN = 2**24  # float32 holds every integer up to 2^24 in magnitude exactly
# GPU: int8 from this many multiply-adds per call (batch x weights); bf16 below. See choose_backend.
GPU_INT8_MIN_MACS = 10**11


def macs(batch: int, layer_sizes: Sequence[int]) -> int:
    """Multiply-adds of one call: batch x the weights of the MLP [n_in, hidden..., n_out]."""
    return batch * sum(n_in * n_out for n_in, n_out in zip(layer_sizes, layer_sizes[1:]))


def choose_backend(platform: str, batch: int, layer_sizes: Sequence[int], native_built: bool = False) -> str:
    """The backend for `batch` inputs to an MLP of `layer_sizes` ([n_in, hidden..., n_out]) on `platform`;
    `native_built`: whether the native kernel (bitnet.deploy.native) is available.

    cpu  native where it built, else popcount. Popcount was measured 6-10x faster than int8 / bf16
         matmuls on AVX-512; native 1.75-2.0x faster than popcount for both MLPs at batch 10000,
         1.5-2.3x for the wide one at every batch, 1.7-1.9x for the paper MLP at batch 1 and as fast
         at batch 100, on an AVX2 CPU (BENCHMARKS.md).
    tpu  bf16: every MXU generation takes bf16; int8 runs natively on v5e and later only, which
         the platform name does not tell.
    gpu  int8 when the call is compute-bound (batch x weights >= GPU_INT8_MIN_MACS), else bf16.
         Documented: H100 / H200 dense int8 tensor-core throughput is 2x bf16's (1979 vs 989
         T(FL)OPS, SXM). Measured on an H200 by experiments/device_inference.py (BENCHMARKS.md,
         "Inference backends on an accelerator"): this rule picked the fastest backend in all eight
         cases (four published models, batch 1 and 10000); int8 beat bf16 only for the 4096-wide
         MLP at batch 10000 (3.7e11 MACs: 1.56-1.58 vs 1.60-1.65 ms); bf16 was faster at batch 1
         and for the paper MLP at batch 10000 (2.9e10 MACs: 0.39-0.40 vs 0.45 ms).
    Any platform: bf16 only while every fan-in is <= BF16_MAX_FAN_IN (else int8), so auto is always exact.
    """
    if platform == "cpu":
        return NATIVE if native_built else POPCOUNT
    if max(layer_sizes[:-1]) > BF16_MAX_FAN_IN:
        return INT8
    if platform == "gpu" and macs(batch, layer_sizes) >= GPU_INT8_MIN_MACS:
        return INT8
    return BF16


def platform_backends(platform: str) -> tuple[str, ...]:
    """The backends that can run on `platform`: native only on the CPU (and there only where it built:
    `bitnet.deploy.inference.runnable_backends`)."""
    return tuple(name for name in BACKENDS if name not in CPU_ONLY or platform == "cpu")


def check_backend(name: str) -> str:
    """`name` if it is "auto" or a backend; a ValueError naming the choices otherwise."""
    if name != AUTO and name not in BACKENDS:
        raise ValueError(f"backend must be {AUTO!r} or one of {BACKENDS}, got {name!r}")
    return name


def resolve_backend(
    name: str, platform: str, batch: int, layer_sizes: Sequence[int], native_built: bool = False, native_detail: str = ""
) -> str:
    """The backend that runs: `choose_backend`'s for "auto", else `name`, refused where it is not exact or
    cannot run (native off the CPU, or not built: `native_detail` says why)."""
    if check_backend(name) == AUTO:
        return choose_backend(platform, batch, layer_sizes, native_built)
    if name in CPU_ONLY and platform != "cpu":
        raise ValueError(f"backend {name!r} runs on the CPU only, not {platform!r}: use 'auto', 'int8' or 'bf16' there")
    if name == NATIVE and not native_built:
        raise ValueError(f"backend 'native' is unavailable here ({native_detail}); use 'auto' or 'popcount'")
    if name == BF16 and max(layer_sizes[:-1]) > BF16_MAX_FAN_IN:
        raise ValueError(f"bf16 is exact only for fan-ins <= {BF16_MAX_FAN_IN}, got layer sizes {list(layer_sizes)}")
    return name


def unpack_weights(sign: jax.Array, mask: jax.Array, n_in: int, backend: str) -> jax.Array:
    """W [n_in, n_out] in {-1, 0, +1} as the backend's operand dtype, from packed rows [n_out, words]."""
    dtype = MATMUL_TYPES[backend][0]
    signs = packing.unpack_bits(sign, n_in, "bipolar", jnp.int8)
    nonzero = packing.unpack_bits(mask, n_in, "binary", jnp.int8)
    return (signs * nonzero).T.astype(dtype)


def operands(values: jax.Array, input_bits: str, backend: str) -> jax.Array:
    """Inputs [batch, n] as the backend's operand dtype: +-1 or 0/1, a bit being value > 0 (as `packing.pack_bits`)."""
    bits = jnp.asarray(values) > 0
    low = -1 if input_bits == "bipolar" else 0
    return jnp.where(bits, 1, low).astype(MATMUL_TYPES[backend][0])


def dot_scores(x: jax.Array, weights: jax.Array, bias: jax.Array, backend: str) -> jax.Array:
    """int32 [batch, n_out] = x W + b, accumulated in the backend's accumulator (exact, see the module docstring)."""
    accumulate = MATMUL_TYPES[backend][1]
    total = jax.lax.dot_general(x, weights, (((1,), (0,)), ((), ())), preferred_element_type=accumulate)
    return total.astype(jnp.int32) + bias
