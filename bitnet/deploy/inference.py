"""Packed bitwise inference: the exact integers of a packed model, by XOR + popcount on uint32 words
(the "popcount" backend, below) or as int8 / bf16 matmuls of the unpacked -1/0/+1 weights (the
"int8" and "bf16" backends, `bitnet.deploy.backends`), all giving the same integers.
`packed_predict(model, inputs, backend="auto")` runs the backend `backends.choose_backend` picks for
the platform and shapes (popcount on a CPU); `matmul_layers` + `matmul_predict` unpack the weights
once for many calls.

For one output neuron with sign bits w, mask bits m (1 = weight nonzero) and input bits x,
packed as in `bitnet.deploy.packing`, the integer pre-activation a = sum_i W_i x_i + b is

    +-1 inputs ("bipolar"):  a = popcount(m) - 2 * popcount((x XOR w) AND m) + b
                              (dense layer, m all ones:  a = n - 2 * popcount(x XOR w) + b)
    0/1 inputs ("binary"):   a = 2 * popcount(x AND m AND w) - popcount(x AND m) + b

since a +-1 product is +1 exactly where the two bits agree. Hidden layers always see +-1
inputs: x_{l+1} = sign(a_l) with sign(0) = +1, i.e. bit = (a_l >= 0), packed again; the hidden
layers of a bitwise net with batch norm are threshold neurons instead (no bias; bitnet.core.thresholds):
x_{l+1} = +1 where s * a_l >= T, per neuron. The prediction is argmax of the last layer's
integers, ties to the lowest index. Padding bits are 0 in x, w and m, so they never count. This
path is bit-exact with the simulated bitwise forward of `bitnet.core.models.MLP` (tests/test_inference.py,
tests/test_thresholds.py; every backend: tests/test_backends.py).

The popcount backend has two kernels, chosen by batch size (both exact, same formulas):
  row kernel     (batch <= ROW_KERNEL_MAX_BATCH) popcounts along each neuron's row of words, as
                 stored; nothing to rearrange, the fastest for a few examples.
  column kernel  (larger batches) planes transposed to [words, neurons], so one vector
                 instruction XORs one input word with 16 neurons' words at once (AVX-512 on
                 CPU), the sum over words written out term by term; the batch runs in chunks
                 of MAX_CHUNK rows under `lax.map`.
The reasons for the exact shape of the column kernel (XLA CPU fusion and vectorization
behaviour, measured in BENCHMARKS.md) are in the docstrings below.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bitnet.core import models, thresholds
from bitnet.deploy import backends, packing

VECTOR_LANES = 16  # uint32 lanes of a 512-bit vector register
ROW_KERNEL_MAX_BATCH = 8  # up to this batch the row kernel is faster (no transposes to amortize)
MAX_CHUNK = 1024  # rows per step of a large batch: [rows, neurons] temporaries of ~4 MB stay in cache
# 512-bit vectors for the popcount loops (XLA CPU defaults to 256 bits); other backends ignore it.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


@flax.struct.dataclass
class PackedLayer:
    """One layer as packed words: rows are output neurons."""

    sign: jax.Array  # uint32 [n_out, words], bit = 1 where the weight is +1
    mask: jax.Array  # uint32 [n_out, words], bit = 1 where the weight is nonzero
    bias: jax.Array  # int32 [n_out] in {-1, 0, +1}
    nonzeros: jax.Array  # int32 [n_out], popcount of each mask row
    n_in: int = flax.struct.field(pytree_node=False)
    dense: bool = flax.struct.field(pytree_node=False)  # every mask bit set: skip the AND
    polarity: jax.Array | None = None  # threshold neurons (bias 0): int32 [n_out] s in {+1, -1}
    threshold: jax.Array | None = None  # and int32 [n_out] T: output +1 where s * a >= T

    @property
    def n_out(self) -> int:
        return self.sign.shape[0]


@flax.struct.dataclass
class PackedModel:
    layers: tuple[PackedLayer, ...]
    input_bits: str = flax.struct.field(pytree_node=False)  # "bipolar" or "binary"


def pack_layer(
    weights: np.ndarray, bias: np.ndarray, polarity: np.ndarray | None = None, threshold: np.ndarray | None = None
) -> PackedLayer:
    """Pack ternary W [n_in, n_out] and b [n_out] (values in {-1, 0, +1}), and a threshold layer's (s, T)."""
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
        polarity=None if polarity is None else jnp.asarray(polarity, jnp.int32),
        threshold=None if threshold is None else jnp.asarray(threshold, jnp.int32),
    )


