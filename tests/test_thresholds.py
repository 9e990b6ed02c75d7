"""Threshold neurons: batch norm and sign folded exactly into (s, T); the model evaluates its hidden layers by them."""

import itertools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bitnet.core import encodings, models, thresholds
from bitnet.deploy import export, inference, packing
from bitnet.training import binarized, plan
from bitnet.runs import evaluate
from configs import smoke

N_IN = 12


def exact_outputs(scale, shift, mean, var, n_in):
    """+1 / -1 of sign(BN(a)) for every reachable a in [-n_in, n_in], in exact rational arithmetic."""
    variance = Fraction(float(np.float32(var))) + thresholds.EPSILON
    args = [Fraction(float(np.float32(value))) for value in (scale, shift, mean)]
    return np.array([1 if thresholds.fires(a, *args[:2], args[2], variance) else -1 for a in range(-n_in, n_in + 1)])


def folded_outputs(polarity, threshold, n_in):
    return np.where(thresholds.fire(np.arange(-n_in, n_in + 1), np.int8(polarity), np.int32(threshold)), 1, -1)


# (scale g, shift b, mean m, var v) -> (s, T) for N_IN = 12. With v = 0, sqrt(v + eps) = 1/100 exactly.
HAND_MADE = {
    "tie at an integer mean": ((1.0, 0.0, 3.0, 1.0), (1, 3)),  # BN(3) = 0 -> +1
    "tie through the shift": ((1.0, -300.0, 0.0, 0.0), (1, 3)),  # BN(a) = 100 a - 300: BN(3) = 0 -> +1
    "between integers": ((2.0, 0.5, -1.25, 3.0), (1, -1)),  # c = -1.25 - 0.5 sqrt(3.0001) / 2 = -1.683
    "negative scale": ((-1.0, 0.0, 2.5, 1.0), (-1, -2)),  # +1 iff a <= 2.5, i.e. -a >= -2
    "negative scale, tie": ((-1.0, -300.0, 0.0, 0.0), (-1, 3)),  # BN(a) = -100 a - 300 >= 0 iff a <= -3
    "zero scale, positive shift": ((0.0, 0.5, 4.0, 1.0), (1, -N_IN)),  # always +1
    "zero scale, zero shift": ((0.0, 0.0, 4.0, 1.0), (1, -N_IN)),  # BN = 0 -> sign(0) = +1
    "zero scale, negative shift": ((0.0, -0.5, 4.0, 1.0), (1, N_IN + 1)),  # always -1
    "huge variance": ((1.0, 1.0, 0.0, 1e30), (1, -N_IN)),  # c = -1e15: always +1
    "huge variance, negative shift": ((1.0, -1.0, 0.0, 1e30), (1, N_IN + 1)),  # never
    "tiny scale": ((1e-30, -1.0, 0.0, 1.0), (1, N_IN + 1)),
    "tiny variance": ((1.0, 0.015, 2.0, 1e-12), (1, 2)),  # c = 2 - 0.015 * 0.0100...: just below 2
    "mean past the range": ((1.0, 0.0, 40.0, 1.0), (1, N_IN + 1)),
}


@pytest.mark.parametrize("name", HAND_MADE)
def test_hand_made_folds(name):
    stats, expected = HAND_MADE[name]
    assert thresholds.fold_neuron(*(float(np.float32(value)) for value in stats), N_IN) == expected
    polarity, threshold = thresholds.fold(*(np.array([value], np.float32) for value in stats), N_IN)
    assert (int(polarity[0]), int(threshold[0])) == expected
    np.testing.assert_array_equal(folded_outputs(*expected, N_IN), exact_outputs(*stats, N_IN))


def random_statistics(rng, count, n_in):
    """Random batch-norm numbers with many exact and near ties: integer and integer + 1 ulp means, zero shifts."""
    scale = rng.normal(size=count) * rng.choice([1e-3, 1, 100], count)
    scale[rng.random(count) < 0.1] = 0.0
    shift = np.where(rng.random(count) < 0.3, 0.0, rng.normal(size=count) * 3)
    mean = rng.integers(-n_in - 2, n_in + 3, count).astype(np.float32)
    nudged = rng.random(count) < 0.5
    mean[nudged] = np.nextafter(mean[nudged], np.float32(rng.choice([-np.inf, np.inf])))
    mean += np.where(rng.random(count) < 0.3, rng.normal(size=count), 0.0).astype(np.float32)
    var = rng.choice([0.0, 1e-8, 0.5, 30.0, 1e6], count)
    return [np.asarray(values, np.float32) for values in (scale, shift, mean, var)]


