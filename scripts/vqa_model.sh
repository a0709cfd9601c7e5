#!/usr/bin/env bash
# The model pipelines/vqa.ard trains: a PaliGemma-layout vision-language model composed
# LLaVA-style by `ardpipe compose` from the SmolLM2-135M-Instruct asset (pretrained decoder and
# tokenizer) and a new 4-layer SigLIP tower and projector (random, seed 0), written to
# $ARDPIPE_CACHE/assets/vqa-smollm2-siglip. Idempotent: composed again only when the recorded
# arguments differ (or the folder is incomplete). Needs the built binary and the SmolLM2 asset.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${ARDPIPE_CACHE:-$HOME/.cache/ardpipe}
out=$cache/assets/vqa-smollm2-siglip
args=(--decoder "$cache/assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
      --image-size 64 --patch-size 16 --hidden-size 256 --intermediate-size 1024
      --layers 4 --heads 4 --seed 0)
stamp=$out/.composed-with
want="${args[*]}"
if [[ -f $out/config.json && -f $out/model.safetensors && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    echo "vqa model: $out is current"
    exit 0
fi
./target/debug/ardpipe compose "${args[@]}" --out "$out" --force
printf '%s' "$want" > "$stamp.partial"
mv "$stamp.partial" "$stamp"
