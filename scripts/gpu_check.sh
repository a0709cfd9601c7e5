#!/usr/bin/env bash
# GPU smoke check (not part of build or tests): install the CUDA libtorch, rebuild, and run
# generation on cuda. Expected output: "The capital of France is Paris."
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup.py --gpu
cargo build --release -p ardpipe
./target/release/ardpipe doctor
out=$(./target/release/ardpipe generate --device cuda --model .ardpipe/assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
      --chat --prompt "What is the capital of France?" --max-tokens 16)
echo "$out"
./target/release/ardpipe generate --device cuda --dtype bf16 --model .ardpipe/assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
      --chat --prompt "What is the capital of France?" --max-tokens 16
[ "$out" = "The capital of France is Paris." ] && echo "gpu check: OK" || { echo "gpu check: unexpected reply" >&2; exit 1; }
