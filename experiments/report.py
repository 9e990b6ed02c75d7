"""Publish a finished sweep into the results registry, and regenerate the published tables.

    python -m experiments.report --root workdirs/sweep_table1 --out results   # publish a sweep
    python -m experiments.report --tables                                    # README/RESULTS tables
    python -m experiments.report --tuning workdirs/sweep_screen_2bit         # a tuning screen (validation only)

--root copies each finished run's bitwise.npz and metrics.jsonl to OUT/<sweep>/<run>.npz and
.metrics.jsonl and records the run in OUT/results.json (`bitnet.runs.registry`): errors, config, hardware
and provenance read from the workdir, which tests/test_results.py re-checks on the real test split.
Then it writes OUT/<sweep>.md (the table of experiments.sweep) and OUT/<sweep>_curves.png
(validation error per epoch) from every published run of the sweep, so a sweep can be published
in parts (seeds trained on different days, in different workdir roots) without losing a run.
A run of the same name already published from other hardware is kept: the new one is keyed
<sweep>/<run>@<hardware>.
--tables rewrites the `<!-- table:NAME -->` blocks of README.md and RESULTS.md from
results/results.json (experiments/tables.py), pooled by config and hardware.
--tuning publishes a tuning screen (trained with `experiments.sweep --noevaluate`): each run's
config.json and metrics.jsonl to OUT/tuning/<sweep>/<run>/, the source of RESULTS.md's tuning log.
"""

import json
import math
import os
import re
import shutil

from absl import app, flags

from bitnet.deploy import export
from bitnet.workdir import provenance
from bitnet.runs import sweep
from bitnet.workdir.metrics import read_metrics_file
from experiments import cli, tables

PUBLISHED_KEYS = (
    "sweep", "run", "run_kind", "encoding", "seed", "sparsity", "best_val_error", "nonzero_weights", "stored_bits",
    "config", "data", "hardware", "provenance",
)

_ROOT = flags.DEFINE_string("root", None, "A sweep folder (workdirs/<sweep>) to publish.")
_OUT = flags.DEFINE_string("out", "results", "Where to publish.")
_TUNING = flags.DEFINE_string("tuning", None, "A tuning screen's folder (workdirs/<sweep>, trained with --noevaluate) to publish to results/tuning.")
_TABLES = flags.DEFINE_bool("tables", False, "Regenerate the tables of README.md and RESULTS.md from results/results.json.")
_CURVES = flags.DEFINE_bool("curves", False, "Redraw every published sweep's learning curves from its published metrics.")


def require_matplotlib() -> None:
    """One line naming the install, before anything is written, where the optional plots extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        cli.fail('experiments.report draws learning curves with matplotlib, which is not installed; pip install -e ".[plots]"')


STAGE_TITLES = {"float": "float nets", "compressed": "stage 1: compressed", "bitwise": "stage 2: bitwise"}


CURVE_LABELS = {"val_error": "validation error", "train_error": "training error (no validation split)"}


def curve_metric(curves: dict[str, list[dict]]) -> str:
    """What the curves show: validation error, or training error where no run has a validated epoch (a final fit
    on every training image, `data.validation_size = 0`)."""
    return "val_error" if any(m.get("val_error") is not None for lines in curves.values() for m in lines) else "train_error"


def panels(curves: dict[str, list[dict]], metric: str = "val_error") -> list[str]:
    """The stages (in STAGE_TITLES order) that have an epoch with `metric` in some run's metrics: one panel each."""
    return [stage for stage in STAGE_TITLES if any(m["stage"] == stage and m.get(metric) is not None for lines in curves.values() for m in lines)]


def percent_label(value: float, position=None) -> str:
    """A log axis's tick as a plain percentage: 6 -> "6 %", 0.5 -> "0.5 %" (not matplotlib's "6 x 10^0")."""
    return f"{value:g} %"


def minor_percent_label(value: float, position=None) -> str:
    """A minor tick's label: only at 2 and 5 times a power of ten (every minor tick labelled would overlap)."""
    mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return percent_label(value) if round(mantissa, 6) in (2, 5) else ""


