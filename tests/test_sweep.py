"""Sweep expansion, run selection, the results table (on small hand-written workdirs) and each run's own outcome."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bitnet.training import configuration
from bitnet.runs import registry, sweep


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


def test_a_grouped_sweep_trains_one_unit_at_a_time_on_every_gpu_unless_told_how_many():
    """A group shards its runs over the GPUs its process sees: by default every one (no CUDA_VISIBLE_DEVICES set)."""
    assert sweep.unit_environments(None, True, 4) == [{}]
    assert sweep.unit_environments(None, False, 2) == sweep.unit_environments(2, True, 2) == sweep.device_environments(2, 2)
    assert sweep.unit_environments(None, False, 0) == [{}]


def _segment(kind, platform="cpu"):
    return {"devices": {"platform": platform, "kind": kind}, "code": {"commit": "abcdef0123", "dirty": False}, "epochs": 2}


def _write_run(root, name, seed, error, sparsity=0.0, segments=(), **paths):
    workdir = os.path.join(root, name)
    os.makedirs(workdir)
    config = {
        "seed": seed, "encoding": "bipolar", "run_kind": "bitwise",
        "data": {"source_dir": paths.get("source_dir", ""), "data_dir": ""},
        "stage1": {"epochs": 3}, "stage2": {"sparsity": sparsity, "init": "stage1", "surrogate": "hard_tanh", "stage1_workdir": ""},
        "provenance": {"segments": list(segments)},
    }
    result = {"run_kind": "bitwise", "encoding": "bipolar", "bitwise_error": error, "packed_error": error}
    with open(os.path.join(workdir, "config.json"), "w") as file:
        json.dump(config, file)
    with open(os.path.join(workdir, "eval.json"), "w") as file:
        json.dump(result, file)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as file:
        for epoch, val_error in enumerate((0.05, 0.03), start=1):
            file.write(json.dumps({"stage": "bitwise", "epoch": epoch, "val_error": val_error, "epoch_seconds": 30.0}) + "\n")


def test_results_table_pools_by_config_and_hardware_not_by_name(tmp_path):
    root = str(tmp_path / "sweep_x")
    cpu, gpu = [_segment("AMD EPYC")], [_segment("NVIDIA H200", "gpu")]
    _write_run(root, "bipolar-seed0", 0, 0.02, segments=cpu)
    _write_run(root, "renamed-by-hand-seed1", 1, 0.04, segments=cpu, source_dir="/elsewhere")  # same config: pooled
    _write_run(root, "bipolar-seed1", 1, 0.03, sparsity=0.5, segments=cpu)  # name differs only in seed, config does not
    _write_run(root, "bipolar-gpu", 0, 0.01, segments=gpu)  # same config, other hardware: side by side
    table = sweep.results_table(root, ["bipolar-seed0", "renamed-by-hand-seed1", "bipolar-seed1", "bipolar-gpu", "unfinished"])
    assert "| bipolar-seed1 | CPU (AMD EPYC) | bipolar | 1 | 0.5 | stage1 | hard_tanh |  | 3.00 % | 3.00 % |" in table
    assert "| config (runs) | id | CPU (AMD EPYC) | H200 |" in table
    pooled = next(line for line in table.splitlines() if "renamed-by-hand" in line and "seeds" in line)
    assert "3.00 +- 1.41 % (seeds 0, 1: 2.00, 4.00)" in pooled  # stdev of 2 and 4
    assert pooled.endswith("| 1.00 % (seed 0) |")  # the H200 run of the same config
    assert "| sweep_x/bipolar |" in table and "3.00 % (seed 1) |  |" in table
    assert "| unfinished | missing eval.json |" in table
    assert sweep.run_record(os.path.join(root, "bipolar-seed0"))["train_seconds"] == 60.0


def test_a_run_without_a_packed_model_is_reported_by_its_simulated_bitwise_error():
    assert registry.final_error({"packed_error": 0.01, "bitwise_error": 0.01}) == 0.01
    assert registry.final_error({"bitwise_error": 0.06, "packed_skipped": "batch norm (issue #14)"}) == 0.06
    assert registry.final_error({"float_error": 0.02}) == 0.02


def test_run_config_reads_overrides_as_the_command_line_does():
    (run,) = sweep.expand(["name=wide,model.hidden_sizes=(64,32),seed=3,stage2.sparsity=0.5"])
    config = sweep.run_config("configs/smoke.py", run)
    assert (config.model.hidden_sizes, config.seed, config.stage2.sparsity) == ((64, 32), 3, 0.5)
    with pytest.raises(configuration.ConfigError, match="sweep run bad"):
        sweep.run_config("configs/smoke.py", sweep.Run("bad", (("stage1.epoch", "3"),)))


def _units(file_name: str, max_size: int = 0) -> list[list[str]]:
    """The run names of each group a sweep file trains as, in order (what experiments.sweep launches)."""
    from bitnet.training import group, plan

    spec = sweep.load_sweep(os.path.join("configs", file_name))
    runs = sweep.expand(spec.runs)
    keys = [group.group_key(plan.resolve(sweep.run_config(spec.base, run))) for run in runs]
    return [[run.name for run in unit] for unit in sweep.groups(runs, keys, max_size)]


def test_a_sweep_lists_its_groups_as_the_runs_of_train_group():
    """--list_groups: one line per group it would train (at most --max_group_size runs), its runs joined by commas."""
    from tests.helpers import REPO

    command = [sys.executable, "-m", "experiments.sweep", "--sweep=configs/sweep_smoke.py", "--list_groups", "--max_group_size=3"]
    listed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.splitlines() == [",".join(unit) for unit in _units("sweep_smoke.py", max_size=3)] == ["seed0,seed1,seed2", "seed3"]


def test_groups_of_a_sweep_are_its_compatible_runs_in_order():
    """Table 1: the three seeds of the bipolar bitwise cell train as one group, every other run alone."""
    from configs import sweep_table1

    units = _units("sweep_table1.py")
    assert units[0] == ["bipolar-bitwise-seed0", "bipolar-bitwise-seed1", "bipolar-bitwise-seed2"]
    assert all(len(unit) == 1 for unit in units[1:]) and len(units) == len(sweep_table1.get_config().runs) - 2
    assert _units("sweep_table1.py", max_size=2)[:2] == [["bipolar-bitwise-seed0", "bipolar-bitwise-seed1"], ["bipolar-bitwise-seed2"]]


SWEEP_FILES = sorted(name for name in os.listdir("configs") if name.startswith("sweep_") and name.endswith(".py"))


@pytest.mark.parametrize("file_name", SWEEP_FILES)
def test_every_sweep_file_gives_runs_that_pass_the_config_check(file_name):
    """A sweep prepared for a lent GPU must not fail there on a typo: every run's config is checked, and a run
    that reads another sweep's stage 1 names a run of that sweep (workdirs/<sweep>/<run>)."""
    from bitnet.training import group, plan

    spec = sweep.load_sweep(os.path.join("configs", file_name))
    runs = sweep.expand(spec.runs)
    assert runs and len({run.name for run in runs}) == len(runs)
    for run in runs:
        config = sweep.run_config(spec.base, run)
        configuration.check(config)
        group.group_key(plan.resolve(config))
        source = config.stage2.get("stage1_workdir", "")
        if source:
            root, other_sweep, other_run = source.split("/")
            assert root == "workdirs", source
            other = sweep.load_sweep(os.path.join("configs", other_sweep + ".py"))
            assert other_run in {candidate.name for candidate in sweep.expand(other.runs)}, source


