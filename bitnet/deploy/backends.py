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
    fp8       W and x as float8_e4m3fn (which holds -1, 0, +1 exactly), float32 accumulation: the fp8
              tensor cores of Ada, Hopper and later GPUs (cuBLASLt), at int8's rate. NVIDIA does not
              document the width of their accumulator (the DeepSeek-V3 report measured about 14
              bits retained on an H800), so the claim is the measured one: sums that climb to the
              fan-in and then step by one were exact on an H200 up to n_in = 8192 at every
              accumulation precision (experiments/matmul_probe.py, BENCHMARKS.md); larger fan-ins
              are refused (MAX_FAN_IN). Elsewhere XLA upcasts fp8 operands: exact, slower.

Each matmul backend stores W as [n_out, n_in] (the contraction dimension last in both operands: the
layout cuBLAS's int8 and fp8 kernels take, measured faster on an H200 for int8, bf16 and fp8) and
folds a hidden layer's bias and threshold neurons into one offset c per neuron, so that one
comparison gives its bits: sign(a) = [a >= 0] = [x W + b >= 0], and a threshold neuron's
[s a >= T] = [x (s W) + (s b - T) >= 0] (s = +-1 flips the neuron's weights; both sides are integers).

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
POPCOUNT, NATIVE, INT8, BF16, FP8 = "popcount", "native", "int8", "bf16", "fp8"
BACKENDS = (POPCOUNT, NATIVE, INT8, BF16, FP8)
CPU_ONLY = (NATIVE,)
# (operand dtype, accumulator dtype) of each matmul backend
MATMUL_TYPES = {INT8: (jnp.int8, jnp.int32), BF16: (jnp.bfloat16, jnp.float32), FP8: (jnp.float8_e4m3fn, jnp.float32)}
# the largest fan-in each matmul backend is exact for (see the module docstring)
MAX_FAN_IN = {
    INT8: 2**31 - 2,  # |a| <= n_in + 1 fits int32
    BF16: 2**24,  # float32 holds every integer up to 2^24 in magnitude exactly
    FP8: 2**13,  # checked exact on an H200 with adversarial sums up to here, not beyond
}
# GPU without fp8 tensor cores: int8 from this many multiply-adds per call (batch x weights); bf16 below.
GPU_INT8_MIN_MACS = 10**11


def macs(batch: int, layer_sizes: Sequence[int]) -> int:
    """Multiply-adds of one call: batch x the weights of the MLP [n_in, hidden..., n_out]."""
    return batch * sum(n_in * n_out for n_in, n_out in zip(layer_sizes, layer_sizes[1:]))


def exact_for(backend: str, layer_sizes: Sequence[int]) -> bool:
    """Whether a matmul `backend` is exact for every fan-in of the MLP `layer_sizes` (MAX_FAN_IN)."""
    return max(layer_sizes[:-1]) <= MAX_FAN_IN[backend]


def choose_backend(
    platform: str, batch: int, layer_sizes: Sequence[int], native_built: bool = False, fp8_cores: bool = False
) -> str:
    """The backend for `batch` inputs to an MLP of `layer_sizes` ([n_in, hidden..., n_out]) on `platform`;
    `native_built`: whether the native kernel (bitnet.deploy.native) is available; `fp8_cores`:
    whether the GPU has fp8 tensor cores (compute capability 8.9 or later: Ada, Hopper, Blackwell).

    cpu  native where it built, else popcount. Popcount was measured 6-10x faster than int8 / bf16
         matmuls on AVX-512; native 1.75-2.0x faster than popcount for both MLPs at batch 10000,
         1.5-2.3x for the wide one at every batch, 1.7-1.9x for the paper MLP at batch 1 and as fast
         at batch 100, on an AVX2 CPU (BENCHMARKS.md).
    tpu  bf16: every MXU generation takes bf16; int8 runs natively on v5e and later only, which
         the platform name does not tell.
    gpu  fp8 where the GPU has fp8 tensor cores; else int8 when the call is compute-bound (batch x
         weights >= GPU_INT8_MIN_MACS), else bf16. Measured on an H200 (BENCHMARKS.md, "fp8 on the
         H200"): fp8 was the fastest backend for all four published models
         at batch 1 and at batch 10000 (experiments/device_inference.py); single [10000, K] x [K, N]
         matmuls at the published shapes ran fastest as fp8 too (experiments/matmul_probe.py: 0.44 ms
         against int8's 0.47 and bf16's 0.64 at 4096 x 4096). Without fp8 (the first H200 run): int8
         beat bf16 only for the 4096-wide MLP at batch 10000, bf16 was faster at batch 1.
    Any platform: a backend only where it is exact for every fan-in (exact_for), so auto always is.
    """
    if platform == "cpu":
        return NATIVE if native_built else POPCOUNT
    if platform == "gpu" and fp8_cores and exact_for(FP8, layer_sizes):
        return FP8
    if not exact_for(BF16, layer_sizes) or (platform == "gpu" and macs(batch, layer_sizes) >= GPU_INT8_MIN_MACS):
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
    name: str,
    platform: str,
    batch: int,
    layer_sizes: Sequence[int],
    native_built: bool = False,
    native_detail: str = "",
    fp8_cores: bool = False,
) -> str:
    """The backend that runs: `choose_backend`'s for "auto", else `name`, refused where it is not exact or
    cannot run (native off the CPU, or not built: `native_detail` says why)."""
    if check_backend(name) == AUTO:
        return choose_backend(platform, batch, layer_sizes, native_built, fp8_cores)
    if name in CPU_ONLY and platform != "cpu":
        raise ValueError(f"backend {name!r} runs on the CPU only, not {platform!r}: use 'auto', 'int8' or 'bf16' there")
    if name == NATIVE and not native_built:
        raise ValueError(f"backend 'native' is unavailable here ({native_detail}); use 'auto' or 'popcount'")
    if name in MAX_FAN_IN and not exact_for(name, layer_sizes):
        raise ValueError(f"{name} is exact only for fan-ins <= {MAX_FAN_IN[name]}, got layer sizes {list(layer_sizes)}: use 'auto' or 'int8'")
    return name


def weight_rows(sign: jax.Array, mask: jax.Array, n_in: int) -> jax.Array:
    """W as int8 [n_out, n_in] in {-1, 0, +1}, from packed rows [n_out, words] of sign and mask bits."""
    return packing.unpack_bits(sign, n_in, "bipolar", jnp.int8) * packing.unpack_bits(mask, n_in, "binary", jnp.int8)


def unpack_weights(sign: jax.Array, mask: jax.Array, n_in: int, backend: str) -> jax.Array:
    """W as [n_out, n_in] in {-1, 0, +1}, the backend's operand dtype, from packed rows [n_out, words]."""
    return as_operand(weight_rows(sign, mask, n_in), backend)


def as_operand(values: jax.Array, backend: str) -> jax.Array:
    """Integers in {-1, 0, +1} as the backend's operand dtype (through float32 for fp8: every type holds them)."""
    return values.astype(jnp.float32).astype(MATMUL_TYPES[backend][0])


def operand_bits(bits: jax.Array, input_bits: str, backend: str) -> jax.Array:
    """Bits (True = on) as the backend's operands, +-1 or 0/1: one select and convert, which XLA fuses
    with the comparison that made the bits (two steps, through an integer, left a pass over the
    [batch, n] booleans of its own on an H200)."""
    low = -1.0 if input_bits == "bipolar" else 0.0
    return jnp.where(bits, 1.0, low).astype(MATMUL_TYPES[backend][0])


def operands(values: jax.Array, input_bits: str, backend: str) -> jax.Array:
    """Inputs [batch, n] as the backend's operand dtype: +-1 or 0/1, a bit being value > 0 (as `packing.pack_bits`)."""
    return operand_bits(jnp.asarray(values) > 0, input_bits, backend)


def dot_sums(x: jax.Array, weights: jax.Array, backend: str) -> jax.Array:
    """x W for x [batch, n_in] and weights [n_out, n_in], in the backend's accumulator (exact: module docstring).
    fp8 asks for HIGHEST precision: on an H200 it ran as fast as the preset without cuBLASLt's fast
    accumulation, which cannot compile a batch of 1 (experiments/matmul_probe.py, BENCHMARKS.md)."""
    precision = jax.lax.Precision.HIGHEST if backend == FP8 else None
    return jax.lax.dot_general(x, weights, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=MATMUL_TYPES[backend][1])


def dot_scores(x: jax.Array, weights: jax.Array, bias: jax.Array, backend: str) -> jax.Array:
    """int32 [batch, n_out] = x W + b (weights [n_out, n_in])."""
    return dot_sums(x, weights, backend).astype(jnp.int32) + bias
