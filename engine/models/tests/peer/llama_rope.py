"""A tiny random Llama saved by the current transformers (its config in the layout it writes:
transformers 5 puts RoPE's base in `rope_parameters`), and its logits for fixed ids.

usage: llama_rope.py OUT_DIR ROPE_THETA [ROPE_SCALING_JSON]
    -> OUT_DIR/{config.json,model.safetensors,logits.json}
logits.json also holds the logits the same weights give with plain RoPE of base 10000, so the
caller can check that the base (or the scaling) matters for these ids.
"""
import json
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out, theta = sys.argv[1], float(sys.argv[2])
scaling = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
torch.manual_seed(0)
kw = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
          num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
          max_position_embeddings=256)
model = LlamaForCausalLM(LlamaConfig(rope_theta=theta, rope_scaling=scaling, **kw)).eval()
model.save_pretrained(out)
ids = torch.arange(3, 67).remainder(96).unsqueeze(0)
with torch.no_grad():
    logits = model(ids).logits[0]
    other = LlamaForCausalLM(LlamaConfig(rope_theta=10000.0, **kw)).eval()
    other.load_state_dict(model.state_dict())
    at_10000 = other(ids).logits[0]
json.dump({"ids": ids[0].tolist(), "logits": logits.tolist(), "logits_at_10000": at_10000.tolist()},
          open(f"{out}/logits.json", "w"))
