"""A tiny random PaliGemma-2 with a real tokenizer, for training runs through the CLI
(tests/cli/vqa.rs), and the PEFT check of what those runs export.

usage:
  paligemma_peft.py make OUT
      -> OUT/ (config.json, model.safetensors, tokenizer files, preprocessor_config.json): SigLIP
         tower (32 px, 16-px patches: 4 image tokens), projector, Gemma 2 decoder with soft-capping
         and a sliding window shorter than a row; the byte-level BPE tokenizer of
         engine/models/tests/peer/seq_cls.py; the image token one past the vocabulary
  paligemma_peft.py check BASE ADAPTER OURS
      -> one JSON line: PEFT (`PeftModel.from_pretrained` on BASE) logits for OURS' `ids`,
         `token_type_ids` and `pixel_values` against OURS' `logits` (ardpipe's with the adapter),
         and how much the adapter moves them
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../engine/models/tests/peer"))
from seq_cls import tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    Gemma2Config,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    SiglipImageProcessor,
    SiglipVisionConfig,
)


def make(out):
    tok = tokenizer("decoder")
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, image_size=32, patch_size=16,
                                vision_use_head=False)
    text = Gemma2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=96,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        head_dim=16, query_pre_attn_scalar=24, sliding_window=6,
                        attn_logit_softcapping=20.0, final_logit_softcapping=30.0,
                        initializer_range=0.1, max_position_embeddings=128,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    config = PaliGemmaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                             image_token_id=len(tok), projection_dim=64, hidden_size=64)
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}, resample=3, image_mean=[0.5] * 3,
                         image_std=[0.5] * 3).save_pretrained(out)
    print("ok")


def check(base_dir, adapter_dir, ours_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    ours = load_file(ours_path)
    inputs = dict(input_ids=ours["ids"], token_type_ids=ours["token_type_ids"],
                  pixel_values=ours["pixel_values"])
    base = PaliGemmaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        plain = base(**inputs).logits
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    # Which modules PEFT wrapped: both towers must be there.
    wrapped = sorted({n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A" in n})
    print(json.dumps({
        "max_abs_diff": (logits - ours["logits"]).abs().max().item(),
        "effect": (logits - plain).abs().max().item(),
        "vision_modules": sum("vision_tower" in n for n in wrapped),
        "decoder_modules": sum("language_model" in n for n in wrapped),
    }))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        check(*sys.argv[2:5])
