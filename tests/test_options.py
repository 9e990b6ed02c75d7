"""The trainer options the accuracy work needs (issue #12, section 5), each against a hand computation.

Batch norm, squared hinge loss, exponential and step schedules, per-layer (Glorot) learning-rate
scales and clipping of the shadow weights: seconds, no files. The smoke run with all of them on
(train, checkpoint, resume bit-exactly, evaluate) is in tests/test_pipeline.py.
"""

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bitnet.core import encodings, models, quantizers
from bitnet.deploy import export
from bitnet.training import binarized, configuration, options, plan, steps
from configs import default, smoke

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_stage(mode="bitwise", **changes):
    """A stage of a small net; `changes` replace Stage fields, or Hyperparameters / Network fields by name."""
    config = smoke.get_config()
    config.model.hidden_sizes = (16, 12)
    config.run_kind = "float" if mode == "float" else "bitwise"
    stage = {s.name: s for s in plan.plan(config)}[mode]
    hyper = {key: changes.pop(key) for key in list(changes) if key in {f.name for f in dataclasses.fields(plan.Hyperparameters)}}
    network = {key: changes.pop(key) for key in list(changes) if key in {f.name for f in dataclasses.fields(plan.Network)}}
    return dataclasses.replace(
        stage, hyper=dataclasses.replace(stage.hyper, **hyper), network=dataclasses.replace(stage.network, **network), **changes
    )


# ---------------------------------------------------------------------------------------------
# Loss


