#!/usr/bin/env bash
# bitnet launcher.
#   ./launch.sh [--config.x=y]  set up .venv if needed, train the default config, evaluate, export
#   ./launch.sh test [--full]   set up .venv if needed, run the default test tier (--full: every test, as CI)
#   ./launch.sh sweep CONFIG    run every run of a sweep config (configs/sweep_*.py), then tabulate
#                               (--launcher slurm: submit it as one SLURM job array; --collect: tabulate now)
# Environment: WORKDIR (default workdirs/default), BITNET_MNIST_DIR (folder of the four MNIST IDX
# files; without it MNIST is downloaded), PYTHON (interpreter used to make .venv).
set -euo pipefail
cd "$(dirname "$0")"

setup() {
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  if ! .venv/bin/python -c "import bitnet, pytest" 2>/dev/null || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
    touch .venv/.installed
  fi
}

command="${1:-main}"
if [[ "$command" == --* ]]; then command=main; set -- main "$@"; fi  # ./launch.sh --config.x=y
case "$command" in
  main)
    setup
    workdir="${WORKDIR:-workdirs/default}"
    .venv/bin/python -m experiments.train --config configs/default.py --workdir "$workdir" "${@:2}"
    .venv/bin/python -m experiments.evaluate --workdir "$workdir"
    ;;
  test)
    setup
    if [ "${2:-}" = "--full" ]; then
      .venv/bin/python -m pytest -q "${@:3}"               # every test (what CI runs)
    else
      .venv/bin/python -m pytest -q -m "not slow" "${@:2}" # the default tier: minutes on 2 cores
    fi
    ;;
  sweep)
    setup
    [ $# -ge 2 ] || { echo "usage: ./launch.sh sweep CONFIG [--workdir_root DIR] [--launcher local|slurm] [--collect]" >&2; exit 2; }
    exec .venv/bin/python -m experiments.sweep --sweep "$2" "${@:3}"  # exec: a signal to this pid reaches the sweep
    ;;
  *)
    echo "unknown command '$command'; use one of: (none) | test | sweep CONFIG" >&2
    exit 2
    ;;
esac
