"""Model summary of a bitwise MLP, in the spirit of `larq.models.summary`: size, memory, ops.

Per layer: shape, parameters (weights + biases), stored bits per weight, nonzero weights,
memory as float32 vs packed, and ops per example.

Bits per weight are the bits the packed XNOR-popcount path actually stores, not the
information content:
    1   dense +-1 layer: the sign plane only (its mask plane would be all ones, and the dense
        kernel in `bitnet.deploy.inference` never reads it)
    2   layer with zero weights (lambda > 0): sign plane + mask plane. A ternary weight carries
        at most log2(3) = 1.58 bits, so 2 is the honest cost of this layout, not a lower bound.
    32  real-valued layer (float or compressed mode)
Packed bytes = the uint32 planes above (each row padded to whole 32-bit words, as stored) plus
one int8 per bias, or, for the threshold neurons of a bitwise net with batch norm (which has no
hidden biases: batch norm and sign fold into an int32 threshold T and an int8 sign s per neuron,
bitnet.core.thresholds), 4 + 1 bytes per neuron. The bitnet-packed .npz stores BOTH planes for every
layer (a dense layer's mask too), so its arrays are `npz_bytes`, reported separately.
Params = weights + the per-neuron numbers: a bias, a threshold and its sign, or batch norm's scale
and shift (a real-valued layer with batch norm); float32 bytes = 4 per param.

Ops per example: a bitwise layer does n_in * n_out binary ops (XNOR / XOR + popcount, one per
weight bit; n_out * ceil(n_in / 32) word instructions) and no multiply-accumulate; a real-valued
layer does n_in * n_out MACs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from bitnet.core import models
from bitnet.deploy import packing

INPUT_LABELS = {"bipolar": "+-1", "binary": "0/1", "float": "real"}
PER_NEURON = {"bias": 1, "threshold": 2, "batch norm": 2}  # params per neuron
PACKED_NEURON_BYTES = {"bias": 1, "threshold": 4 + 1}  # int8 bias; int32 threshold + int8 sign


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    """One layer's sizes and costs; see the module docstring for the definitions."""

    name: str
    n_in: int
    n_out: int
    inputs: str  # the values this layer sees: "bipolar", "binary" or "float"
    neurons: str  # the per-neuron numbers: "bias", "threshold" (bitwise with batch norm) or "batch norm" (real-valued)
    params: int  # weights + per-neuron numbers
    nonzero_weights: int
    bits_per_weight: int  # stored: 1, 2 or 32
    float32_bytes: int
    packed_bytes: int  # what the packed kernel keeps in memory (= float32_bytes for a real layer)
    npz_bytes: int  # this layer's arrays in a bitnet-packed file (0 for a real layer)
    binary_ops: int  # per example
    macs: int  # per example


def layer_summary(
    name: str, n_in: int, n_out: int, nonzero_weights: int, inputs: str, bitwise: bool = True, neurons: str = "bias"
) -> LayerSummary:
    """The summary of one layer from its shape, nonzero count and per-neuron numbers (the single place sizes are defined)."""
    size = n_in * n_out
    params = size + PER_NEURON[neurons] * n_out
    float32_bytes = 4 * params
    plane_bytes = 4 * n_out * packing.num_words(n_in)
    if not bitwise:
        bits, packed, npz, binary_ops, macs = 32, float32_bytes, 0, 0, size
    else:
        bits = 1 if nonzero_weights == size else 2
        packed = bits * plane_bytes + PACKED_NEURON_BYTES[neurons] * n_out  # planes + int8 biases (or thresholds, signs)
        npz = 2 * plane_bytes + PACKED_NEURON_BYTES[neurons] * n_out + 4  # sign + mask planes, per-neuron numbers, int32 n_in
        binary_ops, macs = size, 0
    return LayerSummary(
        name=name,
        n_in=n_in,
        n_out=n_out,
        inputs=inputs,
        neurons=neurons,
        params=params,
        nonzero_weights=int(nonzero_weights),
        bits_per_weight=bits,
        float32_bytes=float32_bytes,
        packed_bytes=packed,
        npz_bytes=npz,
        binary_ops=binary_ops,
        macs=macs,
    )


