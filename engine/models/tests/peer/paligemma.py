"""A tiny random PaliGemma-2 (SigLIP vision tower, linear projector, Gemma 2 decoder with
attention and final soft-capping and a sliding window shorter than the sequence) saved by the
current transformers, with transformers' logits and loss on real easy-VQA images fed through
its own SiglipImageProcessor, as the reference for ardpipe's PaliGemma.

usage: paligemma.py OUT IMAGE IMAGE -> OUT/<case>/{config.json,model.safetensors,reference.json}
cases: `v5` (as transformers 5 saves it: `language_model.model.*`,
`vision_tower.*`, `multi_modal_projector.*`, `image_token_index`), `v4` (the same weights under transformers 4's names and
config keys: `vision_tower.vision_model.*`, no layer_types, rope_theta), `outside` (an image token id past the vocabulary, as a decoder
composed without a vocabulary entry for it uses).
reference.json: ids [2, T] (row 1 right-padded), mask, token_type_ids (0 = image and prefix,
1 = suffix), labels (-100 off the suffix), pixel_values [2, 3, S, S], logits [2, T, V], loss,
image_tokens, the largest logit change when the prefix is made causal (so the check bites), the
parameter count, and (v5 only) `generation`: transformers' greedy continuation (GEN_TOKENS new
tokens, no EOS stop, KV cache) of row 0's prompt part with its image: {prompt, tokens}.
"""
import json
import os
import sys

import torch
from PIL import Image
from transformers import (
    Gemma2Config,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    SiglipImageProcessor,
    SiglipVisionConfig,
)
from safetensors.torch import load_file, save_file

V = 128
S, P = 56, 14  # image side, patch: 16 image tokens
N_IMG = (S // P) ** 2
GEN_TOKENS = 12


def config(image_token_id):
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, image_size=S, patch_size=P,
                                layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
                                vision_use_head=False)
    text = Gemma2Config(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                        query_pre_attn_scalar=24, sliding_window=6, attn_logit_softcapping=2.0,
                        final_logit_softcapping=3.0, initializer_range=0.15, rms_norm_eps=1e-6,
                        max_position_embeddings=128, pad_token_id=0, bos_token_id=2,
                        eos_token_id=1)
    return PaliGemmaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                           image_token_id=image_token_id, projection_dim=64, hidden_size=64)


def batch(image_token_id, images):
    g = torch.Generator().manual_seed(3)
    # Row 0: 6 prefix tokens, 5 suffix; row 1: 9 prefix, 4 suffix, 2 padding.
    rows, types = [], []
    for prefix, suffix, pad in [(6, 5, 2), (9, 4, 0)]:
        text = torch.randint(3, V - 1, (prefix + suffix,), generator=g).tolist()
        rows.append([image_token_id] * N_IMG + [2] + text + [1] + [0] * pad)
        types.append([0] * (N_IMG + 1 + prefix) + [1] * (suffix + 1) + [1] * pad)
    ids = torch.tensor(rows)
    tt = torch.tensor(types)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    labels = ids.masked_fill(tt == 0, -100).masked_fill(mask == 0, -100)
    processor = SiglipImageProcessor(size={"height": S, "width": S}, resample=3,
                                     image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pixels = processor([Image.open(p).convert("RGB") for p in images],
                       return_tensors="pt")["pixel_values"]
    return ids, mask, tt, labels, pixels


def forward(model, ids, mask, tt, labels, pixels):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, pixel_values=pixels,
                    labels=labels)
    return out.logits, out.loss