def _plot(curves: dict[str, list[dict]], path: str) -> None:
    """`curve_metric`'s error per epoch of each stage that has runs, one line per run (label -> its metrics lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    metric = curve_metric(curves)
    stages = panels(curves, metric)
    figure, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 4.5), sharey=True, squeeze=False)
    for axis, stage in zip(axes[0], stages):
        for label, metrics in curves.items():
            lines = [m for m in metrics if m["stage"] == stage and m.get(metric) is not None]
            if lines:
                axis.plot([m["epoch"] for m in lines], [100 * m[metric] for m in lines], label=label)
        axis.set_title(STAGE_TITLES[stage])
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    low, high = axes[0][0].get_ylim()  # shared: within about a decade every minor tick gets its label
    for axis in axes[0]:
        axis.yaxis.set_major_formatter(FuncFormatter(percent_label))
        axis.yaxis.set_minor_formatter(FuncFormatter(percent_label if high / low <= 12 else minor_percent_label))
    axes[0][0].set_ylabel(CURVE_LABELS[metric])
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def registry_key(index: dict, sweep_name: str, name: str, hardware: str) -> str:
    """<sweep>/<run>, or <sweep>/<run>@<hardware> when that name is published from other hardware."""
    key = f"{sweep_name}/{name}"
    if key in index and index[key].get("hardware") != hardware:
        return f"{key}@{re.sub(r'[^A-Za-z0-9.-]+', '_', hardware.split(': ', 1)[-1])}"  # "AMD EPYC, AVX2" -> AMD_EPYC_AVX2
    return key


def publish(root: str, out: str) -> None:
    """Publish ROOT's finished runs (registry entries, models, metrics), then redraw the sweep's table and curves
    from everything published of it, so a sweep published in parts (seeds on different days) keeps every run."""
    require_matplotlib()
    sweep_name = os.path.basename(root)
    entries, _ = publish_runs(root, out)
    draw_curves(sweep_name, entries, out)
    print(open(os.path.join(out, f"{sweep_name}.md")).read())
    unplotted = [entry["run"] for entry in entries.values() if "metrics" not in entry]
    if unplotted:
        print(f"note: no published metrics for {', '.join(unplotted)} (published before metrics were); not in the curves")


def draw_curves(sweep_name: str, entries: dict, out: str) -> str | None:
    """OUT/<sweep>_curves.png from the published metrics of a sweep's registry entries; None if none has metrics."""
    curves = {key.split("/", 1)[1]: read_metrics_file(os.path.join(out, entry["metrics"])) for key, entry in entries.items() if "metrics" in entry}
    if not curves:
        return None
    path = os.path.join(out, f"{sweep_name}_curves.png")
    _plot(curves, path)
    return path


def redraw_all_curves(out: str) -> list[str]:
    """Every published sweep's curves drawn again from its published metrics (after a change of the drawing)."""
    require_matplotlib()
    with open(os.path.join(out, "results.json")) as file:
        index = json.load(file)
    drawn = []
    for sweep_name in sorted({entry["sweep"] for entry in index.values()}):
        path = draw_curves(sweep_name, {key: entry for key, entry in sorted(index.items()) if entry["sweep"] == sweep_name}, out)
        drawn += [path] if path else []
    return drawn


def publish_file(source: str, target: str) -> None:
    """Copy a run's file; a model is read (validated) and written by bitnet.deploy.export's writer, so every
    published model has the current file form (compressed) whatever code trained it; same arrays."""
    if source.endswith(".npz"):
        arrays, meta = export.load_npz(source)
        export.write_npz(target, arrays, meta)
    else:
        shutil.copyfile(source, target)


