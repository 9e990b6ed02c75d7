"""Packed bitwise inference: the exact integers of a packed model, by XOR + popcount on uint32 words
(the "popcount" backend, below, in XLA; the "native" backend, the same formulas in a C++ kernel,
`bitnet.deploy.native`) or as int8 / bf16 / fp8 matmuls of the unpacked -1/0/+1 weights (the "int8",
"bf16" and "fp8" backends, `bitnet.deploy.backends`), all giving the same integers.
`packed_predict(model, inputs, backend="auto")` runs the backend `backends.choose_backend` picks for
the platform and shapes (native on a CPU where it builds, else popcount; fp8 on a GPU with fp8
tensor cores); `matmul_layers` +
`matmul_predict` unpack the weights once for many calls.

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
  column kernel  (larger batches) planes transposed to [words, neurons] and cut into tiles of
                 neurons small enough to stay in the L1 cache ([tiles, words, tile], `column_tile`);
                 a loop over the tiles runs every row of the chunk against one tile, where one
                 vector instruction XORs one input word with 8 or 16 neurons' words at once. The
                 sum over words is a Harley-Seal carry-save adder (`popcount_sum`): the popcount,
                 which x86 vectors lack below AVX-512 VPOPCNTDQ, runs once per 16 words instead of
                 once per word. The batch runs in chunks of MAX_CHUNK rows under `lax.map`.
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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bitnet.core import models, thresholds
from bitnet.deploy import backends, native, packing

VECTOR_LANES = 16  # uint32 lanes of a 512-bit vector register
TILE_BYTES = 32 * 1024  # one column-kernel tile of sign words: an L1 data cache (32-48 KiB on x86 cores)
MAX_TILE = 512  # neurons: a tile's rows of words stay under 4 KiB apart (rows 4 KiB apart share L1 sets)
TILE_MIN_ROWS = 256  # rows per chunk from which the column kernel runs tiles (fewer: one tile of the whole layer,
# measured faster at batch 100, where a tile's loop step had too few rows to pay for itself)
ROW_KERNEL_MAX_BATCH = 8  # up to this batch the row kernel is faster (no transposes to amortize)
MAX_CHUNK = 1024  # rows per step of a large batch: [rows, neurons] temporaries of ~4 MB stay in cache
# 512-bit vectors for the popcount loops (XLA CPU defaults to 256 bits); other backends ignore it.
BATCH = "batch"  # the mesh axis a split batch runs over
SPLIT_ROWS = 256  # rows per device, at least, of a batch split over CPU devices (copying the model to each costs)
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

    @functools.cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        """(n_in, hidden..., n_out)."""
        return (self.layers[0].n_in, *(layer.n_out for layer in self.layers))

    @functools.cached_property
    def native_model(self) -> native.NativeModel:
        """The model as the native kernel reads it (one buffer), made on first use and kept with the model."""
        return native.prepare(self)


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
    """A layer prepared for one kernel: planes as stored ([n_out, words], row kernel) or transposed,
    padded and cut into tiles of neurons ([tiles, words, tile], column kernel)."""

    sign: jax.Array  # uint32
    mask: jax.Array  # uint32
    offset: jax.Array  # int32 [n_out] or [tiles, tile]: popcount(m) or n_in (+-1 inputs), plus the bias
    polarity: jax.Array | None  # threshold neurons' s and T, int32 [n_out] (None: sign(a))
    threshold: jax.Array | None
    n_out: int = flax.struct.field(pytree_node=False)
    input_bits: str = flax.struct.field(pytree_node=False)
    dense: bool = flax.struct.field(pytree_node=False)
    columns: bool = flax.struct.field(pytree_node=False)


def column_tile(n_out: int, words: int, tiled: bool = True) -> tuple[int, int]:
    """(tiles, neurons per tile) of the column kernel: tiles of whole vectors whose sign words
    ([words, tile] uint32) fit in TILE_BYTES, as even as possible, at most MAX_TILE neurons; not
    `tiled`, one tile of the whole layer, never a multiple of 4 KiB per row of words."""
    if not tiled:
        width = -(-n_out // VECTOR_LANES) * VECTOR_LANES
        return 1, width + VECTOR_LANES if (4 * width) % 4096 == 0 else width
    most = max(VECTOR_LANES, min(MAX_TILE, TILE_BYTES // (4 * words)) // VECTOR_LANES * VECTOR_LANES)
    tiles = -(-n_out // most)
    return tiles, -(-n_out // (tiles * VECTOR_LANES)) * VECTOR_LANES


def _tiled(plane: jax.Array, tiles: int, tile: int) -> jax.Array:
    """[n_out, words] as [tiles, words, tile], the neurons padded with zero words."""
    words = plane.T
    return jnp.pad(words, ((0, 0), (0, tiles * tile - plane.shape[0]))).reshape(words.shape[0], tiles, tile).transpose(1, 0, 2)


def use_tiles(rows: int) -> bool:
    """Whether the column kernel cuts layers into tiles for chunks of this many rows."""
    return rows >= TILE_MIN_ROWS


def kernel_layer(layer: PackedLayer, input_bits: str, columns: bool, tiled: bool = True) -> KernelLayer:
    """`layer`, seeing `input_bits` values, prepared for the column (in tiles or not) or the row kernel."""
    offset = layer.bias if input_bits == "binary" else layer.bias + (layer.n_in if layer.dense else layer.nonzeros)
    sign, mask, offset = jnp.asarray(layer.sign), jnp.asarray(layer.mask), jnp.asarray(offset, jnp.int32)
    if columns:
        tiles, tile = column_tile(layer.n_out, sign.shape[1], tiled)
        sign, mask = _tiled(sign, tiles, tile), _tiled(mask, tiles, tile)
        offset = jnp.pad(offset, (0, tiles * tile - layer.n_out)).reshape(tiles, tile)
    return KernelLayer(sign, mask, offset, layer.polarity, layer.threshold, layer.n_out, input_bits, layer.dense, columns)


def kernel_layers(model: PackedModel, columns: bool, tiled: bool = True) -> tuple[KernelLayer, ...]:
    """Every layer of `model` prepared for one kernel; hidden layers see +-1 inputs."""
    input_bits = [model.input_bits] + ["bipolar"] * (len(model.layers) - 1)
    return tuple(kernel_layer(layer, bits, columns, tiled) for layer, bits in zip(model.layers, input_bits))


def use_columns(batch: int) -> bool:
    """Whether a batch of this size runs the column kernel (else the row kernel)."""
    return batch > ROW_KERNEL_MAX_BATCH


def _combine(total: jax.Array, offset: jax.Array, input_bits: str) -> jax.Array:
    return offset + total if input_bits == "binary" else offset - 2 * total


def _counted_words(x: jax.Array, sign: jax.Array, mask: jax.Array, layer: KernelLayer) -> tuple[tuple[int, jax.Array], ...]:
    """(factor, words) pairs whose factor x popcount, summed, is the formula of the module docstring
    for this layer (broadcasting x, sign, mask): what both kernels count."""
    if layer.input_bits == "binary":
        return (2, x & sign), (-1, x & mask)  # sign bits lie inside the mask
    if layer.dense:
        return ((1, x ^ sign),)
    return ((1, (x ^ sign) & mask),)


def row_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    """Row kernel: int32 [batch, n_out] for packed inputs [batch, words], reducing along rows."""
    counted = _counted_words(x[:, None, :], layer.sign[None], layer.mask[None], layer)
    terms = sum(factor * _popcount(words) for factor, words in counted)
    return _combine(jnp.sum(terms, axis=-1), layer.offset, layer.input_bits)


def _carry_save(a: jax.Array, b: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Bitwise full adder of three words: (carry, sum), so popcount(a) + popcount(b) + popcount(c)
    = 2 popcount(carry) + popcount(sum)."""
    partial = a ^ b
    return (a & b) | (partial & c), partial ^ c


