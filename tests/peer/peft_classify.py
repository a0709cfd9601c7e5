"""The real peer for an ardpipe run's export: Hugging Face PEFT loads the adapter folder onto the
same base encoder, classifies the same texts, and prints its logits next to ardpipe's.

Usage: python peft_classify.py BASE_MODEL_DIR ADAPTER_DIR ARDPIPE_CLASSIFY.json
Prints one JSON object: {"max_abs_diff": ..., "lora_effect": ..., "rows": n}
  max_abs_diff  max |logits_peft - logits_ardpipe| over all texts and classes
  lora_effect   max |logits_peft - logits_peft with the LoRA deltas switched off|: how much of
                the output the low-rank part decides (the comparison means little if it is ~0)
"""
import json
import sys

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from transformers import AutoTokenizer, BertForSequenceClassification


def main():
    base_dir, adapter_dir, ardpipe_json = sys.argv[1:4]
    rows = json.load(open(ardpipe_json))
    texts = [r["text"] for r in rows]
    ours = torch.tensor([r["logits"] for r in rows], dtype=torch.float32)
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = BertForSequenceClassification.from_pretrained(base_dir, num_labels=ours.shape[1])
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        peft_logits = model(**enc).logits
        for m in model.modules():
            if isinstance(m, LoraLayer):
                for k in m.scaling:
                    m.scaling[k] = 0.0
        no_lora = model(**enc).logits
    print(json.dumps({
        "max_abs_diff": (peft_logits - ours).abs().max().item(),
        "lora_effect": (peft_logits - no_lora).abs().max().item(),
        "rows": len(texts),
    }))


if __name__ == "__main__":
    main()