@pytest.mark.parametrize("file_name, sizes", [
    ("sweep_screen_long.py", [6]), ("sweep_screen_long2.py", [6]), ("sweep_table1_long.py", [3] * 6),
    ("sweep_binary_bn_4096.py", [3]), ("sweep_binary_bn_4096_long.py", [3]),
])
def test_the_gpu_sweeps_train_as_the_groups_their_files_promise(file_name, sizes):
    assert [len(unit) for unit in _units(file_name)] == sizes


def test_validation_table_lists_each_stages_validation_errors_and_untrained_runs(tmp_path):
    os.makedirs(tmp_path / "a")
    lines = [
        {"stage": "compressed", "epoch": 1, "val_error": 0.05, "epoch_seconds": 60.0},
        {"stage": "compressed", "epoch": 2, "val_error": 0.04, "epoch_seconds": 60.0},
        {"stage": "compressed", "epoch": 3, "val_error": 0.045, "epoch_seconds": 60.0},
        {"stage": "bitwise", "epoch": 1, "val_error": None, "epoch_seconds": 30.0},
        {"stage": "bitwise", "epoch": 2, "val_error": 0.06, "epoch_seconds": 30.0},
    ]
    (tmp_path / "a" / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"stage": "bitw')
    table = sweep.validation_table(str(tmp_path), ["a", "b"])
    assert "| a | compressed | 3 | 4.00 % | 4.50 % | 3.0 min |" in table
    assert "| a | bitwise | 2 | 6.00 % | 6.00 % | 1.0 min |" in table  # an epoch without validation is skipped
    assert "| b | not trained |" in table


def test_a_sweep_published_in_parts_keeps_every_run_its_metrics_and_its_pool(tmp_path):
    """Seeds published from two workdir roots on different days: the sweep's table lists both, the registry and
    the metrics copies keep the first after its workdir is gone, and the pool has both seeds."""
    from experiments import report

    out = str(tmp_path / "results")
    first, second = str(tmp_path / "day1" / "sweep_x"), str(tmp_path / "day2" / "sweep_x")
    cpu = [_segment("AMD EPYC")]
    _write_run(first, "bipolar-seed0", 0, 0.02, segments=cpu)
    report.publish_runs(first, out)
    os.rename(first, first + "-removed")
    _write_run(second, "bipolar-seed1", 1, 0.04, segments=cpu)
    os.makedirs(os.path.join(second, "unfinished"))
    open(os.path.join(second, "unfinished", "config.json"), "w").write("{}")
    published, missing = report.publish_runs(second, out)
    assert sorted(published) == ["sweep_x/bipolar-seed0", "sweep_x/bipolar-seed1"] and missing == ["unfinished"]
    with open(os.path.join(out, "results.json")) as file:
        assert sorted(json.load(file)) == sorted(published)
    with open(os.path.join(out, "sweep_x.md")) as file:
        table = file.read()
    assert "| bipolar-seed0 | CPU (AMD EPYC) |" in table and "| bipolar-seed1 | CPU (AMD EPYC) |" in table
    assert "3.00 +- 1.41 % (seeds 0, 1: 2.00, 4.00)" in table and "| unfinished | missing eval.json |" in table
    for seed in (0, 1):
        with open(os.path.join(out, published[f"sweep_x/bipolar-seed{seed}"]["metrics"])) as file:
            assert [json.loads(line)["val_error"] for line in file] == [0.05, 0.03]


def test_a_published_model_is_validated_and_written_compressed_with_the_same_arrays(tmp_path):
    """A run trained by older code wrote its model with np.savez: the published copy has the current form."""
    import zipfile

    import jax

    from bitnet.core import encodings, models
    from bitnet.deploy import export, inference
    from experiments import report

    encoding = encodings.get_encoding("bipolar")
    model = models.MLP(hidden_sizes=(40,), mode="bitwise")
    params = model.init(jax.random.key(0), np.zeros((1, 30), np.float32))["params"]
    arrays = export.model_arrays(inference.pack_params(params, 0.0, encoding.bit_values))
    source, target = tmp_path / "bitwise.npz", tmp_path / "published.npz"
    np.savez(source, format=np.array(export.format_of(arrays)), meta=np.array(json.dumps({"encoding": "bipolar", "thresholds": [],
             "bit_values": "bipolar", "input_size": 30, "layer_sizes": [40, 10]})), **arrays)  # fmt: skip
    report.publish_file(str(source), str(target))
    with zipfile.ZipFile(target) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    (before, meta_before), (after, meta_after) = export.load_npz(source), export.load_npz(target)
    assert meta_after == meta_before and after.keys() == before.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])