def test_squared_hinge_loss_by_hand():
    logits = jnp.array([[2.0, -0.5, 0.3], [0.0, 1.5, -2.0]])
    labels = jnp.array([0, 2])
    # example 0, t = (+1, -1, -1): max(0, 1 - 2)^2, max(0, 1 - 0.5)^2, max(0, 1 + 0.3)^2 = 0, 0.25, 1.69
    # example 1, t = (-1, -1, +1): max(0, 1 + 0)^2, max(0, 1 + 1.5)^2, max(0, 1 + 2)^2 = 1, 6.25, 9
    expected = (0 + 0.25 + 1.69 + 1 + 6.25 + 9) / 6
    assert float(steps.squared_hinge(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert steps.make_loss(tiny_stage(loss="squared_hinge")) is steps.squared_hinge
    assert steps.make_loss(tiny_stage()) is steps.cross_entropy  # the default


# ---------------------------------------------------------------------------------------------
# Schedules (10 steps per epoch, 10 epochs: T = 100 steps after the warmup)


def schedule(**changes):
    return steps.make_schedule(tiny_stage(epochs=10, learning_rate=1e-2, **changes), steps_per_epoch=10)


def test_exponential_schedule_decays_to_the_final_rate():
    lr = schedule(schedule="exponential", final_learning_rate=1e-4)
    for step, expected in [(0, 1e-2), (50, 1e-3), (100, 1e-4), (25, 1e-2 * 10 ** -0.5)]:  # 1e-2 * (1e-2)^(t/100)
        assert float(lr(step)) == pytest.approx(expected, rel=1e-5), step
    warm = schedule(schedule="exponential", final_learning_rate=1e-4, warmup_epochs=2)  # T = 80 after 20 warmup steps
    assert float(warm(10)) == pytest.approx(5e-3) and float(warm(60)) == pytest.approx(1e-3, rel=1e-5)


def test_step_schedule_multiplies_by_the_factor_every_n_epochs():
    lr = schedule(schedule="step", decay_factor=0.5, decay_every_epochs=3)
    for step, expected in [(0, 1e-2), (29, 1e-2), (30, 5e-3), (59, 5e-3), (60, 2.5e-3), (99, 1.25e-3)]:
        assert float(lr(step)) == pytest.approx(expected, rel=1e-6), step


def test_cosine_schedule_ends_at_the_final_rate_and_its_default_is_unchanged():
    lr = schedule(final_learning_rate=1e-3)
    assert float(lr(0)) == pytest.approx(1e-2) and float(lr(100)) == pytest.approx(1e-3)
    assert float(lr(50)) == pytest.approx(1e-3 + 9e-3 / 2)  # final + (lr - final) (1 + cos(pi/2)) / 2
    old = optax.cosine_decay_schedule(1e-2, 100)  # what the default was before final_learning_rate
    assert all(float(schedule()(step)) == float(old(step)) for step in (0, 17, 50, 99, 100))


# ---------------------------------------------------------------------------------------------
# Per-layer learning-rate scale and clipping


def params_like(sizes=(20, 16, 12, 10)):
    rng = np.random.default_rng(0)
    return {
        f"dense{i}": {"kernel": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32), "bias": jnp.asarray(rng.normal(size=n_out), jnp.float32)}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
    } | {"bn0": {"scale": jnp.full(16, 3.0), "bias": jnp.full(16, -3.0)}}


def test_glorot_h_is_binarynets():
    assert steps.glorot_h((784, 1024)) == pytest.approx(math.sqrt(1.5 / 1808))  # binary_net.DenseLayer, H="Glorot"
    assert steps.glorot_h((20, 16)) == pytest.approx(math.sqrt(6 / 36) / 2)  # half the glorot_uniform bound


LAYER_FACTORS = {
    "glorot": lambda name, shape: 1.0 / math.sqrt(1.5 / sum(shape)),  # BinaryNet: 1/H
    "fan_in": lambda name, shape: 1.0 if name == "dense0" else min(1.0, 1024 / shape[0]),  # the input layer keeps the rate
}
LAYER_SIZES = {"glorot": (20, 16, 12, 10), "fan_in": (20, 2048, 4096, 10)}  # fan_in changes layers wider than 1024 only


@pytest.mark.parametrize("scale", sorted(LAYER_FACTORS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_layer_scale_multiplies_each_kernels_update_by_its_factor(optimizer, scale):
    params = params_like(LAYER_SIZES[scale])
    grads = jax.tree.map(lambda p: jnp.cos(p) * 0.1, params)
    plain, scaled = (
        steps.make_optimizer(tiny_stage(optimizer=optimizer, layer_lr_scale=name), optax.constant_schedule(1e-3))
        for name in ("none", scale)
    )
    plain_updates, plain_state = plain.update(grads, plain.init(params), params)
    scaled_updates, scaled_state = scaled.update(grads, scaled.init(params), params)
    assert jax.tree.structure(plain_state) == jax.tree.structure(scaled_state)  # same checkpointed state
    factors = []
    for name in ("dense0", "dense1", "dense2"):
        factor = np.float32(LAYER_FACTORS[scale](name, params[name]["kernel"].shape))
        factors.append(factor)
        np.testing.assert_array_equal(scaled_updates[name]["kernel"], plain_updates[name]["kernel"] * factor)
        np.testing.assert_array_equal(scaled_updates[name]["bias"], plain_updates[name]["bias"])  # biases: scale 1
    assert len(set(factors)) == 3  # every layer got its own factor (the tiny net's widths differ)
    np.testing.assert_array_equal(scaled_updates["bn0"]["scale"], plain_updates["bn0"]["scale"])


def test_fan_in_scale_leaves_a_1024_wide_net_unchanged():
    shapes = {"dense0": (784, 1024), "dense1": (1024, 1024), "dense2": (1024, 1024), "dense3": (1024, 10)}
    assert [steps.fan_in_lr_scale(name, shape) for name, shape in shapes.items()] == [1.0, 1.0, 1.0, 1.0]
    assert steps.fan_in_lr_scale("dense1", (4096, 4096)) == 0.25 and steps.fan_in_lr_scale("dense0", (1568, 4096)) == 1.0
    assert steps.fan_in_lr_scale("dense1", (32, 32)) == 1.0  # narrower nets (smoke, tests) keep their rates too


def test_clipping_bounds_kernels_only():
    params = params_like()
    assert steps.make_projection(tiny_stage()) is None  # default: off, the step is unchanged
    absolute = steps.make_projection(tiny_stage(clip_weights=0.5))(params)
    glorot = steps.make_projection(tiny_stage(clip_weights=2.0, clip_unit="glorot"))(params)
    for name in ("dense0", "dense1", "dense2"):
        kernel = np.asarray(params[name]["kernel"])
        np.testing.assert_array_equal(absolute[name]["kernel"], np.clip(kernel, -0.5, 0.5))
        bound = np.float32(2.0 * math.sqrt(1.5 / sum(kernel.shape)))
        assert np.abs(glorot[name]["kernel"]).max() == bound  # reached: the normal draws exceed it
        np.testing.assert_array_equal(glorot[name]["kernel"], np.clip(kernel, -bound, bound))
        np.testing.assert_array_equal(absolute[name]["bias"], params[name]["bias"])
    np.testing.assert_array_equal(absolute["bn0"]["scale"], params["bn0"]["scale"])


def test_a_step_clips_after_the_update():
    stage = tiny_stage("compressed", learning_rate=10.0, clip_weights=0.05)
    state, after = one_step(stage)
    for name in ("dense0", "dense1", "dense2"):
        assert float(jnp.abs(after["params"][name]["kernel"]).max()) == pytest.approx(0.05)
    assert float(jnp.abs(after["params"]["dense0"]["bias"]).max()) > 1  # lr 10: biases moved far, unclipped


# ---------------------------------------------------------------------------------------------
# Batch norm

BATCH, INPUTS = 8, 20


def one_step(stage, seed=0):
    """The state at step 0 and after one train step on a random +-1 batch."""
    rng = np.random.default_rng(seed)
    inputs = jnp.asarray(np.where(rng.random((BATCH, INPUTS)) < 0.5, 1.0, -1.0), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32)
    model = steps.make_model(stage)
    optimizer = steps.make_optimizer(stage, steps.make_schedule(stage, 10))
    state = steps.init_state(model, optimizer, steps.stage_key(stage), inputs[:1])
    step = steps.make_train_step(model, optimizer, loss=steps.make_loss(stage), project=steps.make_projection(stage))
    return state, step(state, inputs, labels, jnp.arange(BATCH), jax.random.key(1)) | {"inputs": inputs}


@pytest.mark.parametrize("mode", ["float", "compressed", "bitwise"])
def test_batch_norm_running_statistics_are_updated_in_training(mode):
    stage = tiny_stage(mode, batch_norm=True, dropout_rate=0.0, input_dropout_rate=0.0)
    state, after = one_step(stage)
    assert set(state) == {"params", "batch_stats", "opt_state", "step", "totals"}
    assert set(state["params"]) == {"dense0", "bn0", "dense1", "bn1", "dense2"}
    assert set(state["params"]["dense0"]) == {"kernel"} and set(state["params"]["dense2"]) == {"kernel", "bias"}  # output: no BN
    assert set(state["batch_stats"]) == {"bn0", "bn1"}
    kernel, _ = models.layer_weights(state["params"]["dense0"], mode)
    a = np.asarray(after["inputs"] @ kernel)  # layer 0's pre-activation with the parameters before the step
    stats = after["batch_stats"]["bn0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * a.mean(0), rtol=1e-5, atol=1e-6)  # 0.9 * 0 + 0.1 * batch mean
    np.testing.assert_allclose(stats["var"], 0.9 * 1 + 0.1 * a.var(0), rtol=1e-5, atol=1e-6)


def test_batch_norm_evaluation_uses_the_running_statistics():
    stage = tiny_stage("float", batch_norm=True, hidden_sizes=(5,))
    model = steps.make_model(stage)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, INPUTS)), jnp.float32)
    variables = steps.model_variables(model.init(jax.random.key(0), x))
    variables["params"]["bn0"] = {"scale": jnp.asarray(rng.normal(size=5), jnp.float32), "bias": jnp.asarray(rng.normal(size=5), jnp.float32)}
    variables["batch_stats"]["bn0"] = {"mean": jnp.asarray(rng.normal(size=5), jnp.float32), "var": jnp.asarray(rng.random(5) + 0.5, jnp.float32)}
    p, s = variables["params"], variables["batch_stats"]["bn0"]
    normalized = (x @ p["dense0"]["kernel"] - s["mean"]) / np.sqrt(s["var"] + models.BN_EPSILON) * p["bn0"]["scale"] + p["bn0"]["bias"]
    expected = np.maximum(normalized, 0) @ p["dense1"]["kernel"] + p["dense1"]["bias"]  # relu, output layer without BN
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(steps.make_predict(model)(variables, x), np.argmax(expected, -1))


def test_bitwise_batch_norm_binarizes_to_threshold_neurons():
    stage = tiny_stage("bitwise", batch_norm=True)
    state, _ = one_step(stage)
    variables = steps.model_variables(state)
    arrays, meta = binarized.binarize(stage, variables, encodings.get_encoding("bipolar"))
    assert export.format_of(arrays) == export.FORMAT_V2 and meta["layer_sizes"] == [16, 12, 10]
    assert {"t0", "s0", "t1", "s1", "b2"} <= set(arrays) and not {"b0", "b1"} & set(arrays)
    with pytest.raises(ValueError, match="no running statistics"):  # a batch-norm net needs its statistics to fold
        binarized.binarize(stage, {"params": variables["params"]}, encodings.get_encoding("bipolar"))


# ---------------------------------------------------------------------------------------------
# Config fields: read by the plan, checked with one-line errors, neutral in older workdirs


def _another_value(option, stage, block):
    """A valid value of `option` other than its default (registry names: the last other key)."""
    default = option.default_of(stage)
    if option.choices is not None:
        return [name for name in option.choices() if name != default][-1]
    if option.name == "final_learning_rate":
        return block.learning_rate / 4
    if option.kind is int:
        return default + 1
    return default * 0.5 if default else 0.125


def test_the_plan_reads_every_option():
    """Every option of part stage / hyper set to a value other than its default arrives in the plan's stages."""
    config = default.get_config()
    for stage in options.STAGES:
        for option in options.of_stage(stage):
            if option.part in ("stage", "hyper"):
                config[stage][option.name] = _another_value(option, stage, config[stage])
    configuration.check(config)
    for built in plan.plan(config):
        for option in options.of_stage(built.field):
            if option.part in ("stage", "hyper"):
                where = built.hyper if option.part == "hyper" else built
                assert getattr(where, option.name) == config[built.field][option.name] != option.default_of(built.field), option.name
    config.stage2.update(sparsity=0.25, surrogate="tanh", init="random")  # the fields of part "plan"
    compressed, bitwise = plan.plan(config)
    assert (bitwise.hyper.sparsity, compressed.hyper.sparsity, bitwise.network.surrogate, bitwise.start) == (0.25, 0.0, "tanh", plan.RANDOM)


REGISTRIES = {  # option -> the registry that implements it
    "optimizer": steps.OPTIMIZERS, "schedule": steps.SCHEDULES, "loss": steps.LOSSES, "layer_lr_scale": steps.LAYER_LR_SCALES,
    "clip_unit": steps.CLIP_UNITS, "init": plan.STAGE2_INITS, "surrogate": quantizers.SURROGATES, "select": plan.SELECTIONS,
}


def test_every_list_of_names_is_the_registry_that_implements_it():
    named = {option.name: list(option.choices()) for option in options.OPTIONS if option.choices is not None}
    assert named == {name: list(registry) for name, registry in REGISTRIES.items()}
    assert configuration.ADDED_FIELDS == {"model.batch_norm": False, **options.added_fields()}
    with pytest.raises(configuration.ConfigError, match=r"run_kind='ternary' is unknown; use one of \['float', 'bitwise'\]"):
        configuration.check(ml_collections.ConfigDict({**configuration.config_dict(default.get_config()), "run_kind": "ternary"}))
    assert list(plan.RUN_KINDS) == ["float", "bitwise"]


@pytest.mark.parametrize("field, build", [("optimizer", lambda stage: steps.make_optimizer(stage, optax.constant_schedule(1e-3))),
                                          ("schedule", lambda stage: steps.make_schedule(stage, 10)),
                                          ("loss", steps.make_loss), ("layer_lr_scale", lambda stage: steps.make_optimizer(stage, 1e-3)),
                                          ("clip_unit", lambda stage: steps.make_projection(stage)(params_like((4, 3, 2))))])
def test_every_registered_name_builds_and_an_unknown_name_never_falls_through(field, build):
    for name in REGISTRIES[field]:
        assert build(tiny_stage(**{field: name, "clip_weights": 0.5, "final_learning_rate": 1e-5})) is not None
    with pytest.raises(KeyError, match="unknown"):
        build(tiny_stage(**{field: "unknown", "clip_weights": 0.5}))


DUMMY_OPTION = """
import json
from bitnet.training import options
options.OPTIONS += (
    options.Option("dummy_rate", float, 0.25, "a test option", part="hyper", before=0.5, check=lambda value, block: None if value < 1 else "must be < 1"),
    options.Option("dummy_mode", str, "a", "another", choices=lambda: {"a": 1, "b": 2}, only="stage2"),
)
from bitnet.training import configuration, plan
from configs import default
config = default.get_config()
compressed, bitwise = plan.plan(config)
old = configuration.config_dict(config)
del old["stage1"]["dummy_rate"], old["stage2"]["dummy_rate"]
config.stage1.dummy_rate = 0.5
problems = []
for stage, field, value in (("stage1", "dummy_rate", 2.0), ("stage2", "dummy_mode", "c")):
    bad = default.get_config()
    bad[stage][field] = value
    try:
        configuration.check(bad)
    except configuration.ConfigError as error:
        problems.append(str(error))
print(json.dumps({
    "defaults": [default.get_config().stage1.dummy_rate, default.get_config().stage2.dummy_mode, "dummy_mode" in default.get_config().stage1],
    "plan": [compressed.hyper.dummy_rate, bitwise.hyper.dummy_rate],
    "added": configuration.ADDED_FIELDS.get("stage1.dummy_rate"),
    "old_config_is_same_at_before": configuration.config_differences(old, configuration.config_dict(config)),
    "problems": problems,
    "listing": [line for line in options.listing("stage1") + options.listing("stage2") if "dummy" in line],
}))
"""


def test_an_option_added_through_its_declaration_alone_reaches_the_check_the_upgrade_the_plan_and_the_default_config():
    result = subprocess.run([sys.executable, "-c", DUMMY_OPTION], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["defaults"] == [0.25, "a", False]
    assert seen["plan"] == [0.25, 0.25]
    assert seen["added"] == 0.5
    assert seen["old_config_is_same_at_before"] == ["stage2.dummy_rate"]  # stage 1 holds the value before it; stage 2 the new default
    assert seen["problems"] == ["config.stage1.dummy_rate=2.0 must be < 1", "config.stage2.dummy_mode='c' is unknown; use one of ['a', 'b']"]
    assert len(seen["listing"]) == 2 and "a test option" in seen["listing"][0]


def test_the_default_config_shows_every_stage_field_with_its_comment():
    with open(os.path.join(REPO, "configs", "default.py")) as file:
        text = file.read()
    assert options.with_listings(text) == text, "configs/default.py's option listing is stale: run python -m experiments.options"
    for option in options.of_stage("stage1"):
        assert f"#   {option.name} = " in text and option.comment in text


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("model.batch_norm", 1, "config.model.batch_norm=1 must be True or False"),
        ("stage1.loss", "hinge", "config.stage1.loss='hinge' is unknown; use one of ['cross_entropy', 'squared_hinge']"),
        ("stage2.schedule", "linear", "config.stage2.schedule='linear' is unknown"),
        ("stage2.schedule", "exponential", "config.stage2.schedule='exponential' needs final_learning_rate > 0"),
        ("stage1.final_learning_rate", 0.1, "config.stage1.final_learning_rate=0.1 must be in [0, learning_rate=0.001]"),
        ("stage1.decay_factor", 1.5, "config.stage1.decay_factor=1.5 must be in (0, 1]"),
        ("stage2.decay_every_epochs", 0, "config.stage2.decay_every_epochs=0 must be an integer >= 1"),
        ("stage2.layer_lr_scale", "he", "config.stage2.layer_lr_scale='he' is unknown; use one of ['none', 'glorot', 'fan_in']"),
        ("stage1.clip_weights", -1.0, "config.stage1.clip_weights=-1.0 must be >= 0 (0: no clipping)"),
        ("stage1.clip_unit", "relative", "config.stage1.clip_unit='relative' is unknown; use one of ['absolute', 'glorot']"),
    ],
)
def test_bad_option_values_are_one_line_config_errors(field, value, words):
    values = configuration.config_dict(default.get_config())
    holder, name = field.split(".")
    values[holder][name] = value  # (a typed ConfigDict refuses a value of another type before any check)
    config = ml_collections.ConfigDict(values)
    with pytest.raises(configuration.ConfigError) as error:
        configuration.check(config)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_an_older_workdir_without_the_new_fields_is_the_same_config(tmp_path):
    config = default.get_config()
    old = configuration.config_dict(config)
    del old["model"]["batch_norm"]
    for stage in ("stage1", "stage2"):
        for field in ("loss", "final_learning_rate", "decay_factor", "decay_every_epochs", "layer_lr_scale", "clip_weights", "clip_unit"):
            del old[stage][field]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert configuration.check_workdir(configuration.config_dict(config), str(tmp_path))  # accepted as the same config: it resumes
    read = configuration.read_config(str(tmp_path))
    before = ml_collections.ConfigDict(configuration.config_dict(config))
    before.stage1.layer_lr_scale = before.stage2.layer_lr_scale = "none"  # the default before fan_in: the same updates at 1024
    assert plan.plan(read) == plan.plan(before)  # evaluation of an older workdir builds the stages it trained
    changed = ml_collections.ConfigDict(configuration.config_dict(config))
    changed.stage2.loss = "squared_hinge"
    with pytest.raises(configuration.ConfigError, match=r"differs in: stage2.loss"):
        configuration.check_workdir(configuration.config_dict(changed), str(tmp_path))


