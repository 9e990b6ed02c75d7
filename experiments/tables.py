"""The published tables of README.md and RESULTS.md, made from results/results.json and results/tuning.

`python -m experiments.report --tables` rewrites every `<!-- table:NAME -->` block of both files
from the registry (and each `tuning:<sweep>` block from the validation metrics of a published
tuning screen, results/tuning/<sweep>/<run>/metrics.jsonl); `tests/test_results.py` checks that the committed files equal what this
produces, so a table cannot drift from the registry or leave a run out.
"""

from __future__ import annotations

import os

from bitnet.runs import registry, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRY = os.path.join(REPO, "results", "results.json")
TUNING = os.path.join(REPO, "results", "tuning")  # tuning screens (validation only), as experiments.report --tuning publishes them
DOCUMENTS = ("README.md", "RESULTS.md")

TABLE1_COLUMNS = {
    "bipolar input": lambda entry: entry["encoding"] == "bipolar",
    "0/1 input": lambda entry: entry["encoding"] == "binary",
    "fixed-point 2 bits": lambda entry: entry["encoding"] in ("fixed2", "fixed2_01"),  # the code's bits as +-1 or 0/1 inputs
}
TABLE1_PAPER = (
    "| paper: real-valued (64-bit float) | 1.17 % | 1.32 % | 1.36 % |",
    "| paper: bitwise | 1.33 % | 1.36 % | 1.47 % |",
)
WIDTH_1024 = ("model.hidden_sizes", [1024, 1024, 1024])
TABLE1_ROWS = (
    registry.Row("float relu MLP, paper protocol (`sweep_table1`)", ("sweep_table1",), (("run_kind", "float"),)),
    registry.Row("bitwise, paper protocol (`sweep_table1`)", ("sweep_table1",), (("run_kind", "bitwise"),)),
    registry.Row("bitwise, lambda = 0.5 (`sweep_tuned`)", ("sweep_tuned",)),
    registry.Row("bitwise, augmented recipe (`sweep_augmented`, `augmented`)", ("sweep_augmented", "augmented"), (WIDTH_1024,)),
    registry.Row("float relu MLP, 2-bit code as 0/1 inputs (`sweep_fixed2_01`)", ("sweep_fixed2_01",), (("run_kind", "float"),)),
    registry.Row("bitwise, 2-bit code as 0/1 inputs (`sweep_fixed2_01`)", ("sweep_fixed2_01",), (("run_kind", "bitwise"),)),
    registry.Row("bitwise, threshold neurons (batch norm), binary weights, no dropout, shifts (`sweep_binary_bn`)", ("sweep_binary_bn",)),
    registry.Row("bitwise, the same with a 150-epoch stage 2 (`sweep_binary_bn_long`)", ("sweep_binary_bn_long",), (("stage2.epochs", 150),)),
    registry.Row("bitwise, the same with a 300-epoch stage 2 (`sweep_binary_bn_long`)", ("sweep_binary_bn_long",), (("stage2.epochs", 300),)),
    registry.Row("float relu MLP, paper protocol, 300 epochs at 3e-4 (`sweep_table1_long`)", ("sweep_table1_long",), (("run_kind", "float"),)),
    registry.Row("bitwise, paper protocol, stage 1 300 epochs at 3e-4 + 100 (`sweep_table1_long`)", ("sweep_table1_long",), (("run_kind", "bitwise"),)),
    registry.Row("bitwise, the same as a final fit, 60,000 (last states, no validation; `sweep_table1_final_fit`)", ("sweep_table1_final_fit",)),
)
SWEEPS = ("sweep_table1", "sweep_tuned", "sweep_augmented", "augmented", "sweep_ablations", "sweep_fixed2_01", "sweep_binary_bn", "sweep_binary_bn_long", "sweep_width", "sweep_binary_bn_4096", "sweep_table1_long", "sweep_table1_final_fit")


def render(entries: dict[str, registry.Entry]) -> dict[str, str]:
    """Every table by block name: table1 (the paper's layout), pools (all runs), runs:<sweep>."""
    values = list(entries.values())
    tables = {
        "table1": registry.summary_table(values, TABLE1_ROWS, TABLE1_COLUMNS, TABLE1_PAPER),
        "pools": registry.pools_table(values),
    }
    for sweep_name in SWEEPS:
        tables[f"runs:{sweep_name}"] = registry.runs_table(entry for entry in values if entry["sweep"] == sweep_name)
    tables.update(tuning_tables())
    unlisted = sorted({entry["sweep"] for entry in values} - set(SWEEPS))
    if unlisted:
        raise ValueError(f"results.json has runs of sweeps {unlisted} that no table lists; add them to experiments/tables.py SWEEPS")
    return tables


def tuning_tables(folder: str = TUNING) -> dict[str, str]:
    """tuning:<sweep> for every published screen: each run's validation errors per stage, in its sweep file's order."""
    tables = {}
    for sweep_name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        names = [run.name for run in sweep.expand(sweep.load_sweep(os.path.join(REPO, "configs", f"{sweep_name}.py")).runs)]
        tables[f"tuning:{sweep_name}"] = sweep.validation_table(os.path.join(folder, sweep_name), names).rstrip("\n")
    return tables


def updated_documents(entries: dict[str, registry.Entry]) -> dict[str, str]:
    """The text of README.md and RESULTS.md with every table block regenerated."""
    tables = render(entries)
    documents = {}
    for name in DOCUMENTS:
        with open(os.path.join(REPO, name)) as file:
            text = file.read()
        for block, content in tables.items():
            if f"<!-- table:{block} -->" in text:
                text = registry.replace_block(text, block, content)
        documents[name] = text
    return documents


def write_documents() -> None:
    for name, text in updated_documents(registry.load(REGISTRY)).items():
        with open(os.path.join(REPO, name), "w") as file:
            file.write(text)
