"""The real peer for ardpipe's PEFT export: load each adapter folder with Hugging Face PEFT onto a
small BERT classifier and compare what PEFT reconstructs with what ardpipe meant.

Usage: python peft_peer.py ADAPTER_DIR EXPECTED.safetensors [ADAPTER_DIR EXPECTED ...]
Prints one JSON object per adapter: {module: {"r": r, "delta": max|ΔW_peft − ΔW_expected|, ...}}.
       python peft_peer.py --causal-lm BASE_DIR ADAPTER_DIR OURS.safetensors MERGED_DIR [...]
Loads each adapter with PEFT onto AutoModelForCausalLM(BASE_DIR), and the merged folder alone,
and prints one JSON object per adapter: {"max_abs_diff": max|logits_peft − logits_ardpipe|,
"merged_max_abs_diff": the same for the merged folder, "adapted": modules with LoRA}, where OURS
holds ardpipe's `ids` [t] and `logits` [t, vocab].
"""
import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification


def base_model():
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=12,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
    )
    return BertForSequenceClassification(cfg)


def check(adapter_dir, expected_path):
    expected = load_file(expected_path)
    model = PeftModel.from_pretrained(base_model(), adapter_dir)
    out = {}
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or "default" not in lora_a:
            continue
        key = name.removeprefix("base_model.model.")
        with torch.no_grad():
            delta = module.get_delta_weight("default")
        entry = {"r": int(module.r["default"]), "delta": (delta - expected[key]).abs().max().item()}
        mag = getattr(module, "lora_magnitude_vector", None)
        if mag is not None and "default" in mag:
            entry["magnitude"] = (mag["default"].weight - expected[key + ".magnitude"]).abs().max().item()
        out[key] = entry
    head = model.base_model.model.classifier.modules_to_save["default"]
    out["classifier"] = {
        "weight": (head.weight - expected["classifier.weight"]).abs().max().item(),
        "bias": (head.bias - expected["classifier.bias"]).abs().max().item(),
    }
    return out


def causal_lm(base_dir, adapter_dir, ours_path, merged_dir):
    """PEFT on AutoModelForCausalLM, and the merged folder alone: the logits for ardpipe's ids
    against ardpipe's logits."""
    from transformers import AutoModelForCausalLM

    ours = load_file(ours_path)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    adapted = sum(1 for m in model.modules()
                  if getattr(m, "lora_A", None) is not None and "default" in m.lora_A)
    with torch.no_grad():
        logits = model(ours["ids"].unsqueeze(0)).logits[0].float()
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
        merged_logits = merged(ours["ids"].unsqueeze(0)).logits[0].float()
    return {"max_abs_diff": (logits - ours["logits"]).abs().max().item(), "adapted": adapted,
            "merged_max_abs_diff": (merged_logits - ours["logits"]).abs().max().item()}


args = sys.argv[1:]
if args and args[0] == "--causal-lm":
    args = args[1:]
    for i in range(0, len(args), 4):
        print(json.dumps(causal_lm(*args[i:i + 4])))
else:
    for i in range(0, len(args), 2):
        print(json.dumps(check(args[i], args[i + 1])))
