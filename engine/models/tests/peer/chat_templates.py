"""transformers' `apply_chat_template` on the chat templates ardpipe renders with minijinja.

Usage: chat_templates.py FIXTURES_JSON SMOLLM2_GGUF

Renders every conversation of CONVERSATIONS with each template of FIXTURES_JSON (real templates,
each naming its source) through a tokenizer's `apply_chat_template(tokenize=False)`, and with
the chat template of the real SmolLM2 GGUF through the tokenizer transformers builds from that
file. Prints JSON: {name: {"template": str, "renders": [{"messages", "add_generation_prompt",
"text" | "error"}]}}.
"""

import json
import sys

from tokenizers import Tokenizer, models
from transformers import AutoTokenizer, PreTrainedTokenizerFast

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "  4, of course.  "},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke\nplease"},
    ],
    [
        {"role": "user", "content": "Ça va? 😀 日本語 <b>&</b> \"quoted\""},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nTrès bien!"},
        {"role": "user", "content": "  spaced  "},
    ],
    [{"role": "assistant", "content": "I start"}],
]


def renders(tok, template):
    out = []
    for messages in CONVERSATIONS:
        for gen in (True, False):
            r = {"messages": messages, "add_generation_prompt": gen}
            try:
                r["text"] = tok.apply_chat_template(
                    messages, chat_template=template, tokenize=False, add_generation_prompt=gen
                )
            except Exception as e:  # the template's own raise_exception, reported to compare
                r["error"] = f"{type(e).__name__}: {e}"
            out.append(r)
    return out


def main():
    fixtures, smollm = sys.argv[1], sys.argv[2]
    result = {}
    for f in json.load(open(fixtures)):
        specials = {k: f[k] for k in ("bos_token", "eos_token") if f.get(k) is not None}
        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), **specials)
        result[f["name"]] = {"template": f["template"], "renders": renders(tok, f["template"])}
    import os

    tok = AutoTokenizer.from_pretrained(os.path.dirname(smollm), gguf_file=os.path.basename(smollm))
    result["smollm2_gguf"] = {"template": tok.chat_template, "renders": renders(tok, tok.chat_template)}
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
