"""What transformers makes of real models' config.json files (no weights): the parameter count of
the model it builds from each (on the meta device, so nothing is allocated), and the per-layer
attention kinds and RoPE it reads.

usage: real_configs.py DIR... -> one JSON object per DIR on stdout
"""
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

for d in sys.argv[1:]:
    cfg = AutoConfig.from_pretrained(d)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    # parameters() yields a tied embedding once.
    params = sum(p.numel() for p in model.parameters())
    layer_types = getattr(cfg, "layer_types", None)
    sliding = getattr(cfg, "sliding_window", None)
    if getattr(cfg, "use_sliding_window", True) is False:
        sliding = None
    print(json.dumps({
        "dir": d,
        "model_type": cfg.model_type,
        "parameters": params,
        "layer_types": layer_types,
        "sliding_window": sliding,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "rope_parameters": getattr(cfg, "rope_parameters", None),
    }))
