"""The smoke run and the smoke sweep, checked bit for bit against hashes recorded on this kind of CPU.

    python -m experiments.invariants                 # run both in a temp folder, compare with the record
    python -m experiments.invariants --record        # (re)write the record of this kind of CPU

A refactor of the trainer must leave what a user gets unchanged: the metrics lines (timing fields
aside), every checkpoint's arrays and meta, the binarized model, the exported `.npz` arrays and the
test errors in `eval.json`. This runs `experiments.train` + `experiments.evaluate` on
`configs/smoke.py` and `./launch.sh sweep configs/sweep_smoke.py` (through `experiments.sweep`),
hashes each of those per file, and compares the hashes with `tests/invariants/<cpu kind>.json`:
amd-epyc-avx2.json was recorded by the commit before the trainers were merged (62a4262, issue #22),
amd-epyc-avx-512.json by 42bdc9c + this file's change (session 15: first seen on that kind; the
trainer had matched 62a4262's record bit for bit on the AVX2 kind at 630987d). Floating-point
results differ between kinds of CPU (model name and vector instruction set: the AVX2 and the AVX-512
"AMD EPYC" guests differ in every hash), so each kind has its own record; exit status 1 on any
difference, naming the files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

_RECORD = flags.DEFINE_bool("record", False, "Write this kind of CPU's record instead of comparing with it.")
_KEEP = flags.DEFINE_string("workdir_root", None, "Run in this folder (kept) instead of a temporary one.")

TIMING = ("examples_per_sec", "epoch_seconds")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_record_name() -> str:
    """This CPU's kind (model name and vector instruction set) as a file name, e.g. amd-epyc-avx2."""
    from bitnet.workdir import provenance

    return re.sub(r"[^a-z0-9]+", "-", provenance.cpu_kind().lower()).strip("-")


def _digest(value) -> str:
    return hashlib.sha256(value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _tree_digests(prefix: str, tree, out: dict) -> None:
    if isinstance(tree, dict):
        for key in sorted(tree):
            _tree_digests(f"{prefix}/{key}", tree[key], out)
    elif isinstance(tree, (list, tuple)):
        for index, item in enumerate(tree):
            _tree_digests(f"{prefix}/{index}", item, out)
    else:
        array = np.asarray(tree)
        out[prefix] = _digest(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes())


def _without_provenance(meta):
    if isinstance(meta, dict):
        return {key: _without_provenance(value) for key, value in meta.items() if key not in ("provenance", "data")}
    return meta


def workdir_digests(workdir: str) -> dict[str, str]:
    """{file or array: hash} of what a run leaves that must not change (timing and provenance aside)."""
    from bitnet.workdir import checkpoints  # late: imports JAX

    out: dict[str, str] = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as file:
        lines = [{key: value for key, value in json.loads(line).items() if key not in TIMING} for line in file if line.strip()]
    out["metrics.jsonl"] = _digest(lines)
    with open(os.path.join(workdir, "eval.json")) as file:
        evaluation = json.load(file)
    out["eval.json"] = _digest({key: value for key, value in evaluation.items() if key.endswith("_error") or key == "num_examples"})
    for step_dir in sorted(glob.glob(os.path.join(workdir, "checkpoints", "*", "*", "*"))) + sorted(glob.glob(os.path.join(workdir, "checkpoints", "binarized", "*"))):
        if not os.path.isdir(step_dir) or os.path.basename(step_dir).startswith("tmp") or not os.path.basename(step_dir).isdigit():
            continue
        name = os.path.relpath(step_dir, workdir)
        for item in sorted(os.listdir(step_dir)):
            path = os.path.join(step_dir, item)
            if item == "meta":
                with open(os.path.join(path, "metadata")) as file:
                    out[f"{name}/meta"] = _digest(_without_provenance(json.load(file)))
            elif item in ("state", "arrays"):
                _tree_digests(f"{name}/{item}", checkpoints.read_arrays(path), out)
    with np.load(os.path.join(workdir, "bitwise.npz")) as model:
        for key in sorted(model.files):
            if key != "meta":
                _tree_digests(f"bitwise.npz/{key}", model[key], out)
    return out


def run_all(root: str) -> dict[str, dict[str, str]]:
    """Run the smoke run and the smoke sweep under `root`; {workdir name: digests}."""
    env = dict(os.environ)
    python = sys.executable
    smoke = os.path.join(root, "smoke")
    for module, args in (("experiments.train", ["--config", "configs/smoke.py"]), ("experiments.evaluate", [])):
        subprocess.run([python, "-m", module, *args, "--workdir", smoke], cwd=ROOT, env=env, check=True)
    sweep_root = os.path.join(root, "sweep_smoke")
    subprocess.run([python, "-m", "experiments.sweep", "--sweep", "configs/sweep_smoke.py", "--workdir_root", sweep_root], cwd=ROOT, env=env, check=True)
    workdirs = {"smoke": smoke}
    workdirs.update({f"sweep_smoke/{name}": os.path.join(sweep_root, name) for name in sorted(os.listdir(sweep_root))
                     if os.path.isdir(os.path.join(sweep_root, name))})
    return {name: workdir_digests(path) for name, path in workdirs.items()}


def compare(recorded: dict, measured: dict) -> list[str]:
    """One line per difference between two {workdir: {file: hash}} records."""
    problems = []
    for name in sorted(set(recorded) | set(measured)):
        old, new = recorded.get(name, {}), measured.get(name, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                problems.append(f"{name}: {key}: recorded {old.get(key)}, now {new.get(key)}")
    return problems


def main(argv):
    del argv
    record_path = os.path.join(ROOT, "tests", "invariants", f"{cpu_record_name()}.json")
    with tempfile.TemporaryDirectory() as temporary:
        measured = run_all(os.path.abspath(_KEEP.value) if _KEEP.value else temporary)
    if _RECORD.value:
        os.makedirs(os.path.dirname(record_path), exist_ok=True)
        with open(record_path, "w") as file:
            json.dump(measured, file, indent=1, sort_keys=True)
        print(f"recorded {sum(map(len, measured.values()))} hashes of {len(measured)} workdirs in {record_path}")
        return
    if not os.path.exists(record_path):
        sys.exit(f"error: no record for this kind of CPU ({record_path}); record one with --record at the commit to compare with")
    with open(record_path) as file:
        problems = compare(json.load(file), measured)
    for line in problems:
        print(line)
    print(f"{'DIFFERENT' if problems else 'identical'}: {sum(map(len, measured.values()))} hashes of {len(measured)} workdirs "
          f"against {os.path.relpath(record_path, ROOT)}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    app.run(main)
