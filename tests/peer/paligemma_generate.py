"""The peer for `ardpipe generate --image` (tests/cli/models.rs): transformers'
PaliGemmaForConditionalGeneration.generate on a PaliGemma folder (its own tokenizer and
preprocessor_config.json, through PaliGemmaProcessor), greedy, with no adapter and with a PEFT
LoRA adapter it makes on both towers and the projector (random, nonzero B) and saves.

usage: paligemma_generate.py MODEL_DIR IMAGE QUESTION NEW_TOKENS ADAPTER_OUT
prints one JSON object: {"prompt_tokens", "base": text, "adapter": text} (the new tokens
decoded without special tokens).
"""
import json
import sys

import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from transformers import (
    AutoTokenizer,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)


def main():
    model_dir, image, question, n, adapter_out = sys.argv[1:6]
    n = int(n)
    tok = AutoTokenizer.from_pretrained(model_dir)
    proc = PaliGemmaProcessor(image_processor=SiglipImageProcessor.from_pretrained(model_dir),
                              tokenizer=tok)
    inputs = proc(text="<image>" + question, images=Image.open(image).convert("RGB"),
                  return_tensors="pt")
    prompt = inputs["input_ids"].shape[1]

    def answer(model):
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return tok.decode(out[0, prompt:], skip_special_tokens=True)

    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    base = answer(model)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=r".*(language_model.*\.(q_proj|v_proj)"
                                       r"|vision_tower.*\.out_proj|multi_modal_projector\.linear)")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(3.0)
    peft_model.save_pretrained(adapter_out)
    adapted = answer(peft_model.merge_and_unload().eval())
    print(json.dumps({"prompt_tokens": prompt, "base": base, "adapter": adapted}))


if __name__ == "__main__":
    main()
