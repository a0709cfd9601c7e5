"""Tiny causal LMs of every decoder family beyond Llama, with a real tokenizer, for training
runs through the CLI (tests/cli/families.rs), and the PEFT check of what those runs export.

usage:
  causal_families.py make OUT_ROOT
      -> OUT_ROOT/<family>/ (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)
         from the family configs of engine/models/tests/peer/decoders.py (every feature on),
         with the byte-level BPE tokenizer of engine/models/tests/peer/seq_cls.py (BOS first)
  causal_families.py check BASE ADAPTER OURS [BASE ADAPTER OURS ...]
      -> one JSON line per triple: PEFT (`PeftModel.from_pretrained` on the base) logits for
         OURS' `ids` against OURS' `logits` (ardpipe's with the adapter), and the adapter's effect
"""
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../engine/models/tests/peer"))
from decoders import cases  # noqa: E402
from seq_cls import tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

FAMILIES = ["qwen2", "mistral", "qwen3", "gemma", "gemma2", "gemma3"]


def make(root):
    tok = tokenizer("decoder")
    for seed, name in enumerate(FAMILIES):
        config = copy.deepcopy(cases[name])
        config.vocab_size = len(tok)
        config.bos_token_id, config.pad_token_id, config.eos_token_id = (
            tok.bos_token_id, tok.pad_token_id, tok.eos_token_id)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).eval()
        out = os.path.join(root, name)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    print("ok")


def check(triples):
    from peft import PeftModel
    from safetensors.torch import load_file

    for base_dir, adapter_dir, ours_path in triples:
        ours = load_file(ours_path)
        ids = ours["ids"].unsqueeze(0)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        with torch.no_grad():
            plain = base(ids).logits[0]
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
        with torch.no_grad():
            logits = model(ids).logits[0]
        print(json.dumps({
            "base": base_dir,
            "max_abs_diff": (logits - ours["logits"]).abs().max().item(),
            "effect": (logits - plain).abs().max().item(),
        }))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        args = sys.argv[2:]
        check([args[i:i + 3] for i in range(0, len(args), 3)])