def popcount_sum(words: Sequence[jax.Array]) -> jax.Array:
    """int32 sum of popcount(w) over `words` (uint32 arrays of one shape), by the Harley-Seal
    carry-save adder tree (Mula, Kurz and Lemire 2018, "Faster population counts using AVX2
    instructions"): each block of 16 words goes through 15 full adders of 5 bit operations and
    only the sixteens word is popcounted; ones, twos, fours and eights carry over to the next
    block and are popcounted once at the end. Fewer than 16 words are popcounted one by one.

    The sum over words is written out term by term, not as an XLA reduction: the loop over the
    contiguous neuron axis then vectorizes for any number of words (a reduction of more than a
    few dozen terms became an inner loop, vectorized along the words, 10-30x slower)."""
    full = len(words) // 16 * 16
    total = None
    if full:
        ones = twos = fours = eights = jnp.zeros_like(words[0])
        sixteens = []
        for start in range(0, full, 16):
            d = words[start : start + 16]
            eights_pair = []
            for half in (0, 8):
                twos_a, ones = _carry_save(ones, d[half], d[half + 1])
                twos_b, ones = _carry_save(ones, d[half + 2], d[half + 3])
                fours_a, twos = _carry_save(twos, twos_a, twos_b)
                twos_a, ones = _carry_save(ones, d[half + 4], d[half + 5])
                twos_b, ones = _carry_save(ones, d[half + 6], d[half + 7])
                fours_b, twos = _carry_save(twos, twos_a, twos_b)
                eights_half, fours = _carry_save(fours, fours_a, fours_b)
                eights_pair.append(eights_half)
            carry, eights = _carry_save(eights, *eights_pair)
            sixteens.append(_popcount(carry))
        total = 16 * functools.reduce(jnp.add, sixteens) + 8 * _popcount(eights) + 4 * _popcount(fours) + 2 * _popcount(twos) + _popcount(ones)
    for word in words[full:]:
        total = _popcount(word) if total is None else total + _popcount(word)
    return total


