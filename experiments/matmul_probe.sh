#!/usr/bin/env bash
# experiments/matmul_probe.py on a lent GPU, in one call (its docstring says what it measures):
#   run(command="bash experiments/matmul_probe.sh", carry=[".mnist"], timeout_s=480)
# .mnist/ holds the four MNIST IDX .gz files (ignored by git). First every section with XLA's default
# flags, then the single matmuls again with XLA's Triton GEMMs off (cuBLAS / cuBLASLt only; CUBLAS_GEMM=0 skips).
# Writes $OUT/matmul_probe.json, $OUT/matmul_probe_cublas.json, $OUT/matmul_probe.log, $OUT/hlo.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
work=/tmp/matmul_probe && mkdir -p "$work"
export BITNET_MNIST_DIR="${BITNET_MNIST_DIR:-.mnist}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv > "$out/nvidia_smi.csv" 2>&1
timeout "${PROBE_SECONDS:-300}" python3 -m experiments.matmul_probe --out="$work/matmul_probe.json" "$@" 2>&1 | tee "$out/matmul_probe.log"
cp "$work/matmul_probe.json" "$out/"
if [ "${CUBLAS_GEMM:-1}" = 1 ]; then
  XLA_FLAGS=--xla_gpu_enable_triton_gemm=false timeout "${CUBLAS_SECONDS:-90}" python3 -m experiments.matmul_probe --sections=gemm \
    --out="$out/matmul_probe_cublas.json" 2>&1 | tee -a "$out/matmul_probe.log"
fi
tar czf "$out/hlo.tgz" -C "$work" --exclude=matmul_probe.json .
