"""transformers' tokenisation of supervised examples, for engine/data/tests/sft.rs.

Usage: sft_chat.py CASES_JSON SMOLLM2_GGUF

Loads the tokenizer and chat template transformers builds from the real SmolLM2 GGUF and, for each
case of CASES_JSON, prints what TRL's SFTTrainer would train on:
- {"messages": [...]}: `text` = apply_chat_template(tokenize=False), `ids` =
  apply_chat_template(tokenize=True) (rendered text encoded with add_special_tokens=False), and
  for each assistant message i the token span [len(ids of messages[:i] with the generation
  prompt), len(ids of messages[:i+1])) (TRL's prompt/completion split of a conversation), with
  whether both are prefixes of `ids`;
- {"prompt", "completion"}: `ids` = tokenizer(prompt) ++ tokenizer(completion, no specials) ++
  [eos], and `start`, where the completion begins.
Prints JSON: {"eos": id, "results": [...]} in the order of the cases.
"""

import json
import os
import sys

from transformers import AutoTokenizer


def chat_ids(tok, messages, gen):
    return list(
        tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen, return_dict=False)
    )


def main():
    cases, gguf = json.load(open(sys.argv[1])), sys.argv[2]
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    results = []
    for case in cases:
        if "messages" in case:
            msgs = case["messages"]
            ids = chat_ids(tok, msgs, False)
            spans = []
            for i, m in enumerate(msgs):
                if m["role"] != "assistant":
                    continue
                before = chat_ids(tok, msgs[:i], True)
                through = chat_ids(tok, msgs[: i + 1], False)
                prefix = ids[: len(before)] == before and ids[: len(through)] == through
                spans.append({"start": len(before), "end": len(through), "prefix": prefix})
            results.append(
                {
                    "text": tok.apply_chat_template(msgs, tokenize=False),
                    "ids": ids,
                    "spans": spans,
                }
            )
        else:
            p = tok(case["prompt"])["input_ids"]
            c = tok(case["completion"], add_special_tokens=False)["input_ids"]
            results.append({"ids": p + c + [tok.eos_token_id], "start": len(p)})
    json.dump({"eos": tok.eos_token_id, "results": results}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
