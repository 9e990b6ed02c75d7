"""Every published binarized model re-evaluates on the real MNIST test split exactly as published."""

import json
import os

import numpy as np
import pytest

from bitnet.deploy import export
from bitnet.training import configuration
from bitnet.runs import evaluate, registry, sweep
from bitnet.workdir.metrics import read_metrics_file
from experiments import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")


def _published() -> list[tuple[str, dict]]:
    path = os.path.join(RESULTS, "results.json")
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [(name, entry) for name, entry in sorted(json.load(file).items()) if "npz" in entry]


@pytest.mark.parametrize("name, entry", _published(), ids=[name for name, _ in _published()])
def test_published_model_error(name, entry, test_split):
    images, labels = test_split
    arrays, meta = export.load_npz(os.path.join(RESULTS, entry["npz"]))
    error = float(np.mean(evaluate.packed_predictions(arrays, meta, images) != labels))
    assert error == entry["packed_error"] == meta["test_error"]
    row_start = f"| {entry['run']} | {registry.short_hardware(entry['hardware'])} |"
    with open(os.path.join(REPO, "RESULTS.md")) as file:
        rows = [line for line in file if line.startswith(row_start)]
    assert len(rows) == 1 and f"| {100 * error:.2f} % |" in rows[0], f"RESULTS.md lacks {row_start} at {100 * error:.2f} %"


def test_registry_entries_are_complete():
    entries = registry.load(tables.REGISTRY)
    for name, entry in entries.items():
        assert {"sweep", "run", "config", "data", "hardware", "provenance", "seed"} <= set(entry), name
        assert entry["data"]["name"] == entry["config"]["data"]["name"] and len(entry["data"]["checksums"]) == 4, name
        assert entry["provenance"]["commits"] and entry["config"]["seed"] == entry["seed"], name
        assert registry.flat_config(entry["config"]).keys().isdisjoint(registry.PATH_FIELDS), name
        if "metrics" in entry:  # the published learning curve is the run's: its last stage selected best_val_error
            metrics = read_metrics_file(os.path.join(RESULTS, entry["metrics"]))
            last_stage = [line["val_error"] for line in metrics if line["stage"] == metrics[-1]["stage"] and line["val_error"] is not None]
            if entry["config"]["data"].get("validation_size") == 0:  # a final fit: no validation line, no best
                assert not last_stage and entry.get("best_val_error") is None, name
            else:
                assert min(last_stage) == entry["best_val_error"], name


def test_published_tables_are_generated_from_the_registry_and_leave_no_run_out():
    entries = registry.load(tables.REGISTRY)
    for document, text in tables.updated_documents(entries).items():
        with open(os.path.join(REPO, document)) as file:
            assert file.read() == text, f"{document} differs from the registry; run python -m experiments.report --tables"
    assert sum(len(pool.entries) for pool in registry.pools(entries.values())) == len(entries)
    with open(os.path.join(REPO, "RESULTS.md")) as file:
        results_md = file.read()
    assert "<!-- table:pools -->" in results_md
    for entry in entries.values():  # every run has its row in its sweep's table
        assert f"| {entry['run']} | {registry.short_hardware(entry['hardware'])} |" in results_md


def test_every_published_tuning_screen_has_its_table_in_results_md():
    """The tuning log: each screen under results/tuning is shown (and, by the test above, shown as its metrics say),
    every run of its sweep file trained."""
    with open(os.path.join(REPO, "RESULTS.md")) as file:
        results_md = file.read()
    screens = tables.tuning_tables()
    assert screens, "no tuning screen is published under results/tuning"
    for block, table in screens.items():
        assert f"<!-- table:{block} -->" in results_md, f"RESULTS.md lacks the tuning log block {block}"
        assert "not trained" not in table, f"{block}: a run of the screen has no metrics"


def _published_configs():
    """(label, stored config, sweep name, run name) of every published run: the registry's and the tuning screens'."""
    for entry in registry.load(tables.REGISTRY).values():
        yield f"{entry['sweep']}/{entry['run']}", entry["config"], entry["sweep"], entry["run"]
    for sweep_name in sorted(os.listdir(tables.TUNING)):
        for run in sorted(os.listdir(os.path.join(tables.TUNING, sweep_name))):
            with open(os.path.join(tables.TUNING, sweep_name, run, "config.json")) as file:
                yield f"tuning/{sweep_name}/{run}", configuration.config_fields(json.load(file)), sweep_name, run


def test_every_published_run_is_what_its_sweep_file_gives_today():
    """A changed default must not change what a published command trains: the sweep files pin what their runs ran."""
    for what, stored, sweep_name, run in _published_configs():
        spec = sweep.load_sweep(os.path.join(REPO, "configs", f"{sweep_name}.py"))
        if "runs" in spec:
            runs = {item.name: item for item in sweep.expand(spec.runs)}
            today = configuration.config_dict(sweep.run_config(spec.base, runs[run]))
        else:  # a config file trained as it is (configs/augmented.py)
            today = configuration.config_dict(spec)
        ignored = {*registry.PATH_FIELDS, *registry.CADENCE_FIELDS}  # where it ran and how often it saved: not what
        assert [key for key in configuration.config_differences(stored, today) if key not in ignored] == [], what
