"""Tiny random decoders of every family ardpipe builds beyond Llama (and a Llama), saved by the current
transformers from each family's own config class with its features switched on (GQA, q/k/v
bias, q/k norm, explicit head_dim, sliding windows shorter than the test sequence, Gemma's
norms and scaled embeddings, sandwich norms, attention and final logit soft-capping, local and
global RoPE with linear scaling, tied and untied heads), with transformers' logits and greedy
generations as the reference.

usage: decoders.py OUT_ROOT -> OUT_ROOT/<case>/{config.json,model.safetensors,reference.json}
reference.json: ids [2, T] (row 1 right-padded with 0), mask [2, T], logits [2, T, V],
prompt, generated (32 greedy tokens, no end-of-sequence stop), parameters (the model's count,
a tied head once), and, for models with sliding
windows, the largest logit change when the window is lifted (so the check is known to bite).
The `<case>_v4` folders hold the same weights with the config rewritten in transformers 4's
layout (no layer_types; rope_theta, and Gemma 3's rope_local_base_freq / rope_scaling /
sliding_window_pattern, instead of rope_parameters), and logits transformers computes after
reading that layout.
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
    GemmaConfig,
    GenerationConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

V, T, REAL1 = 128, 14, 10
common = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, initializer_range=0.15,
              max_position_embeddings=128, rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1,
              eos_token_id=2)

cases = {
    # Plain Llama with biases everywhere, untied: the path the other families branch from.
    "llama": LlamaConfig(**common, attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 20000.0}),
    # q/k/v bias, sliding window on the layers from max_window_layers on, untied.
    "qwen2": Qwen2Config(**common, use_sliding_window=True, sliding_window=5, max_window_layers=2,
                         tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 5000.0}),
    # sliding window on every layer, explicit head_dim unlike hidden / heads, one KV head.
    "mistral": MistralConfig(**{**common, "num_key_value_heads": 1}, head_dim=8, sliding_window=6,
                             tie_word_embeddings=False),
    # q/k norm, explicit head_dim, bias on all four projections, tied, sliding on layers 3+.
    "qwen3": Qwen3Config(**common, head_dim=24, attention_bias=True, tie_word_embeddings=True,
                         use_sliding_window=True, sliding_window=4, max_window_layers=3),
    # GeGLU (tanh), 1 + w norms, scaled embeddings, tied, one KV head.
    "gemma": GemmaConfig(**{**common, "num_key_value_heads": 1}, head_dim=16,
                         hidden_act="gelu_pytorch_tanh", attention_bias=True),
    # sandwich norms, soft-capping that bites, query_pre_attn_scalar unlike head_dim,
    # alternating sliding window, untied.
    "gemma2": Gemma2Config(**common, head_dim=16, query_pre_attn_scalar=24, sliding_window=5,
                           attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                           tie_word_embeddings=False),
    # q/k norm, local and global RoPE (linear scaling on the global layers), every 2nd layer
    # global, final soft-capping (transformers' Gemma 3 never applies attn_logit_softcapping).
    "gemma3": Gemma3TextConfig(**common, head_dim=16, query_pre_attn_scalar=20, sliding_window=5,
                               sliding_window_pattern=2, final_logit_softcapping=5.0,
                               rope_parameters={
                                   "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50000.0},
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 300.0},
                               }),
}

# Importable (tests/peer/causal_families.py reuses `cases`); runs as a script.
if __name__ == "__main__":
    root = sys.argv[1]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    ids[1, REAL1:] = 0
    mask[1, REAL1:] = 0
    prompt = ids[0, :8].unsqueeze(0)


    def logits_of(model):
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits


    def save(name, model, config_override=None):
        out = os.path.join(root, name)
        model.save_pretrained(out)
        if config_override is not None:
            json.dump(config_override, open(os.path.join(out, "config.json"), "w"), indent=1)
        return out


    for name, config in cases.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        # Norm weights start at 1 (or 0 for Gemma's 1 + w) and biases at 0: perturb them so that
        # each one matters.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname or pname.endswith(".bias"):
                    p.add_(torch.randn(p.shape) * 0.3)
        out = save(name, model)
        saved = json.load(open(os.path.join(out, "config.json")))
        # Reload what was saved, so the reference is the folder's model.
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        logits = logits_of(model)
        # No end-of-sequence stop: 32 tokens every time.
        model.generation_config.eos_token_id = None
        gen = model.generate(prompt, generation_config=GenerationConfig(
            max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0))
        ref = {"ids": ids.tolist(), "mask": mask.tolist(), "logits": logits.tolist(),
               "prompt": prompt[0].tolist(), "generated": gen[0, prompt.shape[1]:].tolist(),
               "parameters": sum(p.numel() for p in model.parameters())}
        if getattr(model.config, "sliding_window", None) is not None:
            wide = copy.deepcopy(model)
            wide.config.sliding_window = 10_000
            ref["window_effect"] = (logits_of(wide) - logits).abs().amax().item()
        json.dump(ref, open(os.path.join(out, "reference.json"), "w"))

        # The same weights, config in transformers 4's layout (no layer_types: Qwen derives them
        # from max_window_layers, Gemma 2 slides on even layers, Gemma 3 on all but every
        # sliding_window_pattern-th; RoPE in rope_theta / rope_scaling / rope_local_base_freq),
        # read by transformers.
        if name != "gemma":
            v4 = dict(saved)
            v4.pop("layer_types", None)
            v4.pop("_sliding_window_pattern", None)
            rp = v4.pop("rope_parameters")
            if name == "gemma3":
                v4["rope_theta"] = rp["full_attention"]["rope_theta"]
                v4["rope_scaling"] = {"rope_type": "linear", "factor": rp["full_attention"]["factor"]}
                v4["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
                v4["sliding_window_pattern"] = 2
            else:
                v4["rope_theta"] = rp["rope_theta"]
            out4 = save(name + "_v4", model, v4)
            m4 = AutoModelForCausalLM.from_pretrained(out4, dtype=torch.float32).eval()
            if hasattr(model.config, "layer_types"):
                assert m4.config.layer_types == model.config.layer_types, (m4.config.layer_types, model.config.layer_types)
            l4 = logits_of(m4)
            assert (l4 - logits).abs().amax().item() < 1e-5, "transformers read its 4 layout differently"
            json.dump({"ids": ids.tolist(), "mask": mask.tolist(), "logits": l4.tolist()},
                      open(os.path.join(out4, "reference.json"), "w"))

    # Released checkpoints are bf16 and sharded: the Qwen2 weights saved so, read back by
    # transformers in f32 (the reference for a folder ardpipe must read the same way).
    out = os.path.join(root, "qwen2_bf16_sharded")
    m = AutoModelForCausalLM.from_pretrained(os.path.join(root, "qwen2"), dtype=torch.float32)
    m.to(torch.bfloat16).save_pretrained(out, max_shard_size="60KB")
    mb = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    json.dump({"ids": ids.tolist(), "mask": mask.tolist(), "logits": logits_of(mb).tolist()},
              open(os.path.join(out, "reference.json"), "w"))
    print("ok")