def publish_runs(root: str, out: str) -> tuple[dict, list[str]]:
    """Record each finished run of ROOT in OUT/results.json with copies of its bitwise.npz and metrics.jsonl
    (OUT/<sweep>/<run>.npz, .metrics.jsonl) and write OUT/<sweep>.md from every published run of the sweep.
    Returns every published run of the sweep (registry key -> entry) and the runs of ROOT without eval.json."""
    sweep_name = os.path.basename(root)
    names = sorted(name for name in os.listdir(root) if os.path.exists(os.path.join(root, name, "config.json")))
    os.makedirs(os.path.join(out, sweep_name), exist_ok=True)
    index_path = os.path.join(out, "results.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    missing = []
    for name in names:
        workdir = os.path.join(root, name)
        record = sweep.run_record(workdir, sweep_name, name)
        if record is None:
            missing.append(name)
            continue
        if record["hardware"] in (provenance.UNKNOWN, provenance.MIXED):
            print(f"note: {name} trained on {record['hardware']} hardware; it is its own pool")
        key = registry_key(index, sweep_name, name, record["hardware"])
        entry = {field: record[field] for field in (*PUBLISHED_KEYS, *sweep.ERROR_KEYS) if record.get(field) is not None}
        entry["train_seconds"] = round(record["train_seconds"])
        for file_name, suffix, field in (("bitwise.npz", ".npz", "npz"), ("metrics.jsonl", ".metrics.jsonl", "metrics")):
            if os.path.exists(os.path.join(workdir, file_name)):
                target = os.path.join(out, f"{key}{suffix}")
                publish_file(os.path.join(workdir, file_name), target)
                entry[field] = os.path.relpath(target, out)
        index[key] = entry
    with open(index_path, "w") as file:
        json.dump(index, file, indent=2, sort_keys=True)
        file.write("\n")
    published = {key: entry for key, entry in sorted(index.items()) if entry["sweep"] == sweep_name}
    with open(os.path.join(out, f"{sweep_name}.md"), "w") as file:
        file.write(sweep.records_table(list(published.values()), missing))
    return published, missing


TUNING_FILES = ("config.json", "metrics.jsonl")  # what a screen's table and its exact configs need; no model, no test error


def publish_tuning(root: str, out: str) -> None:
    """Copy each run's config.json and metrics.jsonl of a tuning screen to OUT/tuning/<sweep>/<run>/ (tables.py
    renders its `tuning:<sweep>` block from them); a screen never has a test error to publish."""
    sweep_name = os.path.basename(root)
    names = sorted(name for name in os.listdir(root) if os.path.exists(os.path.join(root, name, "metrics.jsonl")))
    if not names:
        cli.fail(f"--tuning={root}: no run with metrics.jsonl in it; pass the workdir root of a trained screen (workdirs/<sweep>)")
    for name in names:
        if os.path.exists(os.path.join(root, name, "eval.json")):
            print(f"note: {name} was evaluated on the test split; its test error is not published with the screen")
        os.makedirs(os.path.join(out, "tuning", sweep_name, name), exist_ok=True)
        for file_name in TUNING_FILES:
            shutil.copyfile(os.path.join(root, name, file_name), os.path.join(out, "tuning", sweep_name, name, file_name))
    print(sweep.validation_table(root, names))


def main(argv):
    del argv
    if not (_ROOT.value or _TABLES.value or _TUNING.value or _CURVES.value):
        cli.fail("experiments.report needs --root SWEEP_FOLDER (publish a sweep), --tuning SCREEN_FOLDER, --tables (regenerate the tables) and/or --curves (redraw the published curves)")
    if _ROOT.value:
        publish(_ROOT.value.rstrip("/"), _OUT.value)
    if _TUNING.value:
        publish_tuning(_TUNING.value.rstrip("/"), _OUT.value)
    if _TABLES.value:
        try:
            tables.write_documents()
        except ValueError as error:  # a table layout that no longer fits the registry
            cli.fail(str(error))
        print(f"regenerated the tables of {', '.join(tables.DOCUMENTS)} from {tables.REGISTRY}")
    if _CURVES.value:
        for path in redraw_all_curves(_OUT.value):
            print(f"drew {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
