"""transformers' PaliGemma training inputs for image questions, for engine/data/tests/vision.rs.

Usage: paligemma_inputs.py CASES_JSON OUT_DIR

CASES_JSON is {"gguf": PATH, "size": S, "image_seq_length": N, "rows": [{"image": PATH,
"question": Q, "answer": A}, ...]}. The tokenizer is the one transformers rebuilds from the GGUF
file; it is saved, before the processor adds its tokens, to OUT_DIR/tokenizer/ (tokenizer.json and
tokenizer_config.json), which is what the Rust side loads. Then PaliGemmaProcessor (a
SiglipImageProcessor at S × S, bicubic, mean = std = 0.5, with image_seq_length N, over that
tokenizer) encodes each row as a training example: `processor(images=[image], text=[question],
suffix=[answer])`. Row i's pixel_values[0] (3 × S × S) is written to OUT_DIR/i.f32 as
little-endian float32. Prints JSON: the image token's id, the tokenizer's bos/eos tokens, and per
row input_ids, token_type_ids and labels.
"""

import json
import os
import sys

from PIL import Image
from transformers import AutoTokenizer, PaliGemmaProcessor, SiglipImageProcessor


def main():
    case, out = json.load(open(sys.argv[1])), sys.argv[2]
    gguf = case["gguf"]
    tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    tokenizer.save_pretrained(os.path.join(out, "tokenizer"))
    size = case["size"]
    images = SiglipImageProcessor(
        size={"height": size, "width": size},
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    images.image_seq_length = case["image_seq_length"]
    processor = PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer)
    rows = []
    for i, row in enumerate(case["rows"]):
        got = processor(
            images=[Image.open(row["image"])],
            text=[row["question"]],
            suffix=[row["answer"]],
            return_tensors="np",
        )
        pixels = got["pixel_values"][0]
        assert pixels.shape == (3, size, size), pixels.shape
        pixels.astype("<f4").tofile(os.path.join(out, f"{i}.f32"))
        rows.append({k: got[k][0].tolist() for k in ("input_ids", "token_type_ids", "labels")})
    print(json.dumps({
        "image_token_id": processor.image_token_id,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "rows": rows,
    }))


if __name__ == "__main__":
    main()
