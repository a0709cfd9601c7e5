#!/usr/bin/env python3
"""The speed benchmark: ardpipe (Rust, libtorch through tch) against Python transformers + peft
on the same torch 2.13.0, same weights, same token ids, same thread count. One command (after
scripts/setup.sh, which builds ardpipe and the peer venv):

    python3 scripts/bench_models.py

It measures, in f32 and under bf16 autocast (f32 weights, bf16 matmuls) on each side:
  - LoRA r=8 (lora_alpha 16, no dropout) on q,k,v,o of SmolLM2-135M (dequantised to f32),
    causal LM loss on a 4 x 128 batch of Hamlet;
  - LoRA r=8 on query,value of all-MiniLM-L6-v2 + a 16-class head (pooler.dense and classifier
    train, PEFT's modules_to_save), a 32 x 64 batch of health tweets;
a timed step being forward + backward + AdamW (gradients are zeroed outside the timing). Then,
in ardpipe only, ARD-LoRA against LoRA at the same maximum rank (r0 = 8 per head against LoRA
of rank 8 x heads per module), before and after compaction to a fixed rank pattern; and this
machine's peak matmul throughput (`ardpipe bench matmul`: square GEMMs through the same
libtorch at the same thread count), to which each case's achieved FLOP/s is compared.

Every case runs as its own process (so peak RSS is each one's own); the cases alternate within
a round and the order reverses every other round; the tables show medians over --rounds of each
process's median step time. Results go to stdout and to docs/BENCHMARKS.md (--out), written
atomically, with the machine description.

Standard library only in this (orchestrating) process; the peer half runs under the peer venv's
python (`--peer`), which has torch, transformers and peft.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TARGETS = {"smollm2": ["q_proj", "k_proj", "v_proj", "o_proj"], "minilm": ["query", "value"]}
# ardpipe's classification head (bert.pooler.dense + classifier) under PEFT's modules_to_save.
HEAD = {"minilm": ["bert.pooler.dense", "classifier"]}
LORA_SCALING = 2.0  # lora_alpha / r = 16 / 8
LR, WEIGHT_DECAY = 1e-3, 0.01
DEFAULT_STEPS = {"smollm2": 4, "minilm": 10}

# Targets of the issue.
SPEED_TARGET = 1.25  # ardpipe tokens/s >= 1.25 x the peer's
RSS_TARGET = 0.6  # ardpipe peak RSS <= 0.6 x the peer's
ARD_BEFORE_TARGET = 1.10  # ARD-LoRA step <= 1.10 x LoRA at the same maximum rank
ARD_AFTER_TARGET = 1.0  # compacted ARD-LoRA step < LoRA at the same maximum rank


def cache_root() -> Path:
    env = os.environ.get("ARDPIPE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ardpipe"


# --------------------------------------------------------------------------- peer side


def peer(args: argparse.Namespace) -> None:
    import resource

    import peft
    import torch
    import transformers
    from transformers import BertForSequenceClassification, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    batch = json.loads((work / f"{args.model}.batch.json").read_text())
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    mask = torch.tensor(batch["attention_mask"], dtype=torch.long)
    if args.model == "smollm2":
        model = LlamaForCausalLM.from_pretrained(work / "smollm2-hf", dtype=torch.float32, attn_implementation="sdpa")
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
    torch.manual_seed(0)
    opt = None
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=args.rank,
            lora_alpha=LORA_SCALING * args.rank,
            lora_dropout=0.0,
            target_modules=TARGETS[args.model],
            modules_to_save=HEAD.get(args.model),
            bias="none",
        )
        model = get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    else:  # full: every weight gets a gradient, no optimiser
        for p in model.parameters():
            p.requires_grad_(True)
        params = list(model.parameters())
    model.train()
    bf16 = args.dtype == "bf16"
    times = []
    loss = float("nan")
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**inputs)
        out.loss.backward()
        if opt is not None:
            opt.step()
        dt = time.perf_counter() - t0
        # Zeroing outside the timed region, as the Rust side does.
        if opt is not None:
            opt.zero_grad(set_to_none=False)
        else:
            model.zero_grad(set_to_none=False)
        loss = out.loss.item()
        if i >= args.warmup:
            times.append(dt)
    b, t = ids.shape
    med = statistics.median(times)
    print(
        json.dumps(
            {
                "side": "peer",
                "model": args.model,
                "dtype": args.dtype,
                "method": args.method,
                "rank": args.rank,
                "threads": torch.get_num_threads(),
                "batch": [b, t],
                "steps": args.steps,
                "median_step_s": med,
                "tokens_per_s": b * t / med,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "loss": loss,
                "trainable_params": sum(p.numel() for p in params),
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                    "python": platform.python_version(),
                },
            }
        )
    )


# --------------------------------------------------------------------------- orchestrator


def run_json(cmd: list[str]) -> dict:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine(args: argparse.Namespace) -> dict:
    cpuinfo = read("/proc/cpuinfo")
    cpu = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    mem_kb = next((int(l.split()[1]) for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal:")), 0)
    os_name = next(
        (l.split("=", 1)[1].strip().strip('"') for l in read("/etc/os-release").splitlines() if l.startswith("PRETTY_NAME=")),
        platform.system(),
    )

    def git(*a: str) -> str:
        p = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else "?"

    # Uncommitted changes to what builds the binary or runs the peer (other files do not count).
    dirty = [
        l for l in git("status", "--porcelain", "--", "Cargo.toml", "Cargo.lock", "cli", "dsl", "engine", "plugins",
                       "scripts/bench_models.py").splitlines() if l.strip()
    ]
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "memory_gib": mem_kb / 1024 / 1024,
        "os": f"{os_name}, Linux {platform.release()}",
        "threads": args.threads,
        "commit": git("rev-parse", "--short=12", "HEAD")
        + (f" (with uncommitted changes in {len(dirty)} source files)" if dirty else ""),
        "binary": str(Path(args.ardpipe).resolve().relative_to(REPO)) if Path(args.ardpipe).resolve().is_relative_to(REPO) else args.ardpipe,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="smollm2", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="f32", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="lora", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="smollm2,minilm")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank; ARD-LoRA's r0 (default 8)")
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps per process (default: SmolLM2 4, MiniLM 10)"
    )
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of alternating processes (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-ard", action="store_true", help="skip the ARD-LoRA against LoRA cases")
    ap.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"), help="report file ('-': none)")
    # The release build if there is one; else the dev build (its dependencies, libtorch
    # included, are optimised: the step time is spent in libtorch either way).
    release = REPO / "target" / "release" / "ardpipe"
    ap.add_argument("--ardpipe", default=str(release if release.exists() else REPO / "target" / "debug" / "ardpipe"))
    ap.add_argument("--peer-python", default=str(cache_root() / "peer-venv" / "bin" / "python"))
    ap.add_argument("--work", default=str(cache_root() / "bench"))
    args = ap.parse_args()
    if args.peer:
        args.steps = args.steps or DEFAULT_STEPS[args.model]
        return peer(args)

    for exe, fix in [
        (args.ardpipe, "build it: cargo build -p ardpipe (or scripts/setup.sh)"),
        (args.peer_python, "run scripts/setup.sh without --no-peer (it creates the Python peer venv)"),
    ]:
        if not Path(exe).exists():
            sys.exit(f"error: {exe} does not exist\n  fix: {fix}")
    models = args.models.split(",")
    dtypes = args.dtypes.split(",")
    for m in models:
        if m not in TARGETS:
            sys.exit(f"error: unknown model `{m}` (smollm2, minilm)")
    for d in dtypes:
        if d not in ("f32", "bf16"):
            sys.exit(f"error: unknown dtype `{d}` (f32, bf16)")
    argv = " ".join(["python3", "scripts/bench_models.py", *sys.argv[1:]])
    started = time.monotonic()
    load_before = load()

    def log(msg: str) -> None:
        el = time.monotonic() - started
        print(f"[bench {int(el) // 60:2d}:{int(el) % 60:02d}] {msg}", flush=True)

    work = Path(args.work)
    log(f"preparing batches and the dequantised SmolLM2 in {work}")
    p = subprocess.run([args.ardpipe, "-q", "bench", "models", "--prepare", str(work)], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: ardpipe bench models --prepare failed ({p.returncode}):\n{p.stderr[-3000:]}")

    peaks = {}
    for d in dtypes:
        peaks[d] = run_json([args.ardpipe, "-q", "bench", "matmul", "--dtype", d, "--threads", str(args.threads), "--json"])
        log(f"matmul peak {d}: {peaks[d]['peak_gflops']:.0f} GFLOP/s")

    # Cases: (key, side, extra ardpipe arguments).
    cases = [("lora", "ardpipe", ["--method", "lora"]), ("lora", "peer", [])]
    if not args.no_ard:
        cases += [
            ("lora_max", "ardpipe", ["--method", "lora", "--per-head"]),
            ("ard", "ardpipe", ["--method", "ard_lora"]),
            ("ard_compacted", "ardpipe", ["--method", "ard_lora", "--compacted"]),
        ]
    results: dict[tuple, list[dict]] = {}
    total = args.rounds * len(models) * len(dtypes) * len(cases)
    done = 0
    for r in range(args.rounds):
        for model in models:
            steps = args.steps or DEFAULT_STEPS[model]
            common = ["--steps", str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            for dtype in dtypes:
                order = cases if r % 2 == 0 else list(reversed(cases))
                for key, side, extra in order:
                    if side == "ardpipe":
                        cmd = [args.ardpipe, "-q", "bench", "models", "--model", model, "--dtype", dtype]
                        cmd += ["--rank", str(args.rank), *extra, "--json", *common]
                    else:
                        cmd = [args.peer_python, __file__, "--peer", "--model", model, "--dtype", dtype]
                        cmd += ["--method", "lora", "--rank", str(args.rank), "--work", str(work), *common]
                    res = run_json(cmd)
                    results.setdefault((model, dtype, key, side), []).append(res)
                    done += 1
                    el = time.monotonic() - started
                    log(
                        f"{done}/{total} round {r + 1} {model} {dtype} {key:<13} {side:<7} "
                        f"step {res['median_step_s']:.3f} s  {res['tokens_per_s']:.0f} tok/s  "
                        f"RSS {res['peak_rss_mb']:.0f} MiB  loss {res['loss']:.3f}  "
                        f"(about {el / done * (total - done) / 60:.1f} min left)"
                    )
    load_after = load()
    info = machine(args)
    report = render(args, argv, info, peaks, results, models, dtypes, load_before, load_after, time.monotonic() - started)
    print()
    print(report)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(report)
        os.replace(tmp, out)
        log(f"wrote {out}")


def render(args, argv, info, peaks, results, models, dtypes, load_before, load_after, seconds) -> str:
    def med(model, dtype, key, side, field):
        return statistics.median(x[field] for x in results[(model, dtype, key, side)])

    def first(model, dtype, key, side):
        return results[(model, dtype, key, side)][0]

    versions = next(iter(x for k, v in results.items() if k[3] == "peer" for x in v))["versions"]
    ard = not args.no_ard
    lines: list[str] = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w(f"Written by `{argv}` on {info['date']} ({seconds / 60:.0f} minutes). Figures, not tests: "
      "rerun the command to measure your machine.")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {info['cpu']} ({', '.join(info['isa'])}) |")
    w(f"| cores | {info['cores']} |")
    w(f"| memory | {info['memory_gib']:.1f} GiB |")
    w(f"| OS | {info['os']} |")
    w(f"| torch (both sides) | {versions['torch']} (ardpipe: libtorch through tch; peer: the PyPI wheel) |")
    w(f"| peer | Python {versions['python']}, transformers {versions['transformers']}, peft {versions['peft']} |")
    w(f"| threads | {info['threads']} (libtorch intra-op, both sides) |")
    w(f"| ardpipe | commit {info['commit']}, binary `{info['binary']}` |")
    w(f"| load average | {load_before} before, {load_after} after (1, 5, 15 min) |")
    w("")
    w("## Method")
    w("")
    w("Both sides train the same f32 weights (SmolLM2-135M-Instruct's GGUF dequantised once by "
      "`ardpipe bench models --prepare` and loaded by transformers from that folder; MiniLM from "
      "the same safetensors) on the same token ids, with the same thread count. **f32**: f32 "
      "throughout. **bf16**: f32 weights under bf16 autocast (`torch.autocast(\"cpu\", "
      "dtype=torch.bfloat16)` on the peer, libtorch's autocast on ardpipe): matmuls in bf16.")
    w("")
    w("- **SmolLM2**: causal LM loss on a 4 × 128 batch of Hamlet; LoRA r = 8, lora_alpha = 16, "
      "no dropout on `q_proj, k_proj, v_proj, o_proj` of all 30 layers.")
    w("- **MiniLM**: 16-class classification of a 32 × 64 batch of health tweets; LoRA r = 8, "
      "lora_alpha = 16, no dropout on `query, value` of all 6 layers; the head (`bert.pooler.dense` "
      "and `classifier`) trains too (PEFT `modules_to_save`).")
    w("- A timed step is forward + loss + backward + AdamW (lr 1e-3, weight decay 0.01) over the "
      "trainable tensors; gradients are zeroed outside the timing on both sides. The peer is "
      "`peft.get_peft_model(model, LoraConfig(...))` with `torch.optim.AdamW`; ardpipe is "
      "`ardpipe bench models --method lora`, which attaches its LoRA adapters and steps its AdamW.")
    steps = args.steps or "SmolLM2 " + str(DEFAULT_STEPS["smollm2"]) + ", MiniLM " + str(DEFAULT_STEPS["minilm"])
    w(f"- Each case is its own process: {args.warmup} warm-up step(s), then {steps} timed steps; "
      f"the process reports its median step and its peak RSS (ardpipe: VmHWM; peer: ru_maxrss). "
      f"The cases alternate within each of {args.rounds} rounds, in reverse order every other round; "
      "the tables show the median over rounds. Tokens/s = batch × tokens / step time.")
    w("")
    w(f"## ardpipe against transformers + peft (LoRA r = {args.rank})")
    w("")
    w("| model | batch | dtype | ardpipe step | ardpipe tokens/s | ardpipe peak RSS | peer step | peer tokens/s | peer peak RSS | "
      f"tokens/s ardpipe/peer (≥ {SPEED_TARGET}) | RSS ardpipe/peer (≤ {RSS_TARGET}) | trainable (both) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    speed_ok, rss_ok, mismatch = [], [], []
    for model in models:
        for dtype in dtypes:
            a = lambda f: med(model, dtype, "lora", "ardpipe", f)  # noqa: E731
            p = lambda f: med(model, dtype, "lora", "peer", f)  # noqa: E731
            sr = p("median_step_s") / a("median_step_s")
            rr = a("peak_rss_mb") / p("peak_rss_mb")
            speed_ok.append((model, dtype, sr, sr >= SPEED_TARGET))
            rss_ok.append((model, dtype, rr, rr <= RSS_TARGET))
            ta = first(model, dtype, "lora", "ardpipe")["trainable_params"]
            tp = first(model, dtype, "lora", "peer")["trainable_params"]
            if ta != tp:
                mismatch.append(f"{model} {dtype}: ardpipe {ta:,}, peer {tp:,}")
            b = first(model, dtype, "lora", "ardpipe")["batch"]
            w(f"| {model} | {b[0]}×{b[1]} | {dtype} | {a('median_step_s'):.3f} s | {a('tokens_per_s'):,.0f} | "
              f"{a('peak_rss_mb'):,.0f} MiB | {p('median_step_s'):.3f} s | {p('tokens_per_s'):,.0f} | {p('peak_rss_mb'):,.0f} MiB | "
              f"**{sr:.2f}×** {mark(sr >= SPEED_TARGET)} | **{rr:.2f}** {mark(rr <= RSS_TARGET)} | "
              f"{ta:,}{'' if ta == tp else f' / peer {tp:,}'} |")
    w("")
    if mismatch:
        w("**Warning: the two sides train different numbers of parameters** (" + "; ".join(mismatch) + ").")
        w("")

    ard_rows = []
    if ard:
        w("## ARD-LoRA against LoRA at the same maximum rank (ardpipe)")
        w("")
        w(f"ARD-LoRA with r0 = {args.rank} per head and α_max = 1 (so at most {args.rank} rows per head), "
          "scale s = 2·r0, λ = 0.1 (β = 1, γ = 0.5, depth TV), α trained by its own Adam (pooled "
          "second moment, lr 5e-2) and then moved by the regulariser's proximal step and projected, "
          "exactly the trainer's step; against LoRA of rank "
          f"{args.rank} × heads on each module (the same maximum rank per module: SmolLM2 q, o "
          f"{args.rank * 9}, k, v {args.rank * 3}; MiniLM query, value {args.rank * 12}), "
          "lora_alpha = 2·rank. **Compacted**: after one training step, every head's α is set so its "
          "effective rank is 2 + (layer + head) mod 3 (ranks 2, 3, 4 of 8 cycling; mean 3.0, 37.5% "
          "of r0, a fixed mid-range outcome so the timings do not depend on a training run), then the "
          "adapters' own compaction (`compact_linears`, margin 1 row) shrinks storage and reslices "
          "AdamW's moments before the timed steps. Ratios are step times (lower is faster).")
        w("")
        w("| model | dtype | LoRA (same max rank) step | ARD-LoRA step | ARD/LoRA before compaction (≤ 1.10) | "
          "ARD-LoRA compacted step | ARD/LoRA after compaction (< 1) | ranks stored, before → after | "
          "trainable, before → after | mean effective rank at the end (3.0 at compaction) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for model in models:
            for dtype in dtypes:
                lm = med(model, dtype, "lora_max", "ardpipe", "median_step_s")
                a0 = med(model, dtype, "ard", "ardpipe", "median_step_s")
                a1 = med(model, dtype, "ard_compacted", "ardpipe", "median_step_s")
                r0, r1 = a0 / lm, a1 / lm
                f0, f1 = first(model, dtype, "ard", "ardpipe"), first(model, dtype, "ard_compacted", "ardpipe")
                ard_rows.append((model, dtype, r0, r1))
                w(f"| {model} | {dtype} | {lm:.3f} s | {a0:.3f} s | **{r0:.2f}×** {mark(r0 <= ARD_BEFORE_TARGET)} | "
                  f"{a1:.3f} s | **{r1:.2f}×** {mark(r1 < ARD_AFTER_TARGET)} | {f0['rank_total']:,} → {f1['rank_total']:,} | "
                  f"{f0['trainable_params']:,} → {f1['trainable_params']:,} | {f1['mean_effective_rank']:.2f} |")
        w("")

    w("## Fraction of this machine's matmul peak")
    w("")
    w("Peak: `ardpipe bench matmul` — square n × n × n matmuls (n = 512, 1024, 2048, 3072) through "
      "the same libtorch at the same thread count, f32 operands or bf16 operands (what autocast "
      "feeds the kernels), best time of repeated products over about a second per size; the "
      "fastest size is the peak.")
    w("")
    w("| dtype | peak | per size (GFLOP/s) |")
    w("|---|---|---|")
    for d in dtypes:
        sizes = ", ".join(f"{n}: {g:,.0f}" for n, g in peaks[d]["sizes"])
        w(f"| {d} | {peaks[d]['peak_gflops']:,.0f} GFLOP/s | {sizes} |")
    w("")
    w("Achieved = matmul FLOPs of one step / step time. FLOPs are counted from the shapes (2 per "
      "multiply-add; N = batch × tokens): each frozen linear 2·N·d_in·d_out forward and as much "
      "again backward (the input gradient); each adapter 2·N·(|A| + |B|) forward and twice that "
      "backward (|A|, |B| the stored sizes, so ARD-LoRA's block-diagonal B counts per head); "
      "attention 4·b·t²·d_q per layer forward and twice that backward; SmolLM2's tied LM head "
      "2·N·576·49152 forward and as much backward; MiniLM's pooler and classifier 3 × their "
      "forward. Norms, softmax, activations and the optimiser are not counted. Both sides do the "
      "same work, so the same count serves both.")
    w("")
    w("| model | dtype | case | GFLOP/step | ardpipe GFLOP/s | ardpipe % of peak | peer GFLOP/s | peer % of peak |")
    w("|---|---|---|---|---|---|---|---|")
    names = {"lora": f"LoRA r = {args.rank}", "lora_max": "LoRA, same max rank as ARD", "ard": "ARD-LoRA",
             "ard_compacted": "ARD-LoRA compacted"}
    for model in models:
        for dtype in dtypes:
            peak = peaks[dtype]["peak_gflops"]
            for key in ["lora", "lora_max", "ard", "ard_compacted"] if ard else ["lora"]:
                fl = first(model, dtype, key, "ardpipe")["flops_per_step"] / 1e9
                ga = fl / med(model, dtype, key, "ardpipe", "median_step_s")
                peer_cells = "– | –"
                if (model, dtype, key, "peer") in results:
                    gp = fl / med(model, dtype, key, "peer", "median_step_s")
                    peer_cells = f"{gp:,.0f} | {100 * gp / peak:.0f}%"
                w(f"| {model} | {dtype} | {names[key]} | {fl:,.1f} | {ga:,.0f} | {100 * ga / peak:.0f}% | {peer_cells} |")
    w("")

    w("## Targets")
    w("")
    w("| target | result |")
    w("|---|---|")
    for model, dtype, sr, ok in speed_ok:
        w(f"| ardpipe ≥ {SPEED_TARGET}× the peer's tokens/s, {model} {dtype} | {sr:.2f}×: {mark(ok)} |")
    for model, dtype, rr, ok in rss_ok:
        w(f"| ardpipe ≤ {RSS_TARGET}× the peer's peak RSS, {model} {dtype} | {rr:.2f}: {mark(ok)} |")
    for model, dtype, r0, r1 in ard_rows:
        w(f"| ARD-LoRA ≤ 10% slower than LoRA before compaction, {model} {dtype} | {r0:.2f}×: {mark(r0 <= ARD_BEFORE_TARGET)} |")
        w(f"| ARD-LoRA faster than LoRA after compaction, {model} {dtype} | {r1:.2f}×: {mark(r1 < ARD_AFTER_TARGET)} |")
    w("")
    misses = []
    for model, dtype, sr, ok in speed_ok:
        if not ok:
            misses.append(
                f"- Speed, {model} {dtype}: ardpipe reaches {sr:.2f}× the peer's tokens/s, not {SPEED_TARGET}×"
                + (" — it is slower than the peer here." if sr < 1 else ".")
            )
    for model, dtype, rr, ok in rss_ok:
        if not ok:
            misses.append(f"- Memory, {model} {dtype}: ardpipe's peak RSS is {rr:.2f}× the peer's, above {RSS_TARGET}×.")
    for model, dtype, r0, r1 in ard_rows:
        if r0 > ARD_BEFORE_TARGET:
            misses.append(f"- ARD-LoRA before compaction, {model} {dtype}: {100 * (r0 - 1):.0f}% slower than LoRA at the same maximum rank, more than 10%.")
        if r1 >= ARD_AFTER_TARGET:
            misses.append(f"- ARD-LoRA after compaction, {model} {dtype}: {r1:.2f}× LoRA's step time, not faster.")
    if misses:
        w("Not met (measured as above, not adjusted):")
        w("")
        lines.extend(misses)
    else:
        w("Every target is met in this run.")
    w("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