@pytest.mark.parametrize("n_in", [1, 7, 40])
def test_fold_is_sign_of_batch_norm_exactly_for_every_reachable_sum(n_in):
    stats = random_statistics(np.random.default_rng(n_in), 300, n_in)
    polarity, threshold = thresholds.fold(*stats, n_in)
    assert polarity.dtype == np.int8 and threshold.dtype == np.int32
    assert set(np.unique(polarity)) <= {-1, 1} and threshold.min() >= -n_in and threshold.max() <= n_in + 1
    for neuron in range(len(polarity)):
        values = [stat[neuron] for stat in stats]
        np.testing.assert_array_equal(folded_outputs(polarity[neuron], threshold[neuron], n_in), exact_outputs(*values, n_in), err_msg=str(values))


def test_tie_cases_are_folded_exactly_where_float64_cannot_decide():
    # a mean of 3 - 1 ulp: c = 3 - 2.4e-7, so T = 3 (float64 decides); 3 itself: the exact path must keep BN(3) = 0 -> +1
    below, exact = np.nextafter(np.float32(3), np.float32(0)), np.float32(3)
    for mean, expected in ((below, 3), (exact, 3)):
        stats = [np.array([value], np.float32) for value in (1.0, 0.0, mean, 1.0)]
        assert int(thresholds.fold(*stats, N_IN)[1][0]) == expected


def test_non_finite_statistics_are_refused():
    good = [np.ones(2, np.float32)] * 4
    for position in range(4):
        bad = list(good)
        bad[position] = np.array([1.0, np.nan], np.float32)
        with pytest.raises(ValueError, match="non-finite"):
            thresholds.fold(*bad, N_IN)


def test_model_hidden_activation_is_the_fold_even_where_float32_batch_norm_rounds_across_zero():
    # b = float32(-11 / sqrt(970.0001)): exactly, BN(11) = 11 / sqrt(970.0001) + b > 0 by 3e-9, but float32 BN gives
    # -2.2e-8 there on the CPU the tests were written on. The model's evaluation follows the exact fold: +1 from a = 11.
    shift = np.float32(-11 / np.sqrt(970.0001))
    a = jnp.arange(-N_IN, N_IN + 1, dtype=jnp.float32)[:, None]
    bn_params = {"scale": jnp.ones(1), "bias": jnp.full(1, shift)}
    bn_stats = {"mean": jnp.zeros(1), "var": jnp.full(1, 970.0)}
    outputs = np.asarray(jax.jit(models.threshold_sign, static_argnums=3)(a, bn_params, bn_stats, N_IN))[:, 0]
    np.testing.assert_array_equal(outputs, exact_outputs(1.0, shift, 0.0, 970.0, N_IN))
    assert outputs[N_IN + 11] == 1 and outputs[N_IN + 10] == -1


@pytest.mark.parametrize("bit_values", ["bipolar", "binary"])
def test_every_input_of_a_small_net_agrees_on_all_three_paths(bit_values):
    """5 inputs: all 32 input vectors, so every reachable sum of layer 0 is met, through hand-made statistics with ties,
    negative and zero scales; simulated Flax forward, jitted packed path and NumPy reader agree on every layer's bits."""
    inputs = np.array(list(itertools.product([0, 1] if bit_values == "binary" else [-1, 1], repeat=5)), np.float32)
    model = models.MLP(hidden_sizes=(6, 4), num_classes=3, mode="bitwise", batch_norm=True)
    variables = jax.jit(model.init)(jax.random.key(0), inputs[:1])  # jitted: one compilation, not one per operation
    variables["params"] = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), variables["params"])
    sums = np.arange(-5, 6, dtype=np.float32)  # hand-made layer 0: ties at integer means, v = 0 with shifts, g < 0, g = 0
    variables["params"]["bn0"] = {"scale": jnp.array([1, 1, -1, -1, 0, 0], jnp.float32), "bias": jnp.array([0, -100, 0, -200, 0.5, -0.5], jnp.float32)}
    variables["batch_stats"]["bn0"] = {"mean": jnp.array([1, 0, -1, 0, 0, 0], jnp.float32), "var": jnp.array([1, 0, 1, 0, 1, 1], jnp.float32)}
    preactivations = jax.jit(lambda variables: model.apply(variables, inputs, mutable=["intermediates"])[1]["intermediates"]["preactivations"])
    layer1 = np.asarray(preactivations(variables)[1])  # under layer 0's threshold neurons
    variables["batch_stats"]["bn1"] = {"mean": jnp.asarray(np.round(layer1.mean(0))), "var": jnp.asarray(layer1.var(0))}

    logits, state = jax.jit(lambda variables: model.apply(variables, inputs, mutable=["intermediates"]))(variables)
    simulated = [np.asarray(a) for a in state["intermediates"]["preactivations"]]
    assert set(simulated[0].ravel()) - set(sums) == set()  # integer sums of layer 0
    packed = inference.pack_params(variables["params"], 0.0, bit_values, variables["batch_stats"])
    assert all(layer.threshold is not None for layer in packed.layers[:2]) and packed.layers[2].threshold is None
    for got, want in zip(inference.packed_scores(packed, packing.pack_bits(inputs)), simulated):
        np.testing.assert_array_equal(np.asarray(got), want.astype(np.int64))
    predictions = np.asarray(inference.packed_predict(packed, inputs))
    np.testing.assert_array_equal(predictions, np.argmax(logits, -1))
    arrays = export.model_arrays(packed)
    arrays["format"] = np.array(export.format_of(arrays))
    assert str(arrays["format"]) == export.FORMAT_V2 and "b0" not in arrays and "b2" in arrays
    meta = {"bit_values": bit_values, "layer_sizes": [6, 4, 3]}
    np.testing.assert_array_equal(export.numpy_predict(arrays, meta, inputs), predictions)
    np.testing.assert_array_equal(arrays["s0"], [1, 1, -1, -1, 1, 1])
    np.testing.assert_array_equal(arrays["t0"], [1, 1, 1, 2, -5, 6])  # a >= 1 (ties); 100a - 100 >= 0; a <= -1; a <= -2; g = 0


