"""Encodings give exactly the documented values on hand-made pixels."""

import numpy as np
import pytest

from bitnet.core import encodings

PIXELS = np.array([[0, 63, 64, 127, 128, 191, 192, 255]], np.uint8)


def test_float_scales_to_minus_one_one():
    out = encodings.get_encoding("float")(PIXELS)
    np.testing.assert_allclose(out, 2 * PIXELS.astype(np.float64) / 255.0 - 1, rtol=1e-6)
    assert out.min() == -1 and out.max() == 1 and out.dtype == np.float32


def test_bipolar_and_binary_threshold_half():
    np.testing.assert_array_equal(encodings.get_encoding("bipolar")(PIXELS), [[-1, -1, -1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(encodings.get_encoding("binary")(PIXELS), [[0, 0, 0, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(encodings.get_encoding("binary", [0.2])(PIXELS), [[0, 1, 1, 1, 1, 1, 1, 1]])


def test_fixed2_levels_and_plane_order():
    enc = encodings.get_encoding("fixed2")
    assert enc.thresholds == (0.25, 0.5, 0.75) and enc.bit_values == "bipolar" and enc.input_size(784) == 1568
    # p/255 vs thresholds .25/.5/.75 -> levels 0 0 1 1 2 2 3 3 (64/255 = .251 > .25)
    out = enc(PIXELS)
    msb, lsb = out[:, :8], out[:, 8:]
    np.testing.assert_array_equal(msb, [[-1, -1, -1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(lsb, [[-1, -1, 1, 1, -1, -1, 1, 1]])


def test_fixed3_has_three_planes_msb_first():
    enc = encodings.get_encoding("fixed3")
    out = enc(np.array([[255, 0]], np.uint8))  # levels 7 and 0
    np.testing.assert_array_equal(out, [[1, -1, 1, -1, 1, -1]])


def test_thermo2_one_plane_per_threshold():
    enc = encodings.get_encoding("thermo2")
    assert enc.thresholds == (0.25, 0.5, 0.75) and enc.input_size(784) == 3 * 784
    out = enc(PIXELS)  # levels 0 0 1 1 2 2 3 3
    np.testing.assert_array_equal(out[:, :8], [[-1, -1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out[:, 8:16], [[-1, -1, -1, -1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out[:, 16:], [[-1, -1, -1, -1, -1, -1, 1, 1]])
    np.testing.assert_array_equal(((out + 1) / 2).reshape(3, 8).sum(0), [0, 0, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("name", ["fixed2", "thermo2", "fixed3"])
def test_01_variant_is_the_same_bits_as_0_and_1(name):
    bipolar, binary = encodings.get_encoding(name), encodings.get_encoding(f"{name}_01")
    assert (binary.bit_values, binary.planes, binary.thresholds) == ("binary", bipolar.planes, bipolar.thresholds)
    pixels = np.arange(0, 256, 5, dtype=np.uint8)[None]
    np.testing.assert_array_equal(binary(pixels), (bipolar(pixels) + 1) / 2)
    assert set(np.unique(binary(pixels))) == {0.0, 1.0}


def test_custom_fixed_thresholds():
    enc = encodings.get_encoding("fixed2", [0.1, 0.2, 0.9])
    out = enc(np.array([[20, 30, 60, 240]], np.uint8))  # .078 .118 .235 .941 -> levels 0 1 2 3
    np.testing.assert_array_equal(out[:, :4], [[-1, -1, 1, 1]])
    np.testing.assert_array_equal(out[:, 4:], [[-1, 1, -1, 1]])


@pytest.mark.parametrize(
    "name, thresholds, message",
    [
        ("ternary", None, "unknown encoding"),
        ("fixed2", [0.5], "needs 3 thresholds"),
        ("bipolar", [1.5], "ascend strictly"),
        ("fixed2", [0.5, 0.4, 0.9], "ascend strictly"),
        ("float", [0.5], "takes no thresholds"),
        ("fixed9", None, "1 to 8 bits"),
        ("fixed2_11", None, "unknown encoding"),
    ],
)
def test_bad_encodings_are_rejected(name, thresholds, message):
    with pytest.raises(ValueError, match=message):
        encodings.get_encoding(name, thresholds)
