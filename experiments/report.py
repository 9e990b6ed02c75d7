"""Publish a finished sweep: its results table, learning curves (PNG) and binarized models.

    python -m experiments.report --root workdirs/sweep_table1 --out results

Writes OUT/<sweep>.md (the table of experiments.sweep), OUT/<sweep>_curves.png (validation error
per epoch, stage 1 and stage 2, every run), copies each run's bitwise.npz to OUT/<sweep>/<run>.npz
and records {file: test error, wall time} in OUT/results.json, which tests/test_results.py re-checks
on the real test split.
"""

import json
import os
import shutil

from absl import app, flags

from bitnet import sweep
from experiments import cli

PUBLISHED_KEYS = ("run_kind", "encoding", "seed", "sparsity", "best_val_error", "nonzero_weights", "stored_bits")

_ROOT = flags.DEFINE_string("root", None, "A sweep folder (workdirs/<sweep>).")
_OUT = flags.DEFINE_string("out", "results", "Where to publish.")
flags.mark_flag_as_required("root")


def require_matplotlib() -> None:
    """One line naming the install, before anything is written, where the optional plots extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        cli.fail('experiments.report draws learning curves with matplotlib, which is not installed; pip install -e ".[plots]"')


def _plot(root: str, names: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("float", "compressed", "bitwise")
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    for axis, stage in zip(axes, stages):
        for name in names:
            lines = [m for m in sweep.read_metrics(os.path.join(root, name)) if m["stage"] == stage]
            if lines:
                axis.plot([m["epoch"] for m in lines], [100 * m["val_error"] for m in lines], label=name)
        axis.set_title({"float": "float nets", "compressed": "stage 1: compressed", "bitwise": "stage 2: bitwise"}[stage])
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    axes[0].set_ylabel("validation error (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv):
    del argv
    require_matplotlib()
    root, out = _ROOT.value.rstrip("/"), _OUT.value
    sweep_name = os.path.basename(root)
    names = sorted(name for name in os.listdir(root) if os.path.exists(os.path.join(root, name, "config.json")))
    os.makedirs(os.path.join(out, sweep_name), exist_ok=True)
    with open(os.path.join(out, f"{sweep_name}.md"), "w") as file:
        file.write(sweep.results_table(root, names))
    _plot(root, names, os.path.join(out, f"{sweep_name}_curves.png"))
    index_path = os.path.join(out, "results.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    for name in names:
        workdir = os.path.join(root, name)
        record = sweep.run_record(workdir)
        if record is None:
            continue
        entry = {key: record[key] for key in (*PUBLISHED_KEYS, *sweep.ERROR_KEYS) if record.get(key) is not None}
        entry["train_seconds"] = round(record["train_seconds"])
        if os.path.exists(os.path.join(workdir, "bitwise.npz")):
            target = os.path.join(out, sweep_name, f"{name}.npz")
            shutil.copyfile(os.path.join(workdir, "bitwise.npz"), target)
            entry["npz"] = os.path.relpath(target, out)
        index[f"{sweep_name}/{name}"] = entry
    with open(index_path, "w") as file:
        json.dump(index, file, indent=2, sort_keys=True)
    print(open(os.path.join(out, f"{sweep_name}.md")).read())


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
