"""The registry pools runs by config (but seed and paths) and hardware, and renders tables from it."""

import json

import pytest

from bitnet.training import configuration
from bitnet.runs import registry
from configs import default


def _entry(run, seed, error, hardware="cpu: AMD EPYC", sweep="s", **config):
    base = {"seed": seed, "encoding": "bipolar", "run_kind": "bitwise", "stage1": {"epochs": 3, "max_shift": 0},
            "stage2": {"sparsity": 0.0, "max_shift": 0}, "data": {"name": "mnist"}}
    for dotted, value in config.items():
        section, field = dotted.split("__")
        base[section] = {**base[section], field: value}
    return {"sweep": sweep, "run": run, "seed": seed, "encoding": "bipolar", "run_kind": "bitwise",
            "packed_error": error, "config": base, "hardware": hardware, "provenance": {"commits": ["abc1234"]}}


def test_pools_ignore_seed_paths_and_checkpoint_cadence_and_normalise_added_fields():
    old = _entry("a-seed0", 0, 0.02)
    del old["config"]["stage1"]["max_shift"]  # written before the field existed: means 0
    moved = _entry("b-seed1", 1, 0.04, data__source_dir="/other/folder", stage2__stage1_workdir="/w",
                   stage1__checkpoint_every_epochs=50, stage2__checkpoint_every_seconds=600.0)  # saved less often: the same run
    other = _entry("a-seed2", 2, 0.03, stage2__sparsity=0.5)
    (pooled, single) = registry.pools([old, moved, other])
    assert [entry["run"] for entry in pooled.entries] == ["a-seed0", "b-seed1"]
    assert pooled.summary() == "3.00 +- 1.41 % (seeds 0, 1: 2.00, 4.00)"
    assert single.summary() == "3.00 % (seed 2)"


def test_hardware_splits_pools_and_mixed_runs_stand_alone():
    entries = [_entry("a-seed0", 0, 0.02), _entry("a-seed1", 1, 0.03, hardware="gpu: NVIDIA H200"),
               _entry("a-seed2", 2, 0.04, hardware="mixed")]
    assert [(pool.hardware, len(pool.entries)) for pool in registry.pools(entries)] == [
        ("cpu: AMD EPYC", 1), ("gpu: NVIDIA H200", 1), ("mixed", 1)]
    table = registry.pools_table(entries)
    assert table.splitlines()[0] == "| config (runs) | id | CPU (AMD EPYC) | H200 | mixed |"


def test_summary_table_refuses_a_cell_with_two_configs():
    entries = [_entry("a-seed0", 0, 0.02), _entry("b-seed0", 0, 0.03, stage2__sparsity=0.5)]
    row = registry.Row("bitwise", ("s",))
    columns = {"bipolar": lambda entry: True}
    with pytest.raises(ValueError, match="holds 2 configs"):
        registry.summary_table(entries, [row], columns)
    narrow = registry.Row("bitwise", ("s",), (("stage2.sparsity", 0.5),))
    assert "| bitwise, CPU (AMD EPYC) | 3.00 % (seed 0) |" in registry.summary_table(entries, [narrow], columns)


def test_replace_block():
    text = "a\n<!-- table:x -->\nold\nlines\n<!-- /table:x -->\nb"
    assert registry.replace_block(text, "x", "new") == "a\n<!-- table:x -->\nnew\n<!-- /table:x -->\nb"
    with pytest.raises(ValueError, match="no <!-- table:y -->"):
        registry.replace_block(text, "y", "new")


def test_runs_on_other_data_under_the_same_name_do_not_pool():
    mnist = _entry("a-seed0", 0, 0.02)
    mnist["data"] = {"name": "mnist", "checksums": {"train_images": "1", "train_labels": "2", "test_images": "3", "test_labels": "4"}}
    other = _entry("a-seed1", 1, 0.90)
    other["data"] = {"name": "mnist", "checksums": {**mnist["data"]["checksums"], "train_images": "fashion"}}
    same = _entry("a-seed2", 2, 0.03)
    same["data"] = dict(mnist["data"])
    assert [[entry["run"] for entry in pool.entries] for pool in registry.pools([mnist, other, same])] == [["a-seed0", "a-seed2"], ["a-seed1"]]


def test_adding_a_config_field_leaves_every_id_as_it_was():
    """A config.json from before a field existed, and one holding its neutral value, are the same run."""
    config = configuration.config_dict(default.get_config())
    older = json.loads(json.dumps(config))
    for name in configuration.ADDED_FIELDS:
        if name not in registry.ID_FIELDS_BEFORE_REGISTRY:
            holder, leaf = name.split(".")
            del older[holder][leaf]
    assert registry.config_id(config) == registry.config_id(older)
    config["stage2"]["loss"] = "squared_hinge"  # set to another value: another run
    assert registry.config_id(config) != registry.config_id(older)


def test_fan_in_on_a_net_up_to_1024_wide_pools_with_no_scale():
    """fan_in multiplies nothing up to 1024 units (the default since the H100 width sweep), so old and new runs pool."""
    config = configuration.config_dict(default.get_config())
    assert config["stage1"]["layer_lr_scale"] == "fan_in"
    before = json.loads(json.dumps(config))
    for stage in ("stage1", "stage2"):
        before[stage]["layer_lr_scale"] = "none"
    assert registry.config_id(config) == registry.config_id(before)
    wide, wide_before = (json.loads(json.dumps(c)) for c in (config, before))
    for c in (wide, wide_before):
        c["model"]["hidden_sizes"] = [4096, 4096, 4096]
    assert registry.config_id(wide) != registry.config_id(wide_before)