def test_every_sweep_file_expands_to_the_runs_and_groups_it_had_as_strings():
    """The sweep files are data (bitnet.runs.hyper); each gives the run names, configs and groups its string form gave
    at commit 62a4262 (tests/fixtures/sweeps_62a4262.json)."""
    with open(os.path.join("tests", "fixtures", "sweeps_62a4262.json")) as file:
        recorded = json.load(file)
    assert set(recorded) <= set(SWEEP_FILES)  # (sweep files written since have no string form to match)
    for file_name, before in recorded.items():
        spec = sweep.load_sweep(os.path.join("configs", file_name))
        runs = sweep.expand(spec.runs)
        assert spec.base == before["base"], file_name
        assert [run.name for run in runs] == [name for name, _ in before["runs"]], file_name
        for run, (name, overrides) in zip(runs, before["runs"]):
            old = sweep.run_config(before["base"], sweep.Run(name, tuple(map(tuple, overrides))))
            assert configuration.config_dict(sweep.run_config(spec.base, run)) == configuration.config_dict(old), (file_name, name)
        assert _units(file_name, max_size=16) == before["groups"], file_name


def test_results_table_lists_each_failed_run_with_its_error_line(tmp_path):
    """A run that failed this time gets its error line, not the eval.json an earlier try left; the others their rows."""
    root = str(tmp_path / "sweep_x")
    _write_run(root, "bipolar-seed0", 0, 0.02, segments=[_segment("AMD EPYC")])
    _write_run(root, "bipolar-seed1", 1, 0.04, segments=[_segment("AMD EPYC")])
    failures = {"bipolar-seed1": "error: W: the packed path disagrees | on 3 images"}
    table = sweep.results_table(root, ["bipolar-seed0", "bipolar-seed1", "unfinished"], failures)
    assert "| bipolar-seed0 | CPU (AMD EPYC) |" in table and "| bipolar-seed1 | CPU (AMD EPYC) |" not in table
    assert "| bipolar-seed1 | failed: error: W: the packed path disagrees \\| on 3 images |" in table
    assert "| unfinished | missing eval.json |" in table
    validation = sweep.validation_table(root, ["bipolar-seed0", "bipolar-seed1"], failures)
    assert "| bipolar-seed1 | bitwise | 2 | 3.00 % |" in validation and "| bipolar-seed1 | failed: error: W:" in validation