def greedy(model, ids, tt, pixels):
    """transformers' greedy generation from row 0's prompt (image tokens, BOS and the prefix
    tokens: every token of type 0) with its image, GEN_TOKENS new tokens, no stop at EOS, with
    the logits of every step. The prompt's token_type_ids (all 0, as PaliGemmaProcessor returns
    them) make it bidirectional; `prefix_effect` is how far the logits move without them (a
    causal prompt), so a causal prefill is caught."""
    n = int((tt[0] == 0).sum())
    prompt = ids[:1, :n]

    def run(types):
        with torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                  token_type_ids=types, pixel_values=pixels[:1],
                                  max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS,
                                  do_sample=False, eos_token_id=None, pad_token_id=0,
                                  use_cache=True, output_logits=True,
                                  return_dict_in_generate=True)

    out = run(torch.zeros_like(prompt))
    new = out.sequences[0, n:].tolist()
    assert len(new) == GEN_TOKENS, new
    logits = torch.stack([l[0] for l in out.logits])
    causal = torch.stack([l[0] for l in run(None).logits])
    return {"prompt": prompt[0].tolist(), "tokens": new, "logits": logits.tolist(),
            "prefix_effect": (causal[0] - logits[0]).abs().amax().item()}


def main():
    root, images = sys.argv[1], sys.argv[2:4]
    for case, image_token_id in [("v5", V - 1), ("outside", V)]:
        torch.manual_seed(0)
        model = PaliGemmaForConditionalGeneration(config(image_token_id)).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or name.endswith(".bias"):
                    p.add_(torch.randn(p.shape) * 0.3)
                elif "position_embedding" in name or "patch_embedding" in name:
                    p.add_(torch.randn(p.shape) * 0.1)
        out = os.path.join(root, case)
        model.save_pretrained(out)
        model = PaliGemmaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
        ids, mask, tt, labels, pixels = batch(image_token_id, images)
        logits, loss = forward(model, ids, mask, tt, labels, pixels)
        # The same inputs with the whole row causal (every token a suffix token): how much the
        # bidirectional prefix moves the logits, so a causal-only implementation is caught.
        causal, _ = forward(model, ids, mask, torch.ones_like(tt), labels, pixels)
        ref = {"ids": ids.tolist(), "mask": mask.tolist(), "token_type_ids": tt.tolist(),
               "labels": labels.tolist(), "pixel_values": pixels.tolist(), "images": images,
               "logits": logits.tolist(), "loss": loss.item(), "image_tokens": N_IMG,
               "prefix_effect": (causal - logits).abs().amax().item(),
               "parameters": sum(p.numel() for p in model.parameters())}
        if case == "v5":
            ref["generation"] = greedy(model, ids, tt, pixels)
        json.dump(ref, open(os.path.join(out, "reference.json"), "w"))

        if case == "v5":
            # transformers 4's names and config keys for the same weights.
            out4 = os.path.join(root, "v4")
            os.makedirs(out4, exist_ok=True)
            state = load_file(os.path.join(out, "model.safetensors"))
            # transformers 5 saves `vision_tower.*` (its SiglipVisionModel has no
            # `vision_model` level); 4 saved `vision_tower.vision_model.*`.
            renamed = {}
            for k, t in state.items():
                if k.startswith("vision_tower."):
                    k = "vision_tower.vision_model." + k[len("vision_tower."):]
                renamed[k] = t
            save_file(renamed, os.path.join(out4, "model.safetensors"), metadata={"format": "pt"})
            c = json.load(open(os.path.join(out, "config.json")))
            t = c["text_config"]
            t.pop("layer_types", None)
            t.pop("use_bidirectional_attention", None)
            t["rope_theta"] = t.pop("rope_parameters")["rope_theta"]
            json.dump(c, open(os.path.join(out4, "config.json"), "w"), indent=1)
            m4 = PaliGemmaForConditionalGeneration.from_pretrained(out4, dtype=torch.float32).eval()
            l4, _ = forward(m4, ids, mask, tt, labels, pixels)
            assert (l4 - logits).abs().amax().item() < 1e-5, "transformers read the 4 layout differently"
            ref4 = dict(ref, logits=l4.tolist())
            json.dump(ref4, open(os.path.join(out4, "reference.json"), "w"))
    print("ok")


if __name__ == "__main__":
    main()
