"""The real peer for `ardpipe merge` and `export = [merged]`: transformers loads each merged
folder as it is (from_pretrained, no ardpipe code, no base model), tokenises with the folder's
own tokenizer and computes logits, next to ardpipe's logits for the same model with its adapter.

Usage: python merged_folder.py SPEC.json
SPEC (written by tests/cli/merge.rs), or a list of them:
  {"kind": "causal_lm", "folders": [...], "text": "...", "ours": "ours.safetensors"}
      ours.safetensors holds `ids` [t] (ardpipe's tokens of text) and `logits` [t, vocab]
  {"kind": "seq_cls", "folders": [...], "classify": "classify.json"}
      classify.json is `ardpipe classify --adapter RUN --format json` (texts and logits)
Prints one JSON object: {"folders": {folder: {"max_abs_diff", "ids_equal" | "id2label",
"dtype", "architectures"}}}.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer)


def causal_lm(spec, folder):
    ours = load_file(spec["ours"])
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(spec["text"], return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(ours["ids"].unsqueeze(0)).logits[0]
    return {
        "ids_equal": ids[0].tolist() == ours["ids"].tolist(),
        "their_ids": ids[0].tolist(),
        "max_abs_diff": (logits.float() - ours["logits"]).abs().max().item(),
        "dtype": str(model.dtype),
    }


def seq_cls(spec, folder):
    rows = json.load(open(spec["classify"]))
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    diff = 0.0
    with torch.no_grad():
        for r in rows:
            enc = tok(r["text"], return_tensors="pt")
            logits = model(**enc).logits[0].float()
            diff = max(diff, (logits - torch.tensor(r["logits"])).abs().max().item())
    return {
        "max_abs_diff": diff,
        "id2label": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "dtype": str(model.dtype),
    }


def main():
    specs = json.load(open(sys.argv[1]))
    torch.set_num_threads(2)
    out = {}
    for spec in specs if isinstance(specs, list) else [specs]:
        for folder in spec["folders"]:
            check = causal_lm if spec["kind"] == "causal_lm" else seq_cls
            entry = check(spec, folder)
            entry["architectures"] = AutoConfig.from_pretrained(folder).architectures
            out[folder] = entry
    print(json.dumps({"folders": out}))


if __name__ == "__main__":
    main()