STAND_IN = """import os, sys
step, failing, workdirs = sys.argv[1], sys.argv[2], sys.argv[3:]
for workdir in workdirs:
    print(step, os.path.basename(workdir))
    if workdir == failing:
        print("error: seed0 went wrong", file=sys.stderr)
        if step == "training":  # as a group's run that fails alone
            open(os.path.join(workdir, "error.txt"), "w").write("error: seed0 went wrong\\n")
sys.exit(int(failing in workdirs))
"""


@pytest.mark.parametrize("failing_step", ["evaluation", "training"])
def test_each_run_of_a_group_has_its_own_outcome(tmp_path, monkeypatch, capsys, failing_step):
    """A group of two whose first run fails alone (its evaluation, or its training while the group trained on): the
    second is still evaluated; each run's outcome is its own, the failed one's with its error line (stand-in commands)."""
    import queue

    from bitnet.runs import children
    from experiments import sweep as sweep_command

    root = str(tmp_path)
    failing = os.path.join(root, "seed0")

    def stand_in(step, *workdirs):
        return [sys.executable, "-c", STAND_IN, step, failing if step == failing_step else "", *workdirs]

    monkeypatch.setattr(sweep, "group_command", lambda runs, sweep_file, root, distributed=False: stand_in("training", *[os.path.join(root, run.name) for run in runs]))
    monkeypatch.setattr(sweep, "commands", lambda run, base, workdir: [stand_in("training", workdir), stand_in("evaluation", workdir)])
    slots = queue.Queue()
    slots.put({})
    endings = sweep_command._run_unit(children.Launcher(), sweep.expand(["seed=0", "seed=1"]), root, "base.py", "sweep.py", slots)
    assert endings == [children.Ending(1, None, "error: seed0 went wrong"), children.Ending(0)]
    output = capsys.readouterr().out
    assert f"[seed0] {failing_step} failed: error: seed0 went wrong; see {os.path.join(failing, 'run.log')}" in output
    assert "[seed1] evaluation failed" not in output and "[seed1] training failed" not in output
    with open(os.path.join(root, "seed1", "run.log")) as file:
        assert file.read().splitlines()[-1] == "evaluation seed1"  # evaluated, after seed0 failed
    assert sweep.recorded_errors(root, ["seed0", "seed1"]) == {"seed0": "error: seed0 went wrong"}  # what a collected table shows


