"""Threshold neurons: a bitwise hidden layer's batch norm and sign folded into one integer test per neuron.

A hidden neuron of a bitwise net with batch norm turns its integer pre-activation a (no bias) into
sign(BN(a)), BN(a) = g (a - m) / sqrt(v + eps) + b (bitnet.core.models; sign(0) = +1). As a function of
an integer a that is a threshold neuron with an integer threshold T and a sign s in {+1, -1}:

    output = +1 if s * a >= T else -1

    g > 0   s = +1, T = the least integer a with BN(a) >= 0   (a tie, BN(a) = 0, gives +1)
    g < 0   s = -1, T = -(the greatest integer a with BN(a) >= 0)
    g = 0   BN(a) = b for every a: s = +1, T = -n_in if b >= 0 (always +1), else n_in + 1 (always -1)

|a| <= n_in (n_in ternary weights times +-1 or 0/1 inputs), so T is kept in [-n_in, n_in + 1]:
-n_in means "always +1" and n_in + 1 "always -1" for either s, which also covers thresholds far
outside the reachable range (a huge shift b, a tiny variance or scale).

"BN(a) >= 0" is decided exactly: in rational arithmetic on the float32 values of g, b, m, v and
eps = 1/10000, never in rounded floats, so T is the same on every machine. Float32 evaluation of
BN(a) may round across 0 at an integer a next to the threshold; that is why the bitwise net's
evaluation-mode hidden layers apply this fold (bitnet.core.models) instead of BN in float32, and the
packed path and the exported file hold the same (T, s): all of them compute the same bits.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

EPSILON = Fraction(1, 10_000)  # bitnet.core.models.BN_EPSILON, as the exact rational the fold uses
# float64 estimates of s * c (c the real threshold) at least this far (relative) from an integer need no exact check:
# their rounding error is below 1e-15 of the magnitudes involved.
SAFE_DISTANCE = 1e-9


def fires(a: int, scale: Fraction, shift: Fraction, mean: Fraction, variance: Fraction) -> bool:
    """Whether scale (a - mean) / sqrt(variance) + shift >= 0, exactly (variance > 0).

    Multiplied by sqrt(variance) > 0 it is u + shift sqrt(variance) >= 0, u = scale (a - mean): a
    comparison of squares when the two terms have opposite signs.
    """
    u = scale * (a - mean)
    if u >= 0 and shift >= 0:
        return True
    if u <= 0 and shift <= 0:
        return False
    if u > 0:
        return u * u >= shift * shift * variance
    return shift * shift * variance >= u * u


def fold_neuron(scale: float, shift: float, mean: float, var: float, n_in: int) -> tuple[int, int]:
    """(s, T) of one neuron, exactly (module docstring): every reachable a in [-n_in, n_in] gives
    +1 iff s * a >= T, T in [-n_in, n_in + 1]."""
    g, b, m = Fraction(scale), Fraction(shift), Fraction(mean)
    variance = Fraction(var) + EPSILON
    if g == 0:
        return 1, -n_in if b >= 0 else n_in + 1
    polarity = 1 if g > 0 else -1

    def fires_at(t: int) -> bool:  # in t = s * a, the neuron fires from T upwards
        return fires(polarity * t, g, b, m, variance)

    estimate = polarity * (float(m) - float(b) * math.sqrt(float(variance)) / float(g))
    threshold = int(math.ceil(min(max(estimate, -n_in), n_in + 1)))
    while threshold > -n_in and fires_at(threshold - 1):
        threshold -= 1
    while threshold <= n_in and not fires_at(threshold):
        threshold += 1
    return polarity, threshold


def check_statistics(scale: np.ndarray, shift: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """ValueError unless every value is finite and var + eps > 0 (the fold needs real numbers)."""
    for name, values in (("scale", scale), ("bias", shift), ("mean", mean), ("var", var)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"batch norm {name} holds non-finite values; the network cannot be folded into thresholds")
    if np.any(var.astype(np.float64) + float(EPSILON) <= 0):
        raise ValueError("batch norm var + eps is not positive; the statistics are damaged")


def fold(scale: np.ndarray, shift: np.ndarray, mean: np.ndarray, var: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """(s int8 [n], T int32 [n]) of a layer's neurons from batch norm's scale, shift (bias), running mean and var.

    A vectorized float64 estimate of s * c, c = m - b sqrt(v + eps) / g the real threshold, gives
    T = ceil(s * c) where that is certain: the estimate is at least SAFE_DISTANCE (relative) from an
    integer, or b = 0 (then s * c = s * m exactly). The other neurons (ties among them) and g = 0 are
    folded exactly by `fold_neuron`.
    """
    scale, shift, mean, var = (np.asarray(values, np.float32).astype(np.float64) for values in (scale, shift, mean, var))
    check_statistics(scale, shift, mean, var)
    polarity = np.where(scale < 0, -1, 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        offset = np.where(shift == 0, 0.0, shift * np.sqrt(var + float(EPSILON)) / scale)
        estimate = polarity * (mean - offset)
        far_from_integer = np.abs(estimate - np.round(estimate)) > SAFE_DISTANCE * (1 + np.abs(mean) + np.abs(offset))
    safe = (scale != 0) & np.isfinite(estimate) & (far_from_integer | (shift == 0))
    threshold = np.clip(np.ceil(np.where(safe, estimate, 0)), -n_in, n_in + 1).astype(np.int64)
    for index in np.flatnonzero(~safe):
        polarity[index], threshold[index] = fold_neuron(scale[index], shift[index], mean[index], var[index], n_in)
    return polarity.astype(np.int8), threshold.astype(np.int32)


def fold_batch_norm(bn_params: dict, bn_stats: dict, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """`fold` of one layer from its batch norm variables: params["bn{l}"] = {scale, bias}, batch_stats["bn{l}"] = {mean, var}."""
    return fold(bn_params["scale"], bn_params["bias"], bn_stats["mean"], bn_stats["var"], n_in)


def fire(scores: np.ndarray, polarity: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """The neurons' outputs as bits (True = +1) for integer pre-activations [..., n]: s * a >= T."""
    return polarity.astype(np.int64) * scores >= threshold
