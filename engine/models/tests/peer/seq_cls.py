"""The peer for sequence classification: transformers builds tiny random
RobertaForSequenceClassification, XLMRobertaForSequenceClassification and decoder
*ForSequenceClassification models (Llama; Qwen2 with a sliding window; Gemma 2, whose final
logit soft-capping belongs to the LM head and must not touch `score`), saves each with save_pretrained next to a real
tokenizer.json (a byte-level BPE trained here with the `tokenizers` package), and computes each
model's logits on a right-padded batch that the tokenizer made.

Usage: python seq_cls.py OUT_DIR
Writes OUT_DIR/{roberta,xlm_roberta,llama,qwen2,gemma2}/ (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) and prints one JSON object:
  {name: {"input_ids": [[...]], "attention_mask": [[...]], "logits": [[...]], "texts": [...]},
   "embeddings": {encoder name: [[...]]}}  (masked mean pooling, L2-normalised)
"""
import json
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Gemma2Config,
    Gemma2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

CORPUS = [
    "New study links sleep to heart health",
    "Ebola outbreak spreads in West Africa",
    "Five tips to keep your kids active this summer",
    "FDA approves a new drug for migraines",
    "Doctors warn about the flu season this winter",
    "A daily walk lowers blood pressure, researchers say",
    "Hospital waiting times rise again",
    "Vaccines save millions of lives every year",
]
TEXTS = [
    "New study links sleep to heart health",
    "Flu",
    "Doctors approve a walk for kids every winter",
]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4: bos, pad, eos, unk, mask


def tokenizer(kind):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    if kind == "encoder":
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        padding_side="right",
    )


def encoder(cls, config_cls, seed):
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=320,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=3,
        initializer_range=0.2,
    )
    return cls(config)


DECODER = dict(
    vocab_size=320,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    num_labels=3,
    initializer_range=0.2,
    tie_word_embeddings=False,
)


def decoder(cls, config, seed):
    torch.manual_seed(seed)
    return cls(config)


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    result = {}
    for name, kind, model in [
        ("roberta", "encoder", encoder(RobertaForSequenceClassification, RobertaConfig, 1)),
        (
            "xlm_roberta",
            "encoder",
            encoder(XLMRobertaForSequenceClassification, XLMRobertaConfig, 2),
        ),
        ("llama", "decoder", decoder(LlamaForSequenceClassification, LlamaConfig(**DECODER), 3)),
        (
            "qwen2",
            "decoder",
            decoder(
                Qwen2ForSequenceClassification,
                Qwen2Config(**DECODER, use_sliding_window=True, sliding_window=5, max_window_layers=1),
                4,
            ),
        ),
        (
            "gemma2",
            "decoder",
            decoder(
                Gemma2ForSequenceClassification,
                Gemma2Config(
                    **DECODER,
                    head_dim=16,
                    query_pre_attn_scalar=24,
                    sliding_window=5,
                    attn_logit_softcapping=2.0,
                    final_logit_softcapping=0.5,
                ),
                5,
            ),
        ),
    ]:
        d = os.path.join(out, name)
        model.eval()
        model.save_pretrained(d)
        tok = tokenizer(kind)
        tok.save_pretrained(d)
        enc = tok(TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        if kind == "encoder":
            # The bare encoder's masked mean of the last hidden states, L2-normalised (what
            # `ardpipe embed` computes).
            with torch.no_grad():
                h = model.roberta(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
                ).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            mean = (h * m).sum(1) / m.sum(1)
            result.setdefault("embeddings", {})[name] = torch.nn.functional.normalize(
                mean, dim=-1
            ).tolist()
        result[name] = {
            "texts": TEXTS,
            "input_ids": enc["input_ids"].tolist(),
            "attention_mask": enc["attention_mask"].tolist(),
            "logits": logits.tolist(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