def test_a_collected_table_shows_a_failed_runs_error_line_as_the_local_table(tmp_path, capsys):
    """sweep --collect (and a SLURM sweep's collecting job) reads each failed run's error line from its workdir, where
    the sweep recorded it: the table it writes is the local sweep's, not "missing eval.json"."""
    from experiments import sweep as sweep_command

    root = str(tmp_path / "sweep_x")
    names = ["bipolar-seed0", "bipolar-seed1", "diverged", "unfinished"]
    failures = {"bipolar-seed1": "error: evaluation of W failed | on 3 images", "diverged": "error: compressed: the loss became non-finite at step 7 (epoch 1)"}
    _write_run(root, "bipolar-seed0", 0, 0.02, segments=[_segment("AMD EPYC")])
    _write_run(root, "bipolar-seed1", 1, 0.04, segments=[_segment("AMD EPYC")])  # its eval.json is from an earlier try
    os.makedirs(os.path.join(root, "diverged"))
    for name, line in failures.items():
        sweep.record_error(os.path.join(root, name), line)
    for evaluate, table in ((True, sweep.results_table), (False, sweep.validation_table)):
        assert sweep_command.collect(root, names, evaluate) == ["diverged", "unfinished"]  # no result yet
        with open(os.path.join(root, "results.md")) as file:
            collected = file.read()
        assert collected == table(root, names, failures), evaluate
        assert "| diverged | failed: error: compressed: the loss became non-finite at step 7 (epoch 1) |" in collected
        assert "| diverged | missing eval.json |" not in collected and "| diverged | not trained |" not in collected
    sweep.record_error(os.path.join(root, "diverged"), None)  # a new try starts
    assert sweep.recorded_errors(root, names) == {"bipolar-seed1": failures["bipolar-seed1"]}
    capsys.readouterr()


def test_a_group_over_several_nodes_is_one_array_task_of_that_many_nodes(tmp_path, monkeypatch):
    """--slurm_nodes_per_group N: each task has N nodes, one SLURM task (process) on each; the collecting job one node.
    The first node trains the group as one of its processes (train_group --distributed) and evaluates; another node
    only trains its share, with its output in each run's run.node<N>.log (stand-in commands)."""
    from bitnet.runs import slurm
    from experiments import sweep as sweep_command

    parameters = slurm.executor_parameters("s", None, 60, 8, 4, 120, nodes=2)
    assert (parameters["nodes"], parameters["ntasks_per_node"], parameters["gpus_per_task"]) == (2, 1, 8)
    collecting = slurm.collect_parameters(parameters, "4711")
    assert collecting["nodes"] == 1 and "gpus_per_task" not in collecting
    assert slurm.executor_parameters("s", None, 60, 0, 1, 120)["nodes"] == 1
    assert sweep.group_command(sweep.expand(["seed=0"]), "s.py", "W", distributed=True)[-1] == "--distributed"

    root = str(tmp_path)

    def stand_in(step, distributed=False):
        return [sys.executable, "-c", f"print({step!r}, {distributed})"]

    monkeypatch.setattr(sweep, "group_command", lambda runs, sweep_file, root, distributed=False: stand_in("training", distributed))
    monkeypatch.setattr(sweep, "commands", lambda run, base, workdir: [stand_in("training"), stand_in("evaluation")])
    monkeypatch.setattr(slurm, "requeue", lambda job: pytest.fail("nothing was stopped"))
    runs = sweep.expand(["seed=0", "seed=1"])
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert sweep_command.slurm_task(runs, root, "base.py", "sweep.py", True, nodes=2) == {}
    for run in ("seed0", "seed1"):
        with open(os.path.join(root, run, "run.node1.log")) as file:
            assert file.read() == "training True\n"
        assert not os.path.exists(os.path.join(root, run, "run.log"))  # the first node's
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert sweep_command.slurm_task(runs[:1], root, "base.py", "sweep.py", True, nodes=2) == {}
    with open(os.path.join(root, "seed0", "run.log")) as file:
        assert file.read() == "training True\nevaluation False\n"  # a run alone, as one of the 2 nodes' processes
