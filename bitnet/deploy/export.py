"""Portable export of a bitwise MLP: the "bitnet-packed-v1" and "-v2" .npz formats (spec in README.md).

Keys: `format` = "bitnet-packed-v1"; `meta` = JSON (encoding, thresholds, bit_values,
input_size, layer_sizes, ...); per layer l: `w{l}_sign`, `w{l}_mask` uint32 [n_out, ceil(n_in/32)],
`b{l}` int8 [n_out], `n_in{l}` int32 scalar. "bitnet-packed-v2" (a bitwise net with batch norm)
has threshold neurons in its hidden layers: `t{l}` int32 [n_out] and `s{l}` int8 [n_out] in place
of `b{l}` (bitnet.core.thresholds); its output layer is a v1 layer. `numpy_predict` runs a loaded file
with NumPy alone, as any program without JAX would.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from bitnet import faults
from bitnet.core import thresholds
from bitnet.errors import ExportError  # defined with the other user errors; still importable from here

FORMAT = "bitnet-packed-v1"
FORMAT_V2 = "bitnet-packed-v2"  # hidden layers of threshold neurons (batch norm folded)
FORMATS = (FORMAT, FORMAT_V2)
KEY_DTYPES = {"w": np.uint32, "b": np.int8, "t": np.int32, "s": np.int8, "n": np.int32}  # by a layer key's first letter
REQUIRED_META = ("encoding", "thresholds", "bit_values", "input_size", "layer_sizes")


def model_arrays(model) -> dict[str, np.ndarray]:
    """The per-layer arrays of a `bitnet.deploy.inference.PackedModel`, keyed as in the format."""
    arrays = {}
    for index, layer in enumerate(model.layers):
        arrays[f"w{index}_sign"] = np.asarray(layer.sign, np.uint32)
        arrays[f"w{index}_mask"] = np.asarray(layer.mask, np.uint32)
        if layer.threshold is None:
            arrays[f"b{index}"] = np.asarray(layer.bias, np.int8)
        else:
            arrays[f"t{index}"] = np.asarray(layer.threshold, np.int32)
            arrays[f"s{index}"] = np.asarray(layer.polarity, np.int8)
        arrays[f"n_in{index}"] = np.asarray(layer.n_in, np.int32)
    return arrays


def format_of(arrays: dict[str, np.ndarray]) -> str:
    """The format of a model's layer arrays: v2 if its hidden layers are threshold neurons."""
    return FORMAT_V2 if "t0" in arrays else FORMAT


def has_thresholds(fmt: str, index: int, num_layers: int) -> bool:
    """Whether layer `index` of a `fmt` file holds threshold neurons (v2: every hidden layer) instead of a bias."""
    return fmt == FORMAT_V2 and index < num_layers - 1


