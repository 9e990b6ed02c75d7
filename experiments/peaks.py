"""This machine's two peak rates, the yardstick of the packed/float32 ratios in experiments.benchmark.

    python -m experiments.peaks            # one JSON line: FMAs/s, XOR + popcount words/s, their ratio

experiments/peaks.c (built here with `cc -O3 -march=native`) times one core's float32 fused
multiply-adds and its XOR + popcount words, each at its best (see that file). `peak_ratio` is
32 x words/s / FMAs/s: how many times more binary multiply-adds than float32 multiply-adds this
machine can do, so the ratio a packed network could at best reach over the same network in
float32 when both run at their peaks. Issue #24's target at batch 10,000 is 10x float32, or 90 %
of `peak_ratio` on a machine whose peak ratio is below 11x (`target_ratio`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any

from absl import app, flags

from bitnet.deploy import packing

CC = flags.DEFINE_string("cc", "cc", "The C compiler (experiments.peaks, benchmark, benchmark_c).")

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peaks.c")
FLAGS = ["-O3", "-march=native", "-std=gnu11", "-ffp-contract=fast"]
TARGET = 10.0  # packed over float32 at batch 10,000 (issue #24)
TARGET_SHARE = 0.9  # of the peak ratio, on machines whose peak ratio is below TARGET_BELOW
TARGET_BELOW = 11.0


def target_ratio(peak_ratio: float) -> float:
    """The packed/float32 target on a machine with this peak ratio."""
    return TARGET_SHARE * peak_ratio if peak_ratio < TARGET_BELOW else TARGET


def measure(compiler: str = "cc") -> dict[str, Any]:
    """Build and run peaks.c; its rates with `peak_ratio` and `target_ratio`, or {"error": why} (one line)."""
    if shutil.which(compiler) is None:
        return {"error": f"no C compiler {compiler!r} on PATH: install one (e.g. apt install gcc) or pass --cc"}
    with tempfile.TemporaryDirectory() as folder:
        binary = os.path.join(folder, "peaks")
        built = subprocess.run([compiler, *FLAGS, "-o", binary, SOURCE], capture_output=True, text=True)
        if built.returncode:
            return {"error": f"{compiler} could not build {SOURCE}: {built.stderr.strip().splitlines()[-1:]}"}
        rates = json.loads(subprocess.run([binary], capture_output=True, text=True, check=True).stdout)
    rates["peak_ratio"] = packing.WORD_BITS * rates["xor_popcount_words_per_s"] / rates["float32_fmas_per_s"]
    rates["target_ratio"] = target_ratio(rates["peak_ratio"])
    rates["compiler"] = " ".join([compiler, *FLAGS])
    return rates


def describe(peaks: dict[str, Any]) -> str:
    """One line for a benchmark's output."""
    if "error" in peaks:
        return f"peaks: not measured ({peaks['error']})"
    return (
        f"peaks (one core, {peaks['compiler']}): float32 {peaks['float32_fmas_per_s'] / 1e9:.1f} G FMA/s, XOR + popcount "
        f"{peaks['xor_popcount_words_per_s'] / 1e9:.2f} G words/s ({peaks['popcount_method']}, {peaks['popcount_isa']}) = "
        f"{peaks['peak_ratio']:.1f}x binary over float32 multiply-adds; target at batch 10000: {peaks['target_ratio']:.1f}x"
    )


def main(argv):
    del argv
    peaks = measure(CC.value)
    print(describe(peaks))
    print(json.dumps(peaks, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