@pytest.fixture(scope="module")
def mnist_test_images(test_split):
    images, _ = test_split
    return images


def statistics_of(model, variables, inputs, rng):
    """Running statistics from the data, layer by layer (each under the previous layers' threshold neurons), then
    hand-made trouble: integer means with zero shift (exact ties), negative scales, a few zero scales."""
    preactivations = jax.jit(lambda variables: model.apply(variables, inputs, mutable=["intermediates"])[1]["intermediates"]["preactivations"])
    for index in range(len(model.hidden_sizes)):
        a = np.asarray(preactivations(variables)[index])
        name, size = f"bn{index}", a.shape[1]
        ties = rng.random(size) < 0.3
        mean = np.where(ties, np.round(a.mean(0)), a.mean(0))
        scale = rng.normal(size=size) * np.where(rng.random(size) < 0.05, 0.0, 1.0)
        shift = np.where(ties, 0.0, rng.normal(size=size) * 0.5)
        variables["params"][name] = {"scale": jnp.asarray(scale, jnp.float32), "bias": jnp.asarray(shift, jnp.float32)}
        variables["batch_stats"][name] = {"mean": jnp.asarray(mean, jnp.float32), "var": jnp.asarray(a.var(0), jnp.float32)}
    return variables


@pytest.mark.slow  # full tier: ./launch.sh test --full (end to end, ~20-40 s each on 2 cores)
@pytest.mark.parametrize("encoding_name", ["bipolar", "binary"])
def test_three_paths_agree_on_every_mnist_test_image(encoding_name, mnist_test_images, tmp_path):
    """A bitwise net with batch norm on the 10,000 real MNIST test images: the simulated Flax forward, the jitted packed
    path of the exported bitnet-packed-v2 file and its NumPy reader give the same hidden integers and predictions."""
    encoding = encodings.get_encoding(encoding_name)
    inputs = encoding(mnist_test_images)
    model = models.MLP(hidden_sizes=(96, 48), mode="bitwise", sparsity=0.25, batch_norm=True)
    variables = jax.jit(model.init)(jax.random.key(0), inputs[:1])
    variables["params"] = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), p.shape), variables["params"])
    variables = statistics_of(model, variables, inputs[:2000], np.random.default_rng(0))

    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, inputs)
    simulated = [np.asarray(a).astype(np.int64) for a in state["intermediates"]["preactivations"]]
    config = smoke.get_config()
    config.update(encoding=encoding_name)
    config.model.update(hidden_sizes=(96, 48), batch_norm=True)
    config.stage2.sparsity = 0.25
    arrays, meta = binarized.binarize(plan.plan(config)[-1], variables, encoding)  # the one export path a run takes
    path = tmp_path / "bn.npz"
    export.write_npz(path, arrays, meta)
    arrays, meta = export.load_npz(path)
    assert str(arrays["format"]) == export.FORMAT_V2

    packed_model = export.to_packed_model(arrays, meta)
    for got, want in zip(inference.packed_scores(packed_model, packing.pack_bits(inputs)), simulated):
        np.testing.assert_array_equal(np.asarray(got), want)
    on_threshold = sum(int(np.sum(arrays[f"s{l}"] * simulated[l] == arrays[f"t{l}"])) for l in range(2))
    assert on_threshold > 1000  # many (image, neuron) pairs sit exactly on their threshold: the ties are exercised
    expected = np.argmax(np.asarray(logits), -1)
    np.testing.assert_array_equal(evaluate.packed_predictions(arrays, meta, mnist_test_images), expected)
    np.testing.assert_array_equal(export.numpy_predict(arrays, meta, inputs), expected)