def test_fan_in_default_updates_a_1024_wide_net_exactly_as_no_scale():
    """fan_in became the default: the paper's net (and every narrower one) takes exactly the updates it took before."""
    params = params_like((784, 1024, 1024, 1024, 10))
    grads = jax.tree.map(lambda p: jnp.sin(p) * 0.01, params)
    plain, fan_in = (steps.make_optimizer(tiny_stage(layer_lr_scale=name), optax.constant_schedule(1e-3)) for name in ("none", "fan_in"))
    plain_state, fan_in_state = plain.init(params), fan_in.init(params)
    for _ in range(2):
        plain_updates, plain_state = plain.update(grads, plain_state, params)
        fan_in_updates, fan_in_state = fan_in.update(grads, fan_in_state, params)
        jax.tree.map(np.testing.assert_array_equal, fan_in_updates, plain_updates)


def test_a_workdir_trained_without_a_scale_resumes_with_fan_in_up_to_1024_units_only():
    new = configuration.config_dict(default.get_config())
    old = json.loads(json.dumps(new))
    for stage in ("stage1", "stage2"):
        old[stage]["layer_lr_scale"] = "none"
    assert configuration.config_differences(old, new) == []
    for config in (new, old):
        config["model"]["hidden_sizes"] = [2048, 2048]
    assert configuration.config_differences(old, new) == ["stage1.layer_lr_scale", "stage2.layer_lr_scale"]


