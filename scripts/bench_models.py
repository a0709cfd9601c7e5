#!/usr/bin/env python3
"""The model benchmark: ardpipe (Rust, libtorch through tch) side by side with Python
transformers on the same torch 2.13.0, same weights, same token ids, same thread count.

One command (after scripts/setup.sh and a release build):

    python3 scripts/bench_models.py

Each case is a forward+backward step with a gradient for every weight (full-parameter
backward: the heaviest step, and independent of any adapter implementation), in f32 or
under bf16 autocast with f32 weights:
  - SmolLM2-135M (GGUF, dequantised to f32), causal LM loss on a 4 x 128 batch of Hamlet;
  - all-MiniLM-L6-v2 + a 16-class classification head, a 32 x 64 batch of health tweets.
The two sides run alternately as separate processes (so peak RSS is each one's own), for
--rounds rounds; the table shows medians over rounds of each process's median step time.

Standard library only in this (orchestrating) process; the peer half runs under the peer
venv's python (`--peer`), which has torch, transformers and peft.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    env = os.environ.get("ARDPIPE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ardpipe"


# --------------------------------------------------------------------------- peer side


def peer(args: argparse.Namespace) -> None:
    import resource

    import torch
    from transformers import BertForSequenceClassification, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    batch = json.loads((work / f"{args.model}.batch.json").read_text())
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    mask = torch.tensor(batch["attention_mask"], dtype=torch.long)
    if args.model == "smollm2":
        model = LlamaForCausalLM.from_pretrained(
            work / "smollm2-hf", dtype=torch.float32, attn_implementation="sdpa"
        )
        inputs = {"input_ids": ids, "labels": ids}
    else:
        path = (work / "minilm.path").read_text().strip()
        model = BertForSequenceClassification.from_pretrained(
            path, num_labels=16, dtype=torch.float32, attn_implementation="sdpa"
        )
        inputs = {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": torch.tensor(batch["labels"], dtype=torch.long),
        }
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    bf16 = args.dtype == "bf16"
    times = []
    loss = float("nan")
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**inputs)
        out.loss.backward()
        dt = time.perf_counter() - t0
        # Zeroing outside the timed region, as the Rust side does.
        model.zero_grad(set_to_none=False)
        loss = out.loss.item()
        if i >= args.warmup:
            times.append(dt)
    b, t = ids.shape
    med = statistics.median(times)
    print(
        json.dumps(
            {
                "side": "transformers",
                "model": args.model,
                "dtype": args.dtype,
                "threads": torch.get_num_threads(),
                "batch": [b, t],
                "steps": args.steps,
                "median_step_s": med,
                "tokens_per_s": b * t / med,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "loss": loss,
            }
        )
    )


# --------------------------------------------------------------------------- orchestrator


def run_json(cmd: list[str]) -> dict:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="smollm2", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="f32", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="smollm2,minilm")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    # The release build if there is one; else the dev build (its dependencies, libtorch
    # included, are optimised: the step time is spent in libtorch either way).
    release = REPO / "target" / "release" / "ardpipe"
    ap.add_argument("--ardpipe", default=str(release if release.exists() else REPO / "target" / "debug" / "ardpipe"))
    ap.add_argument("--peer-python", default=str(cache_root() / "peer-venv" / "bin" / "python"))
    ap.add_argument("--work", default=str(cache_root() / "bench"))
    args = ap.parse_args()
    if args.peer:
        return peer(args)

    for exe, fix in [
        (args.ardpipe, "build it: cargo build -p ardpipe (or --release)"),
        (args.peer_python, "run scripts/setup.sh (it creates the Python peer venv)"),
    ]:
        if not Path(exe).exists():
            sys.exit(f"error: {exe} does not exist\n  fix: {fix}")
    work = Path(args.work)
    print(f"[bench] preparing batches and the dequantised SmolLM2 in {work}", flush=True)
    subprocess.run([args.ardpipe, "-q", "bench", "models", "--prepare", str(work)], check=True)

    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    results: dict[tuple[str, str, str], list[dict]] = {}
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for r in range(args.rounds):
                rust = [args.ardpipe, "-q", "bench", "models", "--model", model, "--dtype", dtype, "--json", *common]
                py = [args.peer_python, __file__, "--peer", "--model", model, "--dtype", dtype, "--work", str(work), *common]
                # Alternate which side goes first, so neither always runs on a warmer machine.
                order = [("ardpipe", rust), ("transformers", py)]
                if r % 2:
                    order.reverse()
                for side, cmd in order:
                    res = run_json(cmd)
                    results.setdefault((model, dtype, side), []).append(res)
                    print(
                        f"[bench] {model} {dtype} {side:<12} step {res['median_step_s']:.3f} s  "
                        f"{res['tokens_per_s']:.0f} tok/s  RSS {res['peak_rss_mb']:.0f} MiB  loss {res['loss']:.3f}",
                        flush=True,
                    )

    print()
    print(f"ardpipe binary {args.ardpipe}")
    print(f"threads {args.threads}, {args.steps} timed steps + {args.warmup} warm-up per process, {args.rounds} rounds")
    print("| model | batch | dtype | ardpipe step | ardpipe tok/s | ardpipe RSS | transformers step | transformers tok/s | transformers RSS | speed (tf/ard) | RSS (ard/tf) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            a = results[(model, dtype, "ardpipe")]
            t = results[(model, dtype, "transformers")]
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            b = a[0]["batch"]
            print(
                f"| {model} | {b[0]}x{b[1]} | {dtype} | {med(a, 'median_step_s'):.3f} s | {med(a, 'tokens_per_s'):.0f} | "
                f"{med(a, 'peak_rss_mb'):.0f} MiB | {med(t, 'median_step_s'):.3f} s | {med(t, 'tokens_per_s'):.0f} | "
                f"{med(t, 'peak_rss_mb'):.0f} MiB | {med(t, 'median_step_s') / med(a, 'median_step_s'):.2f}x | "
                f"{med(a, 'peak_rss_mb') / med(t, 'peak_rss_mb'):.2f} |"
            )


if __name__ == "__main__":
    main()
