"""Input encodings: how 8-bit pixels become the network's input vector.

Each encoding is a registered, named function of uint8 pixels [..., P] (P = 784 for MNIST):

    float     x = 2 * p/255 - 1                                in [-1, 1]   (real-valued runs only)
    bipolar   x = +1 if p/255 > t else -1                      t = threshold (default 0.5)
    binary    x =  1 if p/255 > t else  0
    fixedK    level = #{thresholds t_i : t_i < p/255}           in 0 .. 2^K - 1
              (2^K - 1 ascending thresholds, uniform i / 2^K by default), written as K bits,
              each bit a bipolar input (+1 for bit 1), most significant bit-plane first:
              inputs 0..P-1 are the MSB plane, P..2P-1 the next, ... (K * P inputs)

    thermoK   the same 2^K - 1 thresholds as fixedK, one bipolar plane per threshold
              (+1 where p/255 > t_i), lowest threshold first: the level is the number of +1
              bits, so every plane counts equally -- what +-1 weights can express (a fixedK
              MSB plane should weigh twice its LSB plane, which +-1 weights cannot).
    fixedK_01, thermoK_01
              the same bits as 0/1 inputs instead of +-1 (as `binary` is to `bipolar`): a bit
              that is off adds nothing to a neuron's sum, so the black background (every plane
              off) is silent instead of adding one +-w term per plane (issue #13, 2-bit input).

Uniform thresholds are what "K-bit fixed point" means for values in [0, 1]: level = the
integer part of 2^K * p/255 (clipped). MNIST pixels are mostly 0 or near 255, so any
reasonable choice puts the stroke edges in the middle levels; the thresholds are a config
field for users who want another quantizer.

Bitwise networks need a binary encoding (every input one bit); `float` is refused for them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Encoding:
    """A named encoding with its thresholds (on the p/255 scale) and the values of its bits."""

    name: str
    thresholds: tuple[float, ...]
    bit_values: str | None  # "bipolar" (+-1), "binary" (0/1), or None for real-valued input
    planes: int  # inputs per pixel

    @property
    def is_binary(self) -> bool:
        return self.bit_values is not None

    def input_size(self, num_pixels: int) -> int:
        return self.planes * num_pixels

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return encode(pixels, self)


_FIXED = re.compile(r"^(fixed|thermo)(\d+)(_01)?$")
NAMES = ("float", "bipolar", "binary", "fixedK (e.g. fixed2)", "thermoK (e.g. thermo2)", "fixedK_01", "thermoK_01")


def get_encoding(name: str, thresholds: Sequence[float] | None = None) -> Encoding:
    """The encoding called `name`; `thresholds` (None = default) are on the p/255 scale."""
    fixed = _FIXED.match(name)
    if name == "float":
        if thresholds:
            raise ValueError("the float encoding takes no thresholds; remove encoding_thresholds")
        return Encoding("float", (), None, 1)
    if name in ("bipolar", "binary"):
        values = tuple(thresholds) if thresholds else (0.5,)
        if len(values) != 1:
            raise ValueError(f"the {name} encoding takes one threshold, got {list(values)}")
        return Encoding(name, _check_thresholds(values), name, 1)
    if fixed:
        bits = int(fixed.group(2))
        if not 1 <= bits <= 8:
            raise ValueError(f"{fixed.group(1)} encodings take 1 to 8 bits, got {name!r}")
        count = 2**bits - 1
        values = tuple(thresholds) if thresholds else tuple(i / 2**bits for i in range(1, count + 1))
        if len(values) != count:
            raise ValueError(f"{name} needs {count} thresholds, got {len(values)}")
        planes = bits if fixed.group(1) == "fixed" else count
        return Encoding(name, _check_thresholds(values), "binary" if fixed.group(3) else "bipolar", planes)
    raise ValueError(f"unknown encoding {name!r}; choose one of {', '.join(NAMES)}")


def _check_thresholds(values: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if any(not 0.0 <= v <= 1.0 for v in values) or any(a >= b for a, b in zip(values, values[1:])):
        raise ValueError(f"thresholds must ascend strictly within [0, 1] (pixel/255 scale), got {list(values)}")
    return values


def encode(pixels: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Encode uint8 pixels [..., P] into float32 inputs [..., planes * P]."""
    scaled = np.asarray(pixels, np.float64) / 255.0  # float64: thresholds compare exactly as documented
    if encoding.name == "float":
        return (2.0 * scaled - 1.0).astype(np.float32)
    if encoding.planes == 1:
        on = scaled > encoding.thresholds[0]
        low = -1.0 if encoding.bit_values == "bipolar" else 0.0
        return np.where(on, 1.0, low).astype(np.float32)
    if encoding.name.startswith("thermo"):  # one plane per threshold, lowest threshold first
        bits = np.concatenate([scaled > t for t in encoding.thresholds], axis=-1)
    else:
        level = np.zeros(scaled.shape, np.int32)
        for t in encoding.thresholds:
            level += scaled > t
        bits = np.concatenate([(level >> bit) & 1 for bit in reversed(range(encoding.planes))], axis=-1)  # MSB first
    return (2.0 * bits - 1.0 if encoding.bit_values == "bipolar" else 1.0 * bits).astype(np.float32)
