#!/usr/bin/env python3
"""ARD-LoRA's step-time overhead over LoRA at the same maximum rank, on the real MiniLM and
health tweets, through `ardpipe run` (the whole training step: forward, backward, regulariser,
both optimisers).

    python3 scripts/bench_ard_overhead.py [--rounds 3] [--steps 40] [--threads N]

Runs the two variants of pipelines/bench/ard_vs_lora.ard alternately, --rounds times each.
Per run: the median of the logged tokens/s windows after the first (warm-up) one. Prints the
median over runs per variant and the ratio. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "pipelines" / "bench" / "ard_vs_lora.ard"
VARIANTS = ["ard_lora", "lora_r192"]


def one_run(exe: str, variant: str, steps: int, threads: int, out: Path) -> dict:
    cmd = [
        exe, "run", str(PIPELINE), "-q", "--variant", variant, "--threads", str(threads),
        "--set", f"train.steps={steps}",
        "--set", "dataset.tweets.split.validation=1%",
        "--set", f'output.dir="{out}/{{variant}}"',
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    metrics = [json.loads(l) for l in (out / variant / "metrics.jsonl").read_text().splitlines() if l.strip()]
    windows = [m["tokens_per_second"] for m in metrics if m.get("split") == "train" and "tokens_per_second" in m]
    if len(windows) < 2:
        sys.exit(f"error: {variant}: fewer than two logged windows; raise --steps")
    summary = json.loads((out / variant / "summary.json").read_text())
    return {"tokens_per_s": statistics.median(windows[1:]), "trainable": summary.get("trainable_parameters")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    release = REPO / "target" / "release" / "ardpipe"
    ap.add_argument("--ardpipe", default=str(release if release.exists() else REPO / "target" / "debug" / "ardpipe"))
    args = ap.parse_args()
    if not Path(args.ardpipe).exists():
        sys.exit(f"error: {args.ardpipe} does not exist\n  fix: cargo build -p ardpipe")
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="ardpipe-bench-") as tmp:
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else list(reversed(VARIANTS))
            for v in order:
                res = one_run(args.ardpipe, v, args.steps, args.threads, Path(tmp) / f"r{r}")
                results[v].append(res)
                print(f"[bench] round {r + 1} {v:<10} {res['tokens_per_s']:.0f} tokens/s", flush=True)
    med = {v: statistics.median(x["tokens_per_s"] for x in results[v]) for v in VARIANTS}
    print()
    print(f"ardpipe binary {args.ardpipe}; threads {args.threads}; {args.steps} steps per run, {args.rounds} rounds")
    print("| variant | max rank per module | trainable | median tokens/s | step time vs LoRA |")
    print("|---|---|---|---|---|")
    for v in VARIANTS:
        print(
            f"| {v} | 192 | {results[v][0]['trainable']} | {med[v]:.0f} | "
            f"{med['lora_r192'] / med[v]:.3f}x |"
        )


if __name__ == "__main__":
    main()