def model_meta(model, encoding, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `meta` of a PackedModel fed by `bitnet.core.encodings.Encoding`, plus provenance."""
    return {
        "encoding": encoding.name,
        "thresholds": list(encoding.thresholds),
        "bit_values": model.input_bits,
        "input_size": model.layers[0].n_in,
        "layer_sizes": [layer.n_out for layer in model.layers],
        **(extra_meta or {}),
    }


def layer_keys(num_layers: int, fmt: str = FORMAT) -> list[str]:
    """The array keys of the format, layer by layer, in the order they are written."""
    return [key for index in range(num_layers) for key in _keys(fmt, index, num_layers)]


def _keys(fmt: str, index: int, num_layers: int) -> tuple[str, ...]:
    neurons = (f"t{index}", f"s{index}") if has_thresholds(fmt, index, num_layers) else (f"b{index}",)
    return (f"w{index}_sign", f"w{index}_mask", *neurons, f"n_in{index}")


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write a model's layer arrays and meta as a bitnet-packed-v1 or -v2 file (the formats' one writer)."""
    fmt = format_of(arrays)
    layers = {key: arrays[key] for key in layer_keys(len(meta["layer_sizes"]), fmt)}
    tmp = f"{os.fspath(path)}.tmp.npz"
    # Compressed: a dense layer's mask plane is all ones, so a file is about half its planes' size.
    np.savez_compressed(tmp, format=np.array(fmt), meta=np.array(json.dumps(meta)), **layers)
    faults.point("npz_written", tmp)  # test-only
    os.replace(tmp, path)  # never leave a half-written model under the final name


def save_npz(path: str | os.PathLike, model, encoding, extra_meta: dict[str, Any] | None = None) -> None:
    """Write a PackedModel and its input `bitnet.core.encodings.Encoding` as bitnet-packed-v1 (or -v2, with thresholds)."""
    write_npz(path, model_arrays(model), model_meta(model, encoding, extra_meta))


def load_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a bitnet-packed-v1 or -v2 file: (arrays, meta). Raises ExportError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file; export a model with experiments.evaluate first") from None
    except Exception as error:  # zip or npy damage
        raise ExportError(f"{path}: not a readable .npz file ({error}); re-export the model") from None
    check_arrays(arrays, str(path))
    return arrays, json.loads(str(arrays["meta"]))


def check_arrays(arrays: dict[str, np.ndarray], where: str = "model") -> None:
    """Check the format tag, keys, shapes, dtypes and value ranges of a bitnet-packed-v1 or -v2 dict."""
    if "format" not in arrays or str(arrays["format"]) not in FORMATS:
        found = str(arrays["format"]) if "format" in arrays else "no format key"
        raise ExportError(f"{where}: format tag is {found!r}, expected {FORMAT!r} or {FORMAT_V2!r}; is this a bitnet model?")
    fmt = str(arrays["format"])
    if format_of(arrays) != fmt:
        raise ExportError(f"{where}: format tag is {fmt!r}, but its arrays are {format_of(arrays)!r}'s (thresholds t0: v2); the file is damaged")
    try:
        meta = json.loads(str(arrays.get("meta")))
    except json.JSONDecodeError:
        raise ExportError(f"{where}: 'meta' is not valid JSON; re-export the model") from None
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ExportError(f"{where}: meta lacks {missing}; re-export the model")
    if meta["bit_values"] not in ("bipolar", "binary"):
        raise ExportError(f"{where}: meta bit_values must be 'bipolar' or 'binary', got {meta['bit_values']!r}")
    n_in, num_layers = int(meta["input_size"]), len(meta["layer_sizes"])
    for index, n_out in enumerate(meta["layer_sizes"]):
        words = -(-n_in // 32)
        shapes = {"w": (n_out, words), "n": ()}  # by the key's first letter: w{l}_sign/_mask, n_in{l}; b, t, s: (n_out,)
        expected = {key: (KEY_DTYPES[key[0]], shapes.get(key[0], (n_out,))) for key in _keys(fmt, index, num_layers)}
        for key, (dtype, shape) in expected.items():
            if key not in arrays:
                raise ExportError(f"{where}: missing array {key!r} for layer {index}; re-export the model")
            array = arrays[key]
            if array.dtype != dtype or array.shape != shape:
                raise ExportError(
                    f"{where}: {key} is {array.dtype}{list(array.shape)}, expected "
                    f"{np.dtype(dtype)}{list(shape)}; the file is damaged or from another format"
                )
        _check_neurons(arrays, index, n_in, has_thresholds(fmt, index, num_layers), where)
        if int(arrays[f"n_in{index}"]) != n_in:
            raise ExportError(f"{where}: n_in{index} = {int(arrays[f'n_in{index}'])}, expected {n_in}")
        _check_padding(arrays, index, n_in, where)
        if np.any(arrays[f"w{index}_sign"] & ~arrays[f"w{index}_mask"]):
            raise ExportError(f"{where}: w{index}_sign has bits outside w{index}_mask; the file is damaged")
        n_in = n_out


def _check_padding(arrays: dict[str, np.ndarray], index: int, n_in: int, where: str) -> None:
    """The bits past n_in in each row's last word are 0 in both planes: the packed dot product counts every mask
    bit (and XOR / AND the sign bits under it), so a set padding bit would count an input that does not exist."""
    if n_in % 32 == 0:
        return  # no padding
    padding = np.uint32(0xFFFFFFFF << (n_in % 32) & 0xFFFFFFFF)  # the bits past element n_in - 1 of the last word
    for key in (f"w{index}_mask", f"w{index}_sign"):
        if np.any(arrays[key][:, -1] & padding):
            raise ExportError(
                f"{where}: {key} has bits set past n_in{index} = {n_in} in its rows' last word (padding must be 0); "
                "the file is damaged, re-export the model"
            )


def _check_neurons(arrays: dict[str, np.ndarray], index: int, n_in: int, threshold: bool, where: str) -> None:
    """Biases in {-1, 0, +1}; or threshold neurons' signs in {-1, +1} and thresholds in [-n_in, n_in + 1]."""
    if not threshold:
        outside = arrays[f"b{index}"][np.abs(arrays[f"b{index}"].astype(np.int16)) > 1]
        if outside.size:
            raise ExportError(f"{where}: b{index} holds {int(outside[0])}, but biases must be -1, 0 or +1; the file is damaged")
        return
    signs = arrays[f"s{index}"][np.abs(arrays[f"s{index}"]) != 1]
    if signs.size:
        raise ExportError(f"{where}: s{index} holds {int(signs[0])}, but threshold signs must be -1 or +1; the file is damaged")
    outside = arrays[f"t{index}"][(arrays[f"t{index}"] < -n_in) | (arrays[f"t{index}"] > n_in + 1)]
    if outside.size:
        raise ExportError(f"{where}: t{index} holds {int(outside[0])}, outside [-n_in, n_in + 1] = [{-n_in}, {n_in + 1}]; the file is damaged")


def to_packed_model(arrays: dict[str, np.ndarray], meta: dict[str, Any]):
    """A `bitnet.deploy.inference.PackedModel` from loaded arrays (for the jitted JAX path)."""
    from bitnet.deploy import inference  # JAX only where it is used: numpy_predict needs none

    layers = []
    for index in range(len(meta["layer_sizes"])):
        mask = arrays[f"w{index}_mask"]
        nonzeros = np.bitwise_count(mask).sum(axis=-1, dtype=np.int32)
        n_in = int(arrays[f"n_in{index}"])
        threshold = f"t{index}" in arrays
        layers.append(
            inference.PackedLayer(
                sign=arrays[f"w{index}_sign"],
                mask=mask,
                bias=np.zeros(len(mask), np.int32) if threshold else arrays[f"b{index}"].astype(np.int32),
                nonzeros=nonzeros,
                n_in=n_in,
                dense=bool(np.all(nonzeros == n_in)),
                polarity=arrays[f"s{index}"].astype(np.int32) if threshold else None,
                threshold=arrays[f"t{index}"] if threshold else None,
            )
        )
    return inference.PackedModel(tuple(layers), meta["bit_values"])


def numpy_pack(bits: np.ndarray) -> np.ndarray:
    """NumPy twin of `bitnet.deploy.packing.pack_bits` (bit j of word k = element 32k + j > 0)."""
    length = bits.shape[-1]
    pad = -length % 32
    padded = np.pad(bits > 0, [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
    return np.packbits(padded, axis=-1, bitorder="little").view("<u4")


def numpy_predict(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], inputs: np.ndarray, chunk: int = 256
) -> np.ndarray:
    """Predictions for encoded inputs [batch, input_size] with NumPy only (the format's semantics)."""
    inputs = np.asarray(inputs)
    if len(inputs) > chunk:  # bound the [chunk, n_out, words] temporaries
        return np.concatenate([numpy_predict(arrays, meta, inputs[i : i + chunk], chunk) for i in range(0, len(inputs), chunk)])
    x = numpy_pack(inputs)
    input_bits = meta["bit_values"]
    for index in range(len(meta["layer_sizes"])):
        sign, mask = arrays[f"w{index}_sign"], arrays[f"w{index}_mask"]
        bias = arrays[f"b{index}"].astype(np.int64) if f"b{index}" in arrays else 0  # threshold neurons: no bias
        rows = x[:, None, :]
        if input_bits == "binary":
            active = rows & mask
            scores = 2 * np.bitwise_count(active & sign).sum(-1, dtype=np.int64)
            scores -= np.bitwise_count(active).sum(-1, dtype=np.int64)
        else:
            nonzeros = np.bitwise_count(mask).sum(-1, dtype=np.int64)
            scores = nonzeros - 2 * np.bitwise_count((rows ^ sign) & mask).sum(-1, dtype=np.int64)
        scores += bias
        x = numpy_pack(thresholds.fire(scores, arrays[f"s{index}"], arrays[f"t{index}"]) if f"t{index}" in arrays else scores >= 0)
        input_bits = "bipolar"
    return np.argmax(scores, axis=-1)