def pack_model(layers: Sequence[tuple[jax.Array, jax.Array]], input_bits: str) -> PackedModel:
    """Pack the ternary (W, b) layers of a bitwise MLP whose inputs are `input_bits` values."""
    return PackedModel(tuple(pack_layer(w, b) for w, b in layers), check_input_bits(input_bits))


def check_input_bits(input_bits: str) -> str:
    if input_bits not in packing.BIT_VALUES:
        raise ValueError(f"input_bits must be one of {packing.BIT_VALUES}, got {input_bits!r}")
    return input_bits


def pack_params(params: dict, sparsity: float, input_bits: str, batch_stats: dict | None = None) -> PackedModel:
    """Pack the bitwise network defined by MLP parameters (the shadow weights) and lambda; with batch
    norm (params["bn{l}"] and its running statistics batch_stats["bn{l}"]) its hidden layers become
    threshold neurons, folded exactly as the model evaluates them (bitnet.core.thresholds)."""
    layers = []
    for index, (weights, bias) in enumerate(models.ternary_layers(params, sparsity)):
        name = f"bn{index}"
        if name not in params:
            layers.append(pack_layer(weights, bias))
            continue
        if batch_stats is None or name not in batch_stats:
            raise ValueError(f"layer {index} has batch norm but no running statistics (batch_stats[{name!r}])")
        layers.append(pack_layer(weights, bias, *thresholds.fold_batch_norm(params[name], batch_stats[name], int(weights.shape[0]))))
    return PackedModel(tuple(layers), check_input_bits(input_bits))


def _popcount(words: jax.Array) -> jax.Array:
    return jax.lax.population_count(words).astype(jnp.int32)


@flax.struct.dataclass
class KernelLayer:
    """A layer prepared for one kernel: planes as stored ([n_out, words], row kernel) or
    transposed and padded to whole vectors ([words, width], column kernel)."""

    sign: jax.Array  # uint32
    mask: jax.Array  # uint32
    offset: jax.Array  # int32 [n_out or width]: popcount(m) or n_in (+-1 inputs), plus the bias
    polarity: jax.Array | None  # threshold neurons' s and T, int32 [n_out] (None: sign(a))
    threshold: jax.Array | None
    n_out: int = flax.struct.field(pytree_node=False)
    input_bits: str = flax.struct.field(pytree_node=False)
    dense: bool = flax.struct.field(pytree_node=False)
    columns: bool = flax.struct.field(pytree_node=False)


