"""bitnet-packed-v1 .npz: round trip, and clear errors for damaged files."""

import json

import jax
import numpy as np
import pytest

from bitnet.core import encodings, models
from bitnet.deploy import export, inference
from tests import bad_inputs


@pytest.fixture
def saved(tmp_path):
    encoding = encodings.get_encoding("fixed2")
    model = models.MLP(hidden_sizes=(40,), mode="bitwise", sparsity=0.25)
    inputs = encoding(np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8))
    params = model.init(jax.random.key(0), inputs)["params"]
    packed = inference.pack_params(params, 0.25, encoding.bit_values)
    path = tmp_path / "model.npz"
    export.save_npz(path, packed, encoding, {"sparsity": 0.25})
    return path, packed, inputs


def test_round_trip(saved):
    path, packed, inputs = saved
    arrays, meta = export.load_npz(path)
    assert meta == {
        "encoding": "fixed2",
        "thresholds": [0.25, 0.5, 0.75],
        "bit_values": "bipolar",
        "input_size": 60,
        "layer_sizes": [40, 10],
        "sparsity": 0.25,
    }
    assert arrays["w0_sign"].dtype == np.uint32 and arrays["w0_sign"].shape == (40, 2)
    assert arrays["b1"].dtype == np.int8 and arrays["n_in1"].shape == ()
    restored = export.to_packed_model(arrays, meta)
    for a, b in zip(restored.layers, packed.layers):
        np.testing.assert_array_equal(a.sign, b.sign)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.bias, b.bias)
        assert (a.n_in, a.dense) == (b.n_in, b.dense)
    np.testing.assert_array_equal(
        inference.packed_predict(restored, inputs), export.numpy_predict(arrays, meta, inputs)
    )
    assert not list(path.parent.glob("*.tmp.npz"))


def _rewrite(path, **changes):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": np.array("bitnet-packed-v0")}, "format tag is 'bitnet-packed-v0'"),
        ({"format": None}, "no format key"),
        ({"w1_mask": None}, "missing array 'w1_mask'"),
        ({"w0_sign": np.zeros((40, 3), np.uint32)}, r"w0_sign is uint32\[40, 3\], expected uint32\[40, 2\]"),
        ({"b0": np.zeros(40, np.int32)}, r"b0 is int32\[40\], expected int8\[40\]"),
        ({"n_in1": np.array(41, np.int32)}, "n_in1 = 41, expected 40"),
        ({"meta": np.array(json.dumps({"encoding": "bipolar"}))}, "meta lacks"),
        ({"meta": np.array("{not json")}, "not valid JSON"),
    ],
)
def test_damaged_files_give_clear_errors(saved, changes, message):
    path = saved[0]
    _rewrite(path, **changes)
    with pytest.raises(export.ExportError, match=message):
        export.load_npz(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"hello")
    with pytest.raises(export.ExportError, match="not a readable .npz"):
        export.load_npz(path)
    with pytest.raises(export.ExportError, match="no such file"):
        export.load_npz(tmp_path / "missing.npz")


@pytest.mark.parametrize("key", ["w0_sign", "w0_mask", "w1_mask"])
def test_a_padding_bit_set_is_refused_and_the_last_real_bit_is_not(saved, key):
    """Bits past n_in (60, then 40) in a row's last word must be 0: the dot product would count them as inputs."""
    path, packed, inputs = saved
    arrays, meta = export.load_npz(path)
    last = meta["input_size"] if key.startswith("w0") else meta["layer_sizes"][0]
    plane = arrays[key].copy()
    plane[3, -1] |= np.uint32(1 << 31)
    _rewrite(path, **{key: plane})
    with pytest.raises(export.ExportError, match=rf"{key} has bits set past n_in{key[1]} = {last} .*re-export the model$"):
        export.load_npz(path)
    real = {name: arrays[name].copy() for name in (key[:2] + "_sign", key[:2] + "_mask")}
    for array in real.values():
        array[3, -1] |= np.uint32(1 << ((last - 1) % 32))  # a +1 weight on the last real input
    _rewrite(path, **real)
    export.load_npz(path)


