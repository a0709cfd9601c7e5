"""The real peer for ardpipe's sequence-classification exports on any architecture: Hugging Face
PEFT loads each adapter folder onto its base model through AutoModelForSequenceClassification
(RoBERTa, XLM-RoBERTa, Llama, ...), classifies the same texts with the base's own tokenizer
(padded batch), and reports its logits against ardpipe's.

Usage: python peft_seq_cls.py NAME BASE_DIR ADAPTER_DIR ARDPIPE_CLASSIFY.json [NAME BASE ...]
Prints one JSON object: {NAME: {"max_abs_diff": ..., "lora_effect": ..., "head_effect": ..., "rows": n}}
  max_abs_diff  max |logits_peft - logits_ardpipe| over all texts and classes
  lora_effect   max |logits_peft - logits_peft with the LoRA deltas switched off|
  head_effect   max |logits_peft - logits of the bare base model (no adapter, saved head)|:
                the exported head and adapters change the output (else the check proves little)
"""
import json
import sys

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def one(base_dir, adapter_dir, ardpipe_json):
    rows = json.load(open(ardpipe_json))
    texts = [r["text"] for r in rows]
    ours = torch.tensor([r["logits"] for r in rows], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_dir)
    enc = tok(texts, padding=True, return_tensors="pt")
    load = lambda: AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
        base_dir, num_labels=ours.shape[1]
    ).eval()
    with torch.no_grad():
        bare = load()(**enc).logits
    model = PeftModel.from_pretrained(load(), adapter_dir).eval()
    with torch.no_grad():
        peft_logits = model(**enc).logits
        for m in model.modules():
            if isinstance(m, LoraLayer):
                for k in m.scaling:
                    m.scaling[k] = 0.0
        no_lora = model(**enc).logits
    return {
        "max_abs_diff": (peft_logits - ours).abs().max().item(),
        "lora_effect": (peft_logits - no_lora).abs().max().item(),
        "head_effect": (peft_logits - bare).abs().max().item(),
        "rows": len(texts),
    }


def main():
    torch.set_num_threads(1)
    args = sys.argv[1:]
    out = {}
    for i in range(0, len(args), 4):
        name, base, adapter, ours = args[i : i + 4]
        out[name] = one(base, adapter, ours)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
