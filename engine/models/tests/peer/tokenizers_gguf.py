"""Tiny GGUF tokenizers written by the `gguf` package, and what transformers makes of them.

Usage: tokenizers_gguf.py OUT_DIR [REAL_GGUF ...]

Writes SentencePiece (`tokenizer.ggml.model = llama`: Llama and Gemma 3 flavours, scores, byte
tokens <0x00>..<0xFF>, control, user-defined and unused tokens) and byte-level BPE (`gpt2`, one
file per `tokenizer.ggml.pre`) vocabularies trained here with `tokenizers`, then loads each with
`AutoTokenizer.from_pretrained(OUT_DIR, gguf_file=...)` and prints JSON:
{file: {"vocab_size", "texts", "ids" (with special tokens), "decoded" (skipping special tokens),
"decoded_all"}}, the same for each REAL_GGUF (keyed by its path). Also writes files ardpipe
must refuse (listed under "refused").
"""

import json
import os
import random
import sys

import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer

CORPUS = [
    "The cat sat on the mat.",
    "the quick brown fox jumps over the lazy dog",
    "Hello world, hello there!",
    "In 2024 there were 12345 cats and 678 dogs.",
    "def main():\n    return 42\n",
    "ça va? très bien, merci",
    "They're here; we'll see what's done.",
    "   indented    text   with  spaces  ",
    "日本語のテキスト",
    "I'VE SEEN IT",
] * 20

TEXTS = [
    "The cat sat on the mat.",
    " the  cat  ",
    "Hello wörld! 😀 🦀",
    "line1\nline2\n\n end",
    "12 345 6789 1234567",
    "<|im_start|>user\nhi<|im_end|>",
    "<s>The</s> <bos>x<eos> <unk>",
    "   ",
    "",
    "tab\there\r\n",
    "ça va très bien",
    "日本語 テキスト",
    "<start_of_turn>user\nhello<end_of_turn>\n",
    "a<|user|>b <mask> c<think>d",
    "I'VE seen it, they're HERE",
    "x  \n  y",
]


def arch_meta(w, n):
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(n)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def spm_pieces():
    t = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=260, special_tokens=["<unk>"], show_progress=False))
    vocab = t.get_vocab()
    return [k for k, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if k != "<unk>"]


def write_spm(path, arch, head, tail, gemma):
    """Specials first, the 256 byte tokens, the trained pieces (scored by rank), then `tail`."""
    toks, types, scores = [], [], []
    for t, ty in head:
        toks.append(t), types.append(ty), scores.append(0.0)
    for b in range(256):
        toks.append(f"<0x{b:02X}>"), types.append(6), scores.append(0.0)
    pieces = spm_pieces() + ["\u2581\u2581", "\u2581\u2581\u2581\u2581"]
    for i, p in enumerate(pieces):
        if gemma and set(p) == {"\u2581"}:
            p = " " * len(p)  # Gemma files store runs of spaces as spaces
        toks.append(p), types.append(1), scores.append(-float(i))
    if gemma:  # Gemma's scores do not follow its merge order
        part = scores[len(head) + 256 :]
        random.Random(0).shuffle(part)
        scores[len(head) + 256 :] = part
    for t, ty in tail:
        toks.append(t), types.append(ty), scores.append(0.0)
    w = gguf.GGUFWriter(path, arch)
    arch_meta(w, len(toks))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    return w


