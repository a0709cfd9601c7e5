"""Tiny random decoders of every family ardpipe reads from GGUF, made by the current
transformers, converted to GGUF with the `gguf` package's GGUFWriter the way llama.cpp's
converter (convert_hf_to_gguf.py) does, for engine/models/tests/peer_gguf.rs.

usage: gguf_families.py OUT_DIR
    -> OUT_DIR/<case>/{config.json, model.safetensors}   the model transformers saved
       OUT_DIR/<case>.gguf                                its conversion
       OUT_DIR/expected.json  {case: {arch, ids, logits, transformers_gguf_max_diff | null,
                                       transformers_gguf_note}}

The conversion follows the converter: tensor names from the gguf package's own name map
(gguf.get_tensor_name_map), Q/K rows interleaved for llama files (LlamaModel.permute), every
`*norm.weight` of the Gemma families stored as w + 1, lm_head left out when tied (and always for
Gemma 1/2), Llama 3 RoPE scaling written as the `rope_freqs` divisors, and the metadata keys of
gguf.GGUFWriter (`<arch>.attention.sliding_window`, `gemma2.attn_logit_softcapping`, ...).
Where transformers can load the GGUF itself (AutoModelForCausalLM.from_pretrained(dir,
gguf_file=...)) its logits are compared with the saved model's, so the conversion is checked by
transformers, not only by ardpipe.
"""

import json
import math
import sys
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

V = 128
WINDOW = 4
BASE = dict(
    vocab_size=V,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    initializer_range=0.2,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
# Gemma 2/3 GGUFs keep no query_pre_attn_scalar: llama.cpp uses head_dim (transformers' default
# 256 when loading a GGUF), so these tiny Gemmas have 256-wide heads.
GEMMA_HEADS = dict(head_dim=256, query_pre_attn_scalar=256)

CASES = {
    "llama": ("llama", LlamaConfig(**BASE, rope_theta=10000.0, tie_word_embeddings=False)),
    "llama3_rope": (
        "llama",
        LlamaConfig(
            **{**BASE, "max_position_embeddings": 131072},
            tie_word_embeddings=False,
            rope_scaling={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
        ),
    ),
    "mistral": ("llama", MistralConfig(**BASE, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False)),
    "qwen2": ("qwen2", Qwen2Config(**BASE, rope_theta=1e6, tie_word_embeddings=True)),
    # transformers' GGUF loader takes no head size from a qwen3 file (its default 128), as
    # real Qwen3 models have: 128-wide heads here too, unlike hidden / heads = 16.
    "qwen3": ("qwen3", Qwen3Config(**BASE, head_dim=128, rope_theta=1e6, tie_word_embeddings=False)),
    "gemma": ("gemma", GemmaConfig(**BASE, head_dim=24, hidden_activation="gelu_pytorch_tanh")),
    "gemma2": (
        "gemma2",
        Gemma2Config(
            **BASE,
            **GEMMA_HEADS,
            sliding_window=WINDOW,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
        ),
    ),
    "gemma3": (
        "gemma3",
        Gemma3TextConfig(
            **{**BASE, "num_hidden_layers": 6},
            **GEMMA_HEADS,
            sliding_window=WINDOW,
        ),
    ),
    # Gemma 3 4B and larger: linear RoPE scaling on the full-attention layers only.
    "gemma3_linear": (
        "gemma3",
        Gemma3TextConfig(
            **{**BASE, "num_hidden_layers": 6},
            **GEMMA_HEADS,
            sliding_window=WINDOW,
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            },
        ),
    ),
}

# transformers' GGUF loader reads these architectures (not Gemma 1) and ignores rope_freqs.
TRANSFORMERS_READS = {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"}


def permute(w, n_head, n_head_kv):
    # llama.cpp's LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg):
    # llama.cpp's LlamaModel.generate_extra_tensors
    rp = cfg.rope_parameters
    base, dim = rp["rope_theta"], cfg.head_dim
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def rope_theta(cfg):
    rp = cfg.rope_parameters
    if "full_attention" in rp:
        rp = rp["full_attention"]
    return float(rp["rope_theta"])


def convert(case, arch, cfg, hf_dir, path):
    arch_enum = {a_name: a for a, a_name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny {case}")
    n = cfg.num_hidden_layers
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(n)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope_theta(cfg))
    w.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        w.add_rope_dimension_count(cfg.head_dim)
    elif getattr(cfg, "head_dim", None) is not None:  # Qwen2 has none: hidden / heads
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(cfg.sliding_window)
    full = cfg.rope_parameters.get("full_attention", cfg.rope_parameters)
    if full.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(full["factor"])
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    tmap = gguf.get_tensor_name_map(arch_enum, n)
    sd = load_file(str(hf_dir / "model.safetensors"))
    for name, t in sd.items():
        if name == "lm_head.weight" and arch in ("gemma", "gemma2"):
            continue  # the converter drops it: these heads are tied
        data = t.float()
        if arch == "llama" and name.endswith("q_proj.weight"):
            data = permute(data, cfg.num_attention_heads, cfg.num_attention_heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            data = permute(data, cfg.num_attention_heads, cfg.num_key_value_heads)
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            data = data + 1
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        w.add_tensor(new, data.numpy())
    if case == "llama3_rope":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[1, 5, 9, 17, 33, 65, 100, 127, 3, 8, 13, 21, 34, 55, 89, 44, 7, 2, 60, 61]])
    expected = {}
    for case, (arch, cfg) in CASES.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg).float().eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    # Norm weights far from their initial value, so that a norm read as w + 1
                    # (or w instead of 1 + w) shows in the logits.
                    p.add_(torch.randn_like(p) * 0.3)
        hf_dir = out / case
        model.save_pretrained(hf_dir)
        with torch.no_grad():
            logits = model(ids).logits[0]
        path = out / f"{case}.gguf"
        convert(case, arch, cfg, hf_dir, path)
        entry = {"arch": arch, "ids": ids[0].tolist(), "logits": logits.tolist()}
        if case == "llama3_rope":
            entry["transformers_gguf_note"] = "transformers' GGUF loader ignores rope_freqs"
        elif case == "gemma3_linear":
            entry["transformers_gguf_note"] = "transformers' GGUF loader ignores gemma3.rope.scaling.*"
        elif arch not in TRANSFORMERS_READS:
            entry["transformers_gguf_note"] = f"transformers' GGUF loader has no `{arch}` architecture"
        else:
            tf = AutoModelForCausalLM.from_pretrained(out, gguf_file=path.name, dtype=torch.float32).eval()
            with torch.no_grad():
                tf_logits = tf(ids).logits[0]
            diff = (tf_logits - logits).abs().max().item()
            assert diff < 1e-4, f"{case}: transformers' own GGUF load differs from the saved model by {diff}"
            entry["transformers_gguf_max_diff"] = diff
        expected[case] = entry
    (out / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
