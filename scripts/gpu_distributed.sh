#!/usr/bin/env bash
# NCCL data-parallel check on a GPU machine (not part of build or tests): install the CUDA
# libtorch, rebuild, confirm NCCL is compiled in, then measure training steps/s of the
# quickstart pipeline on 1 and on N GPUs (one process per GPU, `ardpipe run --nproc`).
#
#   scripts/gpu_distributed.sh            N = every visible GPU
#   scripts/gpu_distributed.sh 4          N = 4
#
# NCCL support is compiled only when the build finds cuda.h and nccl.h (CUDA_HOME,
# NCCL_INCLUDE_DIR, /usr/local/cuda, or the nvidia-* wheels beside the CUDA libtorch).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup.py --gpu --no-peer
cargo build --release -p ardpipe
bin=./target/release/ardpipe
$bin doctor | tee /tmp/ardpipe-doctor.txt
if ! grep -q "^parallel .*nccl" /tmp/ardpipe-doctor.txt; then
    echo "gpu distributed: this build has no NCCL (no cuda.h/nccl.h found at build time)." >&2
    echo "  fix: install the CUDA toolkit headers or set NCCL_INCLUDE_DIR and CUDA_HOME, then rerun" >&2
    exit 1
fi
n=${1:-$(nvidia-smi -L | wc -l)}
if [ "$n" -lt 1 ]; then
    echo "gpu distributed: no GPU visible" >&2
    exit 1
fi
counts=(--nproc 1)
[ "$n" -gt 1 ] && counts+=(--nproc "$n")
# The quickstart's global batch of 32 is cut into N parts: raise it for many GPUs.
$bin bench distributed "${counts[@]}" --steps 50 --rounds 3 \
    --set model.device=cuda --set "train.batch_size=$((32 * n))" \
    --report docs/BENCHMARKS-distributed-gpu.md