# ---------------------------------------------------------------------------------------------
# Every field of a config is declared: a misspelled one is refused, not trained at its default


@pytest.mark.parametrize("block, name, message", [
    ("stage1", "learnig_rate", "config.stage1.learnig_rate is not a config field; did you mean config.stage1.learning_rate? (fix the config file)"),
    ("stage1", "sparsity", "config.stage1.sparsity is not a config field; did you mean config.stage2.sparsity? (fix the config file)"),
    ("model", "batchnorm", "config.model.batchnorm is not a config field; did you mean config.model.batch_norm? (fix the config file)"),
    ("data", "sorce_dir", "config.data.sorce_dir is not a config field; did you mean config.data.source_dir? (fix the config file)"),
    ("", "seeds", "config.seeds is not a config field; did you mean config.seed? (fix the config file)"),
    ("", "modle", "config.modle is not a config field; did you mean config.model? (fix the config file)"),
    ("stage2", "lr", "config.stage2.lr is not a config field; configs/default.py lists every field (fix the config file)"),
])
def test_a_field_that_is_not_a_config_field_is_refused_naming_the_closest(block, name, message):
    config = default.get_config()
    (config[block] if block else config)[name] = ml_collections.ConfigDict({"batch_norm": True}) if name == "modle" else 0.5
    with pytest.raises(configuration.ConfigError) as error:
        configuration.check(config)
    assert str(error.value) == message


