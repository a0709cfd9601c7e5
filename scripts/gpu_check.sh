#!/usr/bin/env bash
# GPU smoke check (not part of build or tests): install the CUDA libtorch, rebuild, run
# generation on cuda (expected: "The capital of France is Paris."), then train SmolLM2 for a few
# steps on cuda with each way of holding the frozen base — bf16 storage, int8, int4 with
# checkpointed layers — and the tests of the quantised linear and checkpointing kernels.
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
[ "$out" = "The capital of France is Paris." ] || { echo "gpu check: unexpected reply" >&2; exit 1; }
for base in "model.dtype=auto" "model.quantize=int8" "model.quantize=int4 --set train.checkpointing=layers"; do
    dir=$(mktemp -d)
    # shellcheck disable=SC2086
    ./target/release/ardpipe run pipelines/causal_lm.ard -q --set model.device=cuda --set train.steps=4 \
        --set train.precision=bf16 --set $base --set "train.eval_every=4 steps" \
        --set evaluate.max_examples=32 --set "output.export=[]" --set "output.dir=\"$dir\""
    python3 -c "import json,sys; s=json.load(open('$dir/summary.json')); print('$base:', s['steps'], 'steps,', s['final_eval'])"
    rm -rf "$dir"
done
echo "gpu check: OK"