def summarize_params(params: dict, sparsity: float, input_bits: str, mode: str = "bitwise") -> list[LayerSummary]:
    """Rows for MLP parameters {dense0: {kernel, bias}, ...} (and {bn0: ...} with batch norm): the bitwise
    net (ternarized at `sparsity`) fed `input_bits` values, or the real-valued net for mode float / compressed."""
    models.check_mode(mode)
    bitwise = mode == "bitwise"
    if bitwise and input_bits not in packing.BIT_VALUES:
        raise ValueError(f"input_bits must be one of {packing.BIT_VALUES}, got {input_bits!r}")
    layers = models.ternary_layers(params, sparsity) if bitwise else _real_layers(params, mode)
    rows, inputs = [], input_bits if bitwise else "float"
    for index, (kernel, _) in enumerate(layers):
        n_in, n_out = kernel.shape
        neurons = ("threshold" if bitwise else "batch norm") if f"bn{index}" in params else "bias"
        rows.append(layer_summary(f"dense{index}", n_in, n_out, int(np.count_nonzero(np.asarray(kernel))), inputs, bitwise, neurons))
        inputs = "bipolar" if bitwise else "float"  # hidden layers see sign(a)
    return rows


def _real_layers(params: dict, mode: str) -> list[tuple[Any, Any]]:
    return [models.layer_weights(params[name], mode) for name in models.layer_names(params)]


def summarize_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> list[LayerSummary]:
    """Rows for a loaded bitnet-packed-v1 or -v2 model (`bitnet.deploy.export.load_npz`)."""
    rows, inputs = [], meta["bit_values"]
    for index, n_out in enumerate(meta["layer_sizes"]):
        n_in = int(arrays[f"n_in{index}"])
        nonzeros = int(np.bitwise_count(arrays[f"w{index}_mask"]).sum())
        neurons = "threshold" if f"t{index}" in arrays else "bias"
        rows.append(layer_summary(f"dense{index}", n_in, int(n_out), nonzeros, inputs, neurons=neurons))
        inputs = "bipolar"
    return rows


def totals(rows: Sequence[LayerSummary]) -> dict[str, int]:
    """Sums over layers of every count."""
    keys = ("params", "nonzero_weights", "float32_bytes", "packed_bytes", "npz_bytes", "binary_ops", "macs")
    return {key: sum(getattr(row, key) for row in rows) for key in keys}


def compression_ratio(rows: Sequence[LayerSummary]) -> float:
    """float32 bytes / packed bytes of the whole model."""
    total = totals(rows)
    return total["float32_bytes"] / total["packed_bytes"]


def format_summary(rows: Sequence[LayerSummary]) -> str:
    """An aligned text table, one line per layer, a totals line and the notes that define it."""
    header = ("layer", "shape", "inputs", "neurons", "params", "nonzero w", "bits/w", "float32 B", "packed B", "binary ops", "MACs")
    lines = [
        (row.name, f"{row.n_in} -> {row.n_out}", INPUT_LABELS[row.inputs], row.neurons, f"{row.params:,}", f"{row.nonzero_weights:,}",
         str(row.bits_per_weight), f"{row.float32_bytes:,}", f"{row.packed_bytes:,}", f"{row.binary_ops:,}", f"{row.macs:,}")
        for row in rows
    ]
    total = totals(rows)
    lines.append(("total", "", "", "", f"{total['params']:,}", f"{total['nonzero_weights']:,}", "",
                  f"{total['float32_bytes']:,}", f"{total['packed_bytes']:,}", f"{total['binary_ops']:,}", f"{total['macs']:,}"))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) if i < 4 else cell.rjust(width) for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(render(header))
    table = [render(header), rule, *map(render, lines[:-1]), rule, render(lines[-1])]
    notes = [
        f"compression float32 / packed: {compression_ratio(rows):.1f}x "
        f"({total['float32_bytes'] / 1024:,.1f} KiB -> {total['packed_bytes'] / 1024:,.1f} KiB)",
        "bits/w = stored bits per weight: 1 = +-1 sign plane only (dense layer), 2 = sign + mask planes "
        "(layer has zeros; a ternary weight holds log2(3) = 1.58 bits), 32 = real-valued",
        "binary ops = XNOR/XOR + popcount per weight bit and example; MACs = float multiply-accumulates per example "
        f"(a float32 net of this shape: {total['binary_ops'] + total['macs']:,} MACs)",
    ]
    if any(row.neurons == "threshold" for row in rows):
        notes.append(
            "threshold neurons: batch norm and sign folded into an int32 threshold T and a sign s per neuron, "
            "output +1 iff s * a >= T (exact); the batch-norm net has no hidden biases (bitnet-packed-v2)"
        )
    if total["npz_bytes"]:
        version = "v2" if any(row.neurons == "threshold" for row in rows) else "v1"
        notes.append(f"bitnet-packed-{version} .npz arrays (both planes for every layer): {total['npz_bytes']:,} B")
    return "\n".join([*table, "", *notes])
