"""Model summary: counts and bytes of known models, and the same rows from params and from .npz."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bitnet.core import encodings
from bitnet.deploy import export, inference, summary


def _params(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"dense{i}": {"kernel": rng.normal(size=(n_in, n_out)).astype(np.float32), "bias": rng.normal(size=n_out).astype(np.float32)}
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))
    }


def test_small_model_counts_and_bytes():
    rows = summary.summarize_params(_params((37, 65, 10)), sparsity=0.3, input_bits="binary")
    first, last = rows
    # 37 -> 65: 2405 weights, floor(0.3 * 2405) = 721 switched off; rows of 2 words; sign + mask planes
    assert (first.n_in, first.n_out, first.inputs, first.params) == (37, 65, "binary", 2470)
    assert (first.nonzero_weights, first.bits_per_weight) == (2405 - 721, 2)
    assert (first.float32_bytes, first.packed_bytes, first.npz_bytes) == (4 * 2470, 2 * 4 * 65 * 2 + 65, 2 * 4 * 65 * 2 + 65 + 4)
    assert (first.binary_ops, first.macs) == (2405, 0)
    # 65 -> 10: 3 words per row, hidden layers see +-1
    assert (last.inputs, last.params, last.nonzero_weights) == ("bipolar", 660, 650 - 195)
    assert (last.float32_bytes, last.packed_bytes) == (4 * 660, 2 * 4 * 10 * 3 + 10)
    total = summary.totals(rows)
    assert total["params"] == 3130 and total["binary_ops"] == 3055
    assert summary.compression_ratio(rows) == pytest.approx(4 * 3130 / (1105 + 250))

    dense = summary.summarize_params(_params((37, 65, 10)), sparsity=0.0, input_bits="bipolar")
    assert [row.bits_per_weight for row in dense] == [1, 1]
    assert [row.packed_bytes for row in dense] == [4 * 65 * 2 + 65, 4 * 10 * 3 + 10]

    real = summary.summarize_params(_params((37, 65, 10)), sparsity=0.0, input_bits="bipolar", mode="float")
    assert [(row.bits_per_weight, row.packed_bytes, row.macs, row.binary_ops) for row in real] == [
        (32, 4 * 2470, 2405, 0),
        (32, 4 * 660, 650, 0),
    ]


def test_dense_paper_model_packs_at_least_31x():
    rows = summary.summarize_params(_params((784, 1024, 1024, 1024, 10)), sparsity=0.0, input_bits="bipolar")
    total = summary.totals(rows)
    assert all(row.bits_per_weight == 1 for row in rows)
    assert total["params"] == 784 * 1024 + 2 * 1024 * 1024 + 1024 * 10 + 3 * 1024 + 10
    assert total["packed_bytes"] <= total["float32_bytes"] / 31
    text = summary.format_summary(rows)
    assert "784 -> 1024" in text and "compression float32 / packed: 31." in text


def test_npz_gives_the_same_rows_as_params(tmp_path):
    params = _params((37, 65, 33, 10), seed=1)
    for sparsity in (0.0, 0.25):
        packed = inference.pack_params(params, sparsity, "bipolar")
        path = tmp_path / f"model{sparsity}.npz"
        export.save_npz(path, packed, encodings.get_encoding("bipolar"))
        arrays, meta = export.load_npz(path)
        from_npz = summary.summarize_arrays(arrays, meta)
        from_params = summary.summarize_params(params, sparsity, "bipolar")
        assert from_npz == from_params
        assert summary.format_summary(from_npz) == summary.format_summary(from_params)
        layer_arrays = [value for key, value in arrays.items() if key not in ("format", "meta")]
        assert summary.totals(from_npz)["npz_bytes"] == sum(array.nbytes for array in layer_arrays)


def test_cli_missing_file_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.summary", f"--npz={tmp_path / 'missing.npz'}"],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.npz'}: no such file; export a model with experiments.evaluate first"]


def test_threshold_neurons_from_params_and_from_a_v2_npz(tmp_path):
    """A bitwise net with batch norm: its hidden layers are threshold neurons (int32 T + int8 s each, no bias)."""
    params = _params((37, 65, 33, 10), seed=2)
    rng = np.random.default_rng(3)
    batch_stats = {}
    for index, n_out in enumerate((65, 33)):
        del params[f"dense{index}"]["bias"]
        params[f"bn{index}"] = {"scale": rng.normal(size=n_out).astype(np.float32), "bias": rng.normal(size=n_out).astype(np.float32)}
        batch_stats[f"bn{index}"] = {"mean": rng.normal(size=n_out).astype(np.float32), "var": rng.random(n_out).astype(np.float32)}
    from_params = summary.summarize_params(params, 0.25, "bipolar")
    assert [row.neurons for row in from_params] == ["threshold", "threshold", "bias"]
    first = from_params[0]
    assert first.params == 37 * 65 + 2 * 65 and first.packed_bytes == 2 * 4 * 65 * 2 + 5 * 65
    packed = inference.pack_params(params, 0.25, "bipolar", batch_stats)
    path = tmp_path / "model.npz"
    export.save_npz(path, packed, encodings.get_encoding("bipolar"))
    arrays, meta = export.load_npz(path)
    from_npz = summary.summarize_arrays(arrays, meta)
    assert from_npz == from_params
    layer_arrays = [value for key, value in arrays.items() if key not in ("format", "meta")]
    assert summary.totals(from_npz)["npz_bytes"] == sum(array.nbytes for array in layer_arrays)
    text = summary.format_summary(from_npz)
    assert "threshold neurons:" in text and "bitnet-packed-v2 .npz arrays" in text
    real = summary.summarize_params(params, 0.0, "bipolar", mode="compressed")
    assert [row.neurons for row in real] == ["batch norm", "batch norm", "bias"] and real[0].params == 37 * 65 + 2 * 65