def _tile_totals(x: jax.Array, sign: jax.Array, mask: jax.Array, layer: KernelLayer) -> jax.Array:
    """The popcount totals int32 [rows, tile] of one tile ([words, tile] planes) for packed inputs [rows, words]."""
    per_word = [_counted_words(x[:, k, None], sign[k], mask[k], layer) for k in range(x.shape[1])]
    return sum(factor * popcount_sum([counted[term][1] for counted in per_word]) for term, (factor, _) in enumerate(per_word[0]))


def column_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    """Column kernel: int32 [batch, n_out] for packed inputs [batch, words].

    The tiles run as a loop (`lax.map`), each over every row: one tile's words stay in cache for
    all the rows, where untiled planes of a wide layer (2 MiB for 4096 x 4096) were read again from
    L3 for every row. A single tile runs without the loop."""
    tiles, _, tile = layer.sign.shape
    if tiles == 1:
        totals = _tile_totals(x, layer.sign[0], layer.mask[0], layer)[None]
    else:
        totals = jax.lax.map(lambda planes: _tile_totals(x, *planes, layer), (layer.sign, layer.mask))
    scores = _combine(totals, layer.offset[:, None, :], layer.input_bits)
    return scores.transpose(1, 0, 2).reshape(x.shape[0], tiles * tile)[:, : layer.n_out]


def kernel_scores(x: jax.Array, layer: KernelLayer) -> jax.Array:
    return column_scores(x, layer) if layer.columns else row_scores(x, layer)


def layer_scores(x: jax.Array, layer: PackedLayer, input_bits: str) -> jax.Array:
    """Integer pre-activations int32 [batch, n_out] of one layer for packed inputs [batch, words]."""
    return kernel_scores(x, kernel_layer(layer, input_bits, use_columns(x.shape[0]), use_tiles(x.shape[0])))


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


def hidden_bits(scores: jax.Array, layer: KernelLayer | PackedLayer) -> jax.Array:
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
    """A layer unpacked for a matmul backend (bitnet.deploy.backends), its threshold folded in: the
    outputs are x W + c, a hidden layer's bits [x W + c >= 0] (W = s W and c = s b - T for threshold
    neurons, W and c = b otherwise; the last layer's scores x W + b)."""

    weights: jax.Array  # the backend's operand dtype, [n_out, n_in] in {-1, 0, +1}
    offset: jax.Array  # c [n_out], in the backend's accumulator dtype (integers)
    backend: str = flax.struct.field(pytree_node=False)


def folded(layer: PackedLayer, last: bool) -> tuple[jax.Array, jax.Array]:
    """(W [n_out, n_in] int8, c [n_out] int32) of a layer: s W and s b - T for hidden threshold neurons, else W and b."""
    weights = backends.weight_rows(layer.sign, layer.mask, layer.n_in)
    if last or layer.threshold is None:
        return weights, layer.bias
    return weights * layer.polarity[:, None].astype(jnp.int8), layer.polarity * layer.bias - layer.threshold


@functools.partial(jax.jit, static_argnames="backend")
def matmul_layers(model: PackedModel, backend: str) -> tuple[MatmulLayer, ...]:
    """Every layer of `model` unpacked and folded for a matmul backend: done once, then reused by `matmul_predict`."""
    accumulate = backends.MATMUL_TYPES[backend][1]
    layers = []
    for index, layer in enumerate(model.layers):
        weights, offset = folded(layer, last=index == len(model.layers) - 1)
        layers.append(MatmulLayer(backends.as_operand(weights, backend), offset.astype(accumulate), backend))
    return tuple(layers)


