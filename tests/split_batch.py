"""A child process of tests/test_cpu_kernels.py, started with two CPU devices: the popcount backend splits a batch over
both and must give the NumPy forward's predictions. Prints one JSON line: how batches were split, how many nets
were exact."""

from __future__ import annotations

import json

import jax
import numpy as np

from bitnet.deploy import inference
from tests.helpers import dense_layers, numpy_scores, packed_model, random_layers

CASES = [("bipolar", False, False), ("bipolar", False, True), ("binary", False, True), ("bipolar", True, False)]  # input bits, thresholds, ternary


def main() -> None:
    rng = np.random.default_rng(11)
    exact = 0
    for bit_values, thresholds, ternary in CASES:
        layers, inputs = random_layers(rng, (70, 96, 48, 10), bit_values, 777, thresholds)
        if not ternary:  # dense layers: no zero weight
            layers = dense_layers(layers)
        packed = packed_model(layers, bit_values)
        assert all(layer.dense for layer in packed.layers) == (not ternary)
        predictions = inference.packed_predict(packed, inputs, "popcount")  # the XLA backend splits; native uses threads
        assert len(predictions.sharding.device_set) == 2, predictions.sharding
        exact += bool(np.array_equal(np.asarray(predictions), np.argmax(numpy_scores(layers, inputs)[-1], axis=-1)))
    split = {str(batch): len(inference.split_devices(batch)) for batch in (1, 600, 777)}
    print(json.dumps({"devices": len(jax.local_devices()), "split": split, "exact": exact, "cases": len(CASES)}))


if __name__ == "__main__":
    main()
