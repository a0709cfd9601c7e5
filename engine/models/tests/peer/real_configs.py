"""What transformers makes of real models' config.json files (no weights): the parameter count of
the model it builds from each (on the meta device, so nothing is allocated), and the per-layer
attention kinds and RoPE it reads. For a PaliGemma folder the decoder's fields come from its
text_config, the count from PaliGemmaForConditionalGeneration (its tied LM head once), and
`vision` holds the SigLIP tower's dimensions and image tokens.

usage: real_configs.py DIR... -> one JSON object per DIR on stdout
"""
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PaliGemmaForConditionalGeneration


def decoder_fields(cfg):
    layer_types = getattr(cfg, "layer_types", None)
    sliding = getattr(cfg, "sliding_window", None)
    if getattr(cfg, "use_sliding_window", True) is False:
        sliding = None
    return {
        "model_type": cfg.model_type,
        "layer_types": layer_types,
        "sliding_window": sliding,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "rope_parameters": getattr(cfg, "rope_parameters", None),
    }


for d in sys.argv[1:]:
    cfg = AutoConfig.from_pretrained(d)
    paligemma = cfg.model_type == "paligemma"
    with torch.device("meta"):
        if paligemma:
            model = PaliGemmaForConditionalGeneration(cfg)
        else:
            model = AutoModelForCausalLM.from_config(cfg)
    # parameters() yields a tied embedding once.
    out = {"dir": d, "parameters": sum(p.numel() for p in model.parameters())}
    if paligemma:
        out.update(decoder_fields(cfg.text_config))
        # The top-level flag decides the tying (lm_head ↔ the decoder's embed_tokens).
        out["tie_word_embeddings"] = (
            model.lm_head.weight is model.model.language_model.embed_tokens.weight
        )
        v = cfg.vision_config
        out["image_token_id"] = cfg.image_token_id
        out["vision"] = {
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            # the number of patch embeddings the tower builds (its position table's rows)
            "num_image_tokens": model.model.vision_tower.embeddings.num_patches,
            "projection_in": model.model.multi_modal_projector.linear.in_features,
            "projection_out": model.model.multi_modal_projector.linear.out_features,
        }
    else:
        out.update(decoder_fields(cfg))
    print(json.dumps(out))