def _matmul_outputs(layers: Sequence[MatmulLayer], values: jax.Array, input_bits: str) -> jax.Array:
    """The last layer's scores (accumulator dtype) from encoded inputs [batch, n_in] (+-1 or 0/1); hidden layers see +-1."""
    backend = layers[0].backend
    x = backends.operands(values, input_bits, backend)
    for layer in layers[:-1]:
        x = backends.operand_bits(backends.dot_sums(x, layer.weights, backend) + layer.offset >= 0, "bipolar", backend)
    return backends.dot_sums(x, layers[-1].weights, backend) + layers[-1].offset


@functools.partial(jax.jit, static_argnames="input_bits")
def matmul_predict(layers: tuple[MatmulLayer, ...], inputs: jax.Array, input_bits: str) -> jax.Array:
    """Class predictions from encoded inputs [batch, n_in] by a matmul backend, on layers unpacked by `matmul_layers`."""
    return jnp.argmax(_matmul_outputs(layers, inputs, input_bits), axis=-1)


def _matmul_forward(model: PackedModel, values: jax.Array, backend: str) -> list[jax.Array]:
    """Every layer's integer pre-activations a = x W + b (int32) by a matmul backend, thresholds unfolded: for checks."""

    def scores_of(x: jax.Array, layer: PackedLayer) -> jax.Array:
        return backends.dot_scores(x, backends.unpack_weights(layer.sign, layer.mask, layer.n_in, backend), layer.bias, backend)

    hidden = functools.partial(backends.operand_bits, input_bits="bipolar", backend=backend)
    return _forward(model.layers, backends.operands(values, model.input_bits, backend), scores_of, hidden)


@functools.cache
def default_platform() -> str:
    """JAX's default backend, asked once: it is fixed once JAX has started, and asking costs tens of
    microseconds when caches are cold, a sixth of a packed call at batch 1."""
    return jax.default_backend()


def has_fp8_tensor_cores(device: jax.Device) -> bool:
    """Whether `device` is an NVIDIA GPU with fp8 tensor cores: CUDA compute capability 8.9 or later
    (Ada, Hopper, Blackwell). Any other device, a ROCm GPU's "gfx..." capability included: no."""
    capability = str(getattr(device, "compute_capability", "") or "")
    parts = capability.split(".")
    if device.platform != "gpu" or len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
        return False
    return (int(parts[0]), int(parts[1])) >= (8, 9)


@functools.cache
def fp8_tensor_cores() -> bool:
    """`has_fp8_tensor_cores` of JAX's default device, asked once (as `default_platform`)."""
    return has_fp8_tensor_cores(jax.devices()[0])


def runnable_backends(platform: str | None = None) -> tuple[str, ...]:
    """Every backend that runs on `platform` (default: JAX's default backend) here: native where it built."""
    platform = platform or default_platform()
    return tuple(name for name in backends.platform_backends(platform) if name != backends.NATIVE or native.available())


def backend_for(model: PackedModel, batch: int, backend: str = backends.AUTO, platform: str | None = None) -> str:
    """The backend `packed_predict` runs for `batch` inputs on `platform` (default: JAX's default backend).
    Where the native backend may be chosen (auto on a CPU, or asked for) it is built first, once."""
    platform = platform or default_platform()
    asks_native = backend == backends.NATIVE or (backend == backends.AUTO and platform == "cpu")
    built, detail = native.status() if asks_native else (False, "")
    fp8_cores = platform == "gpu" and fp8_tensor_cores()
    return _resolved(backend, platform, batch, model.layer_sizes, built, detail, fp8_cores)


# resolve_backend is a pure function of hashable arguments here: asked once per shape, as a call at
# batch 1 is short enough for its Python to count (tens of microseconds when its caches are cold)
_resolved = functools.lru_cache(maxsize=4096)(backends.resolve_backend)


@functools.partial(jax.jit, static_argnames="backend", compiler_options=COMPILER_OPTIONS)
def packed_scores(model: PackedModel, x: jax.Array, backend: str = backends.POPCOUNT) -> list[jax.Array]:
    """Every layer's integer pre-activations for packed input words x [batch, words], by one backend.

    Same kernels as `packed_predict`, without its chunking: meant for checks and analysis.
    """
    x = jnp.asarray(x, jnp.uint32)
    if backends.check_backend(backend) == backends.NATIVE:
        raise ValueError("the native backend gives predictions only; packed_scores takes 'popcount' or a matmul backend")
    if backend == backends.POPCOUNT:
        return _popcount_forward(kernel_layers(model, use_columns(x.shape[0]), use_tiles(x.shape[0])), x)
    values = packing.unpack_bits(x, model.layers[0].n_in, model.input_bits)
    return _matmul_forward(model, values, backend)