def column_width(n_out: int) -> int:
    """Neurons padded to whole vectors, and never a multiple of 4 KiB per row of words (rows that
    far apart share L1 cache sets, and the column kernel reads every row for each vector)."""
    width = -(-n_out // VECTOR_LANES) * VECTOR_LANES
    return width + VECTOR_LANES if (4 * width) % 4096 == 0 else width


def kernel_layer(layer: PackedLayer, input_bits: str, columns: bool) -> KernelLayer:
    """`layer`, seeing `input_bits` values, prepared for the column or the row kernel."""
    offset = layer.bias if input_bits == "binary" else layer.bias + (layer.n_in if layer.dense else layer.nonzeros)
    sign, mask, offset = jnp.asarray(layer.sign), jnp.asarray(layer.mask), jnp.asarray(offset, jnp.int32)
    if columns:
        pad = column_width(layer.n_out) - layer.n_out
        sign, mask, offset = jnp.pad(sign.T, ((0, 0), (0, pad))), jnp.pad(mask.T, ((0, 0), (0, pad))), jnp.pad(offset, (0, pad))
    return KernelLayer(sign, mask, offset, layer.polarity, layer.threshold, layer.n_out, input_bits, layer.dense, columns)


def kernel_layers(model: PackedModel, columns: bool) -> tuple[KernelLayer, ...]:
    """Every layer of `model` prepared for one kernel; hidden layers see +-1 inputs."""
    input_bits = [model.input_bits] + ["bipolar"] * (len(model.layers) - 1)
    return tuple(kernel_layer(layer, bits, columns) for layer, bits in zip(model.layers, input_bits))


def use_columns(batch: int) -> bool:
    """Whether a batch of this size runs the column kernel (else the row kernel)."""
    return batch > ROW_KERNEL_MAX_BATCH


def _combine(total: jax.Array, layer: KernelLayer) -> jax.Array:
    return layer.offset + total if layer.input_bits == "binary" else layer.offset - 2 * total


def _word_terms(x: jax.Array, sign: jax.Array, mask: jax.Array, layer: KernelLayer) -> jax.Array:
    """Per-word popcount terms of the formulas in the module docstring (broadcasting x, sign, mask)."""
    if layer.input_bits == "binary":
        return 2 * _popcount(x & sign) - _popcount(x & mask)  # sign bits lie inside the mask
    if layer.dense:
        return _popcount(x ^ sign)
    return _popcount((x ^ sign) & mask)


def row_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    """Row kernel: int32 [batch, n_out] for packed inputs [batch, words], reducing along rows."""
    terms = _word_terms(x[:, None, :], layer.sign[None], layer.mask[None], layer)
    return _combine(jnp.sum(terms, axis=-1), layer)


def column_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    """Column kernel: int32 [batch, n_out] for packed inputs [batch, words].

    The sum over words is written out term by term, not as an XLA reduction: the loop over the
    contiguous neuron axis then vectorizes for any number of words (a reduction of more than a
    few dozen terms became an inner loop, vectorized along the words, 10-30x slower).
    """
    total = None
    for k in range(x.shape[1]):
        term = _word_terms(x[:, k, None], layer.sign[k][None], layer.mask[k][None], layer)
        total = term if total is None else total + term
    return _combine(total, layer)[:, : layer.n_out]


def kernel_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    return column_scores(x, layer) if layer.columns else row_scores(x, layer)


def layer_scores(x: jax.Array, layer: PackedLayer, input_bits: str) -> jax.Array:
    """Integer pre-activations int32 [batch, n_out] of one layer for packed inputs [batch, words]."""
    return kernel_scores(x, kernel_layer(layer, input_bits, use_columns(x.shape[0])))


def _pack_by_dot(bits: jax.Array) -> jax.Array:
    """`packing.pack_bits` of [batch, n] as an integer dot with the powers of two (exact: a sum of
    distinct powers). XLA CPU never fuses a dot, so the kernel producing `bits` stays a loop of
    its own; the sum in `pack_bits` would be fused with it (or into the next layer's kernel, which
    would redo it for every neuron), and that loop no longer vectorizes."""
    pad = -bits.shape[-1] % packing.WORD_BITS
    bits = jnp.pad(bits.astype(jnp.uint32), ((0, 0), (0, pad))).reshape(bits.shape[0], -1, packing.WORD_BITS)
    powers = jnp.left_shift(jnp.uint32(1), jnp.arange(packing.WORD_BITS, dtype=jnp.uint32))
    return jax.lax.dot_general(bits, powers, (((2,), (0,)), ((), ())), preferred_element_type=jnp.uint32)


def _pack_hidden(bits: jax.Array) -> jax.Array:
    """Pack hidden bits [batch, n] into words: the dot on CPU, `pack_bits` elsewhere."""
    return jax.lax.platform_dependent(bits, cpu=_pack_by_dot, default=packing.pack_bits)


def hidden_bits(scores: jax.Array, layer: KernelLayer | MatmulLayer) -> jax.Array:
    """A hidden layer's outputs as bits (True = +1): sign(a) with sign(0) = +1, or s * a >= T for threshold neurons."""
    return scores >= 0 if layer.threshold is None else layer.polarity * scores >= layer.threshold


def _forward(layers: Sequence, x: jax.Array, scores_of: Callable, inputs_of: Callable) -> list[jax.Array]:
    """Every layer's scores: `scores_of(inputs, layer)`, a hidden layer's bits turned into the next inputs by `inputs_of`."""
    scores = [scores_of(x, layers[0])]
    for previous, layer in zip(layers, layers[1:]):
        scores.append(scores_of(inputs_of(hidden_bits(scores[-1], previous)), layer))
    return scores


def _popcount_forward(layers: Sequence[KernelLayer], x: jax.Array) -> list[jax.Array]:
    return _forward(layers, x, kernel_scores, _pack_hidden)


@flax.struct.dataclass
class MatmulLayer:
    """A layer unpacked for a matmul backend (bitnet.deploy.backends): W [n_in, n_out] in {-1, 0, +1}."""

    weights: jax.Array  # int8 or bf16 [n_in, n_out]
    bias: jax.Array  # int32 [n_out]
    polarity: jax.Array | None  # threshold neurons' s and T, as in PackedLayer
    threshold: jax.Array | None
    backend: str = flax.struct.field(pytree_node=False)


@functools.partial(jax.jit, static_argnames="backend")
def matmul_layers(model: PackedModel, backend: str) -> tuple[MatmulLayer, ...]:
    """Every layer of `model` unpacked for the int8 or bf16 backend: done once, then reused by `matmul_predict`."""
    return tuple(
        MatmulLayer(backends.unpack_weights(layer.sign, layer.mask, layer.n_in, backend), layer.bias, layer.polarity, layer.threshold, backend)
        for layer in model.layers
    )


def _matmul_scores(x: jax.Array, layer: MatmulLayer) -> jax.Array:
    return backends.dot_scores(x, layer.weights, layer.bias, layer.backend)


def _matmul_forward(layers: Sequence[MatmulLayer], values: jax.Array, input_bits: str) -> list[jax.Array]:
    """Scores from encoded inputs [batch, n_in] (+-1 or 0/1 values); hidden layers see +-1."""
    backend = layers[0].backend
    hidden = functools.partial(backends.operands, input_bits="bipolar", backend=backend)
    return _forward(layers, backends.operands(values, input_bits, backend), _matmul_scores, hidden)


@functools.partial(jax.jit, static_argnames="input_bits")
def matmul_predict(layers: tuple[MatmulLayer, ...], inputs: jax.Array, input_bits: str) -> jax.Array:
    """Class predictions from encoded inputs [batch, n_in] by a matmul backend, on layers unpacked by `matmul_layers`."""
    return jnp.argmax(_matmul_forward(layers, inputs, input_bits)[-1], axis=-1)


def layer_sizes(model: PackedModel) -> list[int]:
    """[n_in, hidden..., n_out] of a packed MLP."""
    return [model.layers[0].n_in, *(layer.n_out for layer in model.layers)]


def backend_for(model: PackedModel, batch: int, backend: str = backends.AUTO, platform: str | None = None) -> str:
    """The backend `packed_predict` runs for `batch` inputs on `platform` (default: JAX's default backend)."""
    return backends.resolve_backend(backend, platform or jax.default_backend(), batch, layer_sizes(model))


@functools.partial(jax.jit, static_argnames="backend", compiler_options=COMPILER_OPTIONS)
def packed_scores(model: PackedModel, x: jax.Array, backend: str = backends.POPCOUNT) -> list[jax.Array]:
    """Every layer's integer pre-activations for packed input words x [batch, words], by one backend.

    Same kernels as `packed_predict`, without its chunking: meant for checks and analysis.
    """
    x = jnp.asarray(x, jnp.uint32)
    if backends.check_backend(backend) == backends.POPCOUNT:
        return _popcount_forward(kernel_layers(model, use_columns(x.shape[0])), x)
    values = packing.unpack_bits(x, model.layers[0].n_in, model.input_bits)
    return _matmul_forward(matmul_layers(model, backend), values, model.input_bits)


def chunking(batch: int, max_chunk: int = MAX_CHUNK) -> tuple[int, int]:
    """(chunks, rows per chunk) covering `batch` rows: at least 2 chunks, at most `max_chunk` rows each."""
    count = max(2, -(-batch // max_chunk))
    return count, -(-batch // count)


@functools.partial(jax.jit, static_argnames="backend", compiler_options=COMPILER_OPTIONS)
def packed_predict(model: PackedModel, inputs: jax.Array, backend: str = backends.AUTO) -> jax.Array:
    """Class predictions from encoded inputs [batch, n_in] (+-1 or 0/1) by `backend` ("auto": `backend_for`'s
    choice on JAX's default backend; all give the same integers). A matmul backend unpacks the weights
    inside this call: to unpack them once for many calls use `matmul_layers` and `matmul_predict`."""
    backend = backend_for(model, inputs.shape[0], backend)
    if backend != backends.POPCOUNT:
        return matmul_predict(matmul_layers(model, backend), inputs, model.input_bits)
    return popcount_predict(model, inputs)


def popcount_predict(model: PackedModel, inputs: jax.Array) -> jax.Array:
    """Class predictions by the popcount backend: pack, then XNOR-popcount (called inside `packed_predict`'s jit).

    Batches for the column kernel run as a loop (`lax.map`, at least 2 steps) over chunks of rows:
    the chunks keep every temporary in cache, and the loop boundary keeps XLA from fusing the
    transposes of `kernel_layers` into the kernel (it would then read the planes with a stride,
    again for every row); being loop-invariant, they are done once per call.
    """
    x = packing.pack_bits(inputs)
    columns = use_columns(x.shape[0])
    layers = kernel_layers(model, columns)

    def predict_rows(words: jax.Array) -> jax.Array:
        return jnp.argmax(_popcount_forward(layers, words)[-1], axis=-1)

    if not columns:
        return predict_rows(x)
    count, rows = chunking(x.shape[0])
    chunks = jnp.pad(x, ((0, count * rows - x.shape[0]), (0, 0))).reshape(count, rows, -1)
    return jax.lax.map(predict_rows, chunks).reshape(-1)[: x.shape[0]]