@pytest.fixture
def saved_v2(tmp_path):
    """A bitnet-packed-v2 file: a bitwise net with batch norm (hidden sizes 40, 24), random statistics."""
    encoding = encodings.get_encoding("binary")
    model = models.MLP(hidden_sizes=(40, 24), mode="bitwise", sparsity=0.25, batch_norm=True)
    inputs = encoding(np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8))
    variables = model.init(jax.random.key(0), inputs)
    rng = np.random.default_rng(1)
    stats = {name: {"mean": rng.normal(size=len(s["mean"])) * 3, "var": rng.random(len(s["var"])) * 9} for name, s in variables["batch_stats"].items()}
    packed = inference.pack_params(variables["params"], 0.25, encoding.bit_values, stats)
    path = tmp_path / "model_v2.npz"
    export.save_npz(path, packed, encoding)
    return path, packed, inputs


def test_v2_round_trip(saved_v2):
    path, packed, inputs = saved_v2
    arrays, meta = export.load_npz(path)
    assert str(arrays["format"]) == "bitnet-packed-v2" and meta["layer_sizes"] == [40, 24, 10]
    assert set(arrays) - {"format", "meta"} == set(export.layer_keys(3, export.FORMAT_V2))
    assert (arrays["t0"].dtype, arrays["t0"].shape, arrays["s1"].dtype, arrays["s1"].shape) == (np.int32, (40,), np.int8, (24,))
    assert arrays["b2"].dtype == np.int8 and "b0" not in arrays and "b1" not in arrays
    restored = export.to_packed_model(arrays, meta)
    for a, b in zip(restored.layers, packed.layers):
        for field in ("sign", "mask", "bias", "polarity", "threshold"):
            assert (getattr(a, field) is None) == (getattr(b, field) is None)
            if getattr(a, field) is not None:
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(inference.packed_predict(restored, inputs), export.numpy_predict(arrays, meta, inputs))
    np.testing.assert_array_equal(inference.packed_predict(restored, inputs), inference.packed_predict(packed, inputs))


V2_DAMAGE = {  # how each case of bad_inputs.NPZ_V2 damages saved_v2's model
    "threshold sign out of range": {"s0": np.full(40, 2, np.int8)},
    "threshold out of range": {"t1": np.full(24, 42, np.int32)},
    "threshold dtype": {"t1": np.zeros(24, np.int16)},
    "padding bits": {"w1_mask": np.full((24, 2), 0xFFFFFFFF, np.uint32)},
    "missing sign": {"s1": None},
    "v2 tag, v1 arrays": {"t0": None},
    "v1 tag, v2 arrays": {"format": np.array("bitnet-packed-v1")},
}


@pytest.mark.parametrize("case", bad_inputs.NPZ_V2, ids=lambda case: case.id)
def test_damaged_v2_files_give_clear_errors(saved_v2, case):
    """Each damaged v2 file of README's bad-input table gets exactly its line."""
    path = saved_v2[0]
    _rewrite(path, **V2_DAMAGE[case.id])
    with pytest.raises(export.ExportError) as error:
        export.load_npz(path)
    assert str(error.value) == case.error.format(model=path)


def test_files_are_compressed_and_uncompressed_ones_still_load(saved, tmp_path):
    """A dense layer's mask plane is all ones: compression halves a wide model (the 4096 nets' 9.2 -> 4.6 MB)."""
    import zipfile

    path, packed, _ = saved
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    arrays, meta = export.load_npz(path)
    plain = tmp_path / "plain.npz"  # as bitnet wrote models before: np.savez
    np.savez(plain, format=np.array(export.format_of(arrays)), meta=np.array(json.dumps(meta)), **{k: v for k, v in arrays.items() if k not in ("format", "meta")})
    again, meta_again = export.load_npz(plain)
    assert meta_again == meta and again.keys() == arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key])