def chunking(batch: int, max_chunk: int = MAX_CHUNK) -> tuple[int, int]:
    """(chunks, rows per chunk) covering `batch` rows: at least 2 chunks, at most `max_chunk` rows each."""
    count = max(2, -(-batch // max_chunk))
    return count, -(-batch // count)


def packed_predict(model: PackedModel, inputs: jax.Array, backend: str = backends.AUTO) -> jax.Array:
    """Class predictions from encoded inputs [batch, n_in] (+-1 or 0/1) by `backend` ("auto": `backend_for`'s
    choice on JAX's default backend; all give the same integers). A matmul backend unpacks the weights
    inside this call: to unpack them once for many calls use `matmul_layers` and `matmul_predict`.
    The native backend spreads a batch over XLA's CPU threads; the popcount backend splits a large
    batch over the local CPU devices (`split_devices`)."""
    backend = backend_for(model, inputs.shape[0], backend)
    if backend == backends.NATIVE:
        return native.native_predict(model.native_model, inputs)
    if backend != backends.POPCOUNT:
        return matmul_predict(matmul_layers(model, backend), inputs, model.input_bits)
    devices = split_devices(inputs.shape[0])
    if len(devices) > 1:
        return split_predict(model, inputs, devices)
    return _popcount_predict(model, inputs)


def split_devices(batch: int) -> tuple[jax.Device, ...]:
    """The devices a popcount batch is split over: when JAX runs on the CPU, as many local CPU devices
    as get SPLIT_ROWS rows each (none below two). XLA runs one device's XOR-popcount loops on one
    thread (a matmul alone uses every core), so a process that should use all its cores asks JAX for
    one CPU device per core (`jax_num_cpu_devices`, as the entry points in experiments/ do)."""
    if default_platform() != "cpu":
        return ()
    devices = tuple(jax.local_devices(backend="cpu"))[: batch // SPLIT_ROWS]
    return devices if len(devices) > 1 else ()


@functools.lru_cache(maxsize=None)
def _split_function(devices: tuple[jax.Device, ...]) -> tuple[Callable, Mesh]:
    """`popcount_predict` on each device's share of the batch, and the mesh of `devices` it runs on."""
    mesh = Mesh(np.array(devices), (BATCH,))
    shared = jax.shard_map(popcount_predict, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(BATCH)), out_specs=PartitionSpec(BATCH))
    return jax.jit(shared, compiler_options=COMPILER_OPTIONS), mesh


def split_predict(model: PackedModel, inputs: jax.Array, devices: tuple[jax.Device, ...]) -> jax.Array:
    """Popcount predictions with the batch split evenly over `devices` (padded with zero rows, dropped
    afterwards) and the model copied to each; the same integers as on one device."""
    function, mesh = _split_function(devices)
    batch = inputs.shape[0]
    inputs = np.pad(np.asarray(inputs), ((0, -batch % len(devices)), (0, 0)))
    model = jax.device_put(model, NamedSharding(mesh, PartitionSpec()))
    return function(model, jax.device_put(inputs, NamedSharding(mesh, PartitionSpec(BATCH))))[:batch]


@functools.partial(jax.jit, compiler_options=COMPILER_OPTIONS)
def _popcount_predict(model: PackedModel, inputs: jax.Array) -> jax.Array:
    return popcount_predict(model, inputs)


def popcount_predict(model: PackedModel, inputs: jax.Array) -> jax.Array:
    """Class predictions by the popcount backend: pack, then XNOR-popcount (traced inside a jit).

    Batches for the column kernel run as a loop (`lax.map`, at least 2 steps) over chunks of rows:
    the chunks keep every temporary in cache, and the loop boundary keeps XLA from fusing the
    transposes of `kernel_layers` into the kernel (it would then read the planes with a stride,
    again for every row); being loop-invariant, they are done once per call.
    """
    x = packing.pack_bits(inputs)
    columns = use_columns(x.shape[0])
    count, rows = chunking(x.shape[0])
    layers = kernel_layers(model, columns, use_tiles(rows))

    def predict_rows(words: jax.Array) -> jax.Array:
        return jnp.argmax(_popcount_forward(layers, words)[-1], axis=-1)

    if not columns:
        return predict_rows(x)
    chunks = jnp.pad(x, ((0, count * rows - x.shape[0]), (0, 0))).reshape(count, rows, -1)
    return jax.lax.map(predict_rows, chunks).reshape(-1)[: x.shape[0]]