OLD_WORKDIR = os.path.join(REPO, "tests", "fixtures", "workdir_62a4262")


def _get_config(path):
    """A config file's get_config() (configs/workdir.py's for the old workdir fixture: it reads a workdir's config)."""
    spec = importlib.util.spec_from_file_location("config_file", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(OLD_WORKDIR) if path == os.path.join("configs", "workdir.py") else module.get_config()


def test_the_declared_fields_are_the_default_configs_and_every_config_holds_only_them():
    declared = {f"{block}.{name}" if block else name for block, names in plan.config_fields().items() for name in names}
    flat = configuration.flatten(configuration.config_dict(default.get_config()))
    assert declared == set(flat) | {key.split(".")[0] for key in flat}  # the fields and the blocks
    files = [os.path.join("configs", name) for name in sorted(os.listdir(os.path.join(REPO, "configs"))) if name.endswith(".py")]
    for path in [*files, os.path.join("tests", "fixtures", "old_workdir_config.py")]:
        if path.endswith("__init__.py"):
            continue
        config = _get_config(path)
        if "runs" in config:  # a sweep: its runs override fields of its base config (a field it lacks is refused there)
            config = _get_config(config.base)
        assert configuration.unknown_field(config) is None, path
    old = configuration.read_config(OLD_WORKDIR)  # read back, upgraded
    assert configuration.unknown_field(old) is None
