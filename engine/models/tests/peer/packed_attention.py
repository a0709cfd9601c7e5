"""Tiny random decoders for the packed-attention test (engine/models/tests/packed_attention.rs),
saved by the current transformers from each family's own config class: Llama with llama3 RoPE
scaling, Qwen2 with a sliding window on its upper layers, Gemma 2 (a sliding window shorter
than the examples, attention and final logit soft-capping) and Gemma 3 (local and global RoPE,
sliding window). With them, a few examples of different lengths and transformers' logits for
each example run alone (batch of one, no padding): what a packed row must reproduce.

usage: packed_attention.py OUT_ROOT -> OUT_ROOT/<case>/{config.json,model.safetensors,reference.json}
reference.json: examples (lists of token ids), alone (per example its logits [len, V]), and,
for models with sliding windows, window_effect: the largest change of those logits when the
window is lifted (so the check is known to bite within an example).
"""
import copy
import json
import os
import sys

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    LlamaConfig,
    Qwen2Config,
)

V = 96
LENGTHS = [7, 9, 5, 6]
common = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
              max_position_embeddings=64, rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1,
              eos_token_id=2)

cases = {
    "llama": LlamaConfig(**common, tie_word_embeddings=False, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
    "qwen2": Qwen2Config(**common, use_sliding_window=True, sliding_window=3, max_window_layers=1,
                         tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000.0}),
    "gemma2": Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=24, sliding_window=3,
                           attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                           tie_word_embeddings=False),
    "gemma3": Gemma3TextConfig(**common, head_dim=16, query_pre_attn_scalar=20, sliding_window=3,
                               sliding_window_pattern=2, final_logit_softcapping=5.0,
                               rope_parameters={
                                   "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50000.0},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 300.0},
                               }),
}

root = sys.argv[1]
g = torch.Generator().manual_seed(3)
examples = [torch.randint(3, V, (n,), generator=g) for n in LENGTHS]


def alone(model):
    with torch.no_grad():
        return [model(input_ids=e.unsqueeze(0)).logits[0] for e in examples]


for name, config in cases.items():
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    # Norm weights start at 1 (or 0 for Gemma's 1 + w) and biases at 0: perturb them.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or pname.endswith(".bias"):
                p.add_(torch.randn(p.shape) * 0.3)
    out = os.path.join(root, name)
    model.save_pretrained(out)
    # Reload what was saved, so the reference is the folder's model.
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    logits = alone(model)
    ref = {"examples": [e.tolist() for e in examples], "alone": [l.tolist() for l in logits]}
    if getattr(model.config, "sliding_window", None) is not None:
        wide = copy.deepcopy(model)
        wide.config.sliding_window = 10_000
        ref["window_effect"] = max((a - b).abs().amax().item() for a, b in zip(alone(wide), logits))
    json.dump(ref, open(os.path.join(out, "reference.json"), "w"))
