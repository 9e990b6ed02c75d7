"""Sweep expansion, run selection and the results table (on small hand-written workdirs)."""

import json
import os

import pytest

from bitnet import configuration, sweep


def test_expand_names_runs_by_their_values_or_an_explicit_name():
    runs = sweep.expand(["encoding=fixed2,run_kind=bitwise,seed=1", "name=lambda0.1,stage2.sparsity=0.1"])
    assert [run.name for run in runs] == ["fixed2-bitwise-seed1", "lambda0.1"]
    assert runs[1].overrides == (("stage2.sparsity", "0.1"),)


@pytest.mark.parametrize("specs, message", [
    (["seed=1", "seed=1"], "share workdir names"),
    (["seed"], "is not field=value"),
])
def test_expand_rejects_bad_sweeps(specs, message):
    with pytest.raises(configuration.ConfigError, match=message):
        sweep.expand(specs)


def test_expand_keeps_tuple_values_whole():
    (run,) = sweep.expand(["name=wide,model.hidden_sizes=(2048,2048),seed=1"])
    assert run == sweep.Run("wide", (("model.hidden_sizes", "(2048,2048)"), ("seed", "1")))


def test_select_keeps_sweep_order_and_names_unknown_runs():
    runs = sweep.expand(["seed=0", "seed=1", "seed=2"])
    assert [run.name for run in sweep.select(runs, ["seed2", "seed0"])] == ["seed0", "seed2"]
    assert sweep.select(runs, None) == runs
    with pytest.raises(configuration.ConfigError, match=r"no sweep run named \['seed7'\].*seed0"):
        sweep.select(runs, ["seed7"])


def test_device_environments_share_gpus_round_robin_with_a_memory_slice_each():
    assert sweep.device_environments(2, 0) == [{}, {}]
    assert sweep.device_environments(2, 2) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    shared = sweep.device_environments(3, 1)  # three runs on one GPU: each must see GPU 0, not 1 or 2
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in shared] == ["0", "0", "0"]
    assert {slot["XLA_PYTHON_CLIENT_MEM_FRACTION"] for slot in shared} == {"0.300"}


def test_setting_strips_only_a_trailing_seed():
    assert sweep.setting("bipolar-bitwise-seed12") == "bipolar-bitwise"
    assert sweep.setting("seed1-wide") == "seed1-wide"


def _write_run(root, name, seed, error, stage="bitwise", packed=True):
    workdir = os.path.join(root, name)
    os.makedirs(workdir)
    config = {"seed": seed, "stage2": {"sparsity": 0.0, "init": "stage1", "surrogate": "hard_tanh"}}
    result = {"run_kind": "bitwise", "encoding": "bipolar", "bitwise_error": error, **({"packed_error": error} if packed else {})}
    with open(os.path.join(workdir, "config.json"), "w") as file:
        json.dump(config, file)
    with open(os.path.join(workdir, "eval.json"), "w") as file:
        json.dump(result, file)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as file:
        for epoch, val_error in enumerate((0.05, 0.03), start=1):
            file.write(json.dumps({"stage": stage, "epoch": epoch, "val_error": val_error, "epoch_seconds": 30.0}) + "\n")


def test_results_table_pools_seeds_of_one_setting_only(tmp_path):
    root = str(tmp_path)
    _write_run(root, "bipolar-bitwise-seed0", 0, 0.02)
    _write_run(root, "bipolar-bitwise-seed1", 1, 0.04)
    _write_run(root, "reference", 0, 0.05)
    _write_run(root, "batch-norm", 0, 0.06, packed=False)  # no packed form yet (issue #14): the simulated net's error
    table = sweep.results_table(root, ["bipolar-bitwise-seed0", "bipolar-bitwise-seed1", "reference", "unfinished", "batch-norm"])
    assert "| batch-norm | bitwise | bipolar | 6.00 +- n/a | 1 |" in table
    assert "| bipolar-bitwise-seed1 | bitwise | bipolar | 1 | 0.0 | stage1 | hard_tanh |  |  | 4.00 | 4.00 | 3.00 |" in table
    assert "| bipolar-bitwise | bitwise | bipolar | 3.00 +- 1.41 | 2 |" in table  # stdev of 2 and 4
    assert "| reference | bitwise | bipolar | 5.00 +- n/a | 1 |" in table
    assert "| unfinished | missing eval.json |" in table
    assert sweep.run_record(os.path.join(root, "reference"))["train_seconds"] == 60.0
