#!/usr/bin/env bash
# experiments/device_inference.py on a lent GPU, in one call (see its docstring and BENCHMARKS.md):
#   run(command="bash experiments/device_inference.sh", carry=[".mnist", ".whl"], timeout_s=540)
# Carried, both ignored by git: .mnist/ the four MNIST IDX .gz files (cp $BITNET_MNIST_DIR/*.gz .mnist/);
# .whl/ optional wheels of packages the device image lacks or has in another version (README of
# experiments/device_inference.py: the image's JAX, flax, optax and absl suffice, so it may stay empty).
# Writes $OUT/device_inference.json and $OUT/device_inference.log. Extra arguments go to the script;
# INFERENCE_SECONDS (default 540) bounds its run, so a call ends inside its limit.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export BITNET_MNIST_DIR="${BITNET_MNIST_DIR:-.mnist}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
timeout "${INFERENCE_SECONDS:-540}" python3 -m experiments.device_inference --out="$out/device_inference.json" "$@" 2>&1 | tee "$out/device_inference.log"