def write_bpe(path, pre, arch, vocab, merges, add_bos):
    toks = list(vocab)
    types = [1] * len(toks)
    for t, ty in [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<think>", 4), ("<|begin_of_text|>", 3)]:
        toks.append(t), types.append(ty)
    w = gguf.GGUFWriter(path, arch)
    arch_meta(w, len(toks))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(len(toks) - 1)
    w.add_eos_token_id(len(toks) - 5)
    w.add_add_bos_token(add_bos)
    return w


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    files = []

    llama_head = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
    llama_tail = [("<|im_start|>", 3), ("<|im_end|>", 3), ("<|user|>", 4), ("<unused0>", 5)]
    w = write_spm(f"{out}/spm_llama.gguf", "llama", llama_head, llama_tail, False)
    w.add_bos_token_id(1), w.add_eos_token_id(2), w.add_unk_token_id(0)
    w.add_add_bos_token(True), w.add_add_space_prefix(True)
    finish(w)
    files.append("spm_llama.gguf")
    # No add_bos_token key (BOS by default), EOS added, no add_space_prefix key.
    w = write_spm(f"{out}/spm_llama_eos.gguf", "llama", llama_head, llama_tail, False)
    w.add_bos_token_id(1), w.add_eos_token_id(2), w.add_unk_token_id(0), w.add_add_eos_token(True)
    finish(w)
    files.append("spm_llama_eos.gguf")

    gemma_head = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<mask>", 4)]
    gemma_tail = [("<start_of_turn>", 3), ("<end_of_turn>", 3), ("<unused0>", 5), ("\n\n", 1)]
    w = write_spm(f"{out}/spm_gemma3.gguf", "gemma3", gemma_head, gemma_tail, True)
    w.add_bos_token_id(2), w.add_eos_token_id(1), w.add_unk_token_id(3), w.add_pad_token_id(0)
    w.add_add_bos_token(True), w.add_add_space_prefix(False)
    finish(w)
    files.append("spm_gemma3.gguf")
    # `<mask>` as a normal token: GemmaTokenizer still makes it special.
    head = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<mask>", 1)]
    w = write_spm(f"{out}/spm_gemma_mask.gguf", "gemma2", head, gemma_tail, True)
    w.add_bos_token_id(2), w.add_eos_token_id(1), w.add_unk_token_id(3)
    w.add_add_bos_token(False), w.add_add_eos_token(True)
    finish(w)
    files.append("spm_gemma_mask.gguf")

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    j = json.loads(t.to_str())
    vocab = [k for k, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])]
    merges = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    for pre, arch in [("gpt2", "llama"), ("llama-bpe", "llama"), ("qwen2", "qwen2"), ("tekken", "llama"),
                      ("gpt-4o", "llama"), ("smollm", "llama")]:
        name = f"bpe_{pre}.gguf"
        finish(write_bpe(f"{out}/{name}", pre, arch, vocab, merges, pre == "llama-bpe"))
        files.append(name)

    result = {}
    paths = [(out, name) for name in files] + [os.path.split(p) for p in sys.argv[2:]]
    for folder, name in paths:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        ids = [tok(t)["input_ids"] for t in TEXTS]
        result[name if folder == out else os.path.join(folder, name)] = {
            "vocab_size": len(tok),
            "texts": TEXTS,
            "ids": ids,
            "decoded": [tok.decode(i, skip_special_tokens=True) for i in ids],
            "decoded_all": [tok.decode(i, skip_special_tokens=False) for i in ids],
        }

    # Files ardpipe refuses, each with the words its error must name.
    refused = {}
    finish(write_bpe(f"{out}/bpe_deepseek.gguf", "deepseek-llm", "llama", vocab, merges, False))
    refused["bpe_deepseek.gguf"] = ["deepseek-llm", "llama-bpe", "qwen2"]
    w = write_spm(f"{out}/spm_no_prefix.gguf", "llama", llama_head, llama_tail, False)
    w.add_bos_token_id(1), w.add_add_space_prefix(False)
    finish(w)
    refused["spm_no_prefix.gguf"] = ["add_space_prefix"]
    w = write_spm(f"{out}/spm_phi3.gguf", "phi3", llama_head, llama_tail, False)
    w.add_bos_token_id(1)
    finish(w)
    refused["spm_phi3.gguf"] = ["phi3", "gemma3"]
    w = gguf.GGUFWriter(f"{out}/rwkv.gguf", "llama")
    arch_meta(w, 2)
    w.add_tokenizer_model("rwkv")
    w.add_token_list(["a", "b"])
    finish(w)
    refused["rwkv.gguf"] = ["rwkv", "gpt2", "llama"]
    result["refused"] = refused
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
