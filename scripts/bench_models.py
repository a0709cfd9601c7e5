#!/usr/bin/env python3
"""The speed benchmark: ardpipe (Rust, libtorch through tch) against Python transformers + peft
on the same torch 2.13.0, same weights, same token ids, same thread count. One command (after
scripts/setup.sh, which builds ardpipe and the peer venv):

    python3 scripts/bench_models.py

It measures, in f32, under bf16 autocast over f32 weights (bf16 matmuls) and with the frozen
base stored in bf16 under bf16 autocast (adapters f32; the peer's usual best CPU setting) on
each side:
  - LoRA r=8 (lora_alpha 16, no dropout) on q,k,v,o of SmolLM2-135M (dequantised to f32),
    causal LM loss on a 4 x 128 batch of Hamlet;
  - LoRA r=8 on query,value of all-MiniLM-L6-v2 + a 16-class head (pooler.dense and classifier
    train, PEFT's modules_to_save), a 32 x 64 batch of health tweets;
a timed step being forward + backward + AdamW (gradients are zeroed outside the timing). Then,
in ardpipe only, SmolLM2 with less memory (int8 and int4 bases, layer checkpointing; the peer
venv has no CPU int8 path that trains: no bitsandbytes, torchao or optimum-quanto, and torch's
own dynamic int8 Linear passes no gradient and is not a module PEFT wraps); ARD-LoRA against LoRA at the same maximum rank (r0 = 8 per head against LoRA
of rank 8 x heads per module), before and after compaction to a fixed rank pattern; and this
machine's peak matmul throughput (`ardpipe bench matmul`: square GEMMs through the same
libtorch at the same thread count), to which each case's achieved FLOP/s is compared.

Every case runs as its own process (so peak RSS is each one's own); the cases alternate within
a round and the order reverses every other round; the tables show medians over --rounds of each
process's median step time. `--quick` (1 round, 2 SmolLM2 and 3 MiniLM steps, shorter matmul
timings) smoke-tests the whole run. Results go to stdout and to docs/BENCHMARKS.md (--out), written
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
PEAK_TARGET = 0.35  # bf16 steps reach >= 35% of the measured bf16 matmul peak
INT8_RSS_TARGET = 0.35  # int8 base: peak RSS <= 0.35 x the f32 peer's
QUICK_STEPS = {"smollm2": 2, "minilm": 3}

# The precisions compared with the peer: (dtype, base) -> label. `bf16` is autocast over f32
# weights; `bf16-base` the frozen base stored in bf16 under bf16 autocast, adapters f32.
PRECISIONS = {
    "f32": "f32",
    "bf16": "bf16 autocast, f32 base",
    "bf16-base": "bf16 autocast, bf16 base",
}
# Ardpipe-only SmolLM2 cases with less memory, run under the bf16-base precision (bf16 autocast,
# the rest of the base in bf16): key -> (label, extra `ardpipe bench models` arguments).
LOW_MEMORY = {
    "int8": ("int8 base", ["--quantize", "int8"]),
    "int4": ("int4 base (groups of 32)", ["--quantize", "int4"]),
    "ckpt": ("bf16 base + checkpointing", ["--checkpointing"]),
    "int4_ckpt": ("int4 base + checkpointing", ["--quantize", "int4", "--checkpointing"]),
}


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
    # bf16 base: the weights cast once at load, as `from_pretrained(dtype=torch.bfloat16)` does.
    base_dtype = torch.bfloat16 if args.base == "bf16" else torch.float32
    if args.model == "smollm2":
        model = LlamaForCausalLM.from_pretrained(work / "smollm2-hf", dtype=base_dtype, attn_implementation="sdpa")
        inputs = {"input_ids": ids, "labels": ids}
    else:
        path = (work / "minilm.path").read_text().strip()
        model = BertForSequenceClassification.from_pretrained(
            path, num_labels=16, dtype=base_dtype, attn_implementation="sdpa"
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
        # autocast_adapter_dtype=True (the default) keeps the LoRA weights f32 over a bf16 base.
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
    prof = None
    for i in range(args.warmup + args.steps):
        if args.profile and i == args.warmup:
            from torch.profiler import ProfilerActivity, profile

            prof = profile(activities=[ProfilerActivity.CPU])
            prof.__enter__()
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
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(args.profile)
    b, t = ids.shape
    med = statistics.median(times)
    print(
        json.dumps(
            {
                "side": "peer",
                "model": args.model,
                "dtype": args.dtype,
                "base": args.base,
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
                "trainable_dtypes": sorted({str(p.dtype).removeprefix("torch.").replace("float32", "f32").replace("bfloat16", "bf16") for p in params}),
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "peft": peft.__version__,
                    "python": platform.python_version(),
                },
            }
        )
    )


# --------------------------------------------------------------------------- operator profile

# Operator groups of the profile, in the order the report shows them: (label, test on an
# operator's name). An operator's self time (its duration less its children's) goes to the first
# group whose test it passes.
MATMUL_OPS = {
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::mv",
    "aten::addmv", "aten::dot", "aten::matmul", "aten::linear", "aten::_weight_int8pack_mm",
}
COPY_OPS = {
    "aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous", "aten::cat",
    "aten::stack", "aten::index_select", "aten::embedding", "aten::embedding_dense_backward",
    "aten::index", "aten::index_put_", "aten::_index_put_impl_", "aten::masked_fill",
    "aten::masked_fill_", "aten::where", "aten::gather", "aten::scatter", "aten::scatter_add_",
}
VIEW_OPS = {
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::transpose", "aten::t",
    "aten::permute", "aten::expand", "aten::expand_as", "aten::as_strided", "aten::slice",
    "aten::select", "aten::narrow", "aten::unsqueeze", "aten::squeeze", "aten::split",
    "aten::split_with_sizes", "aten::chunk", "aten::unbind", "aten::detach", "aten::detach_",
    "aten::alias", "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros",
    "aten::zeros_like", "aten::ones", "aten::ones_like", "aten::full", "aten::full_like",
    "aten::resize_", "aten::lift_fresh", "aten::_unsafe_view", "aten::view_as", "aten::flatten",
    "aten::unflatten", "aten::resolve_conj", "aten::resolve_neg", "aten::movedim",
    "aten::result_type", "aten::new_empty", "aten::new_zeros", "aten::new_empty_strided",
    "aten::arange", "aten::scalar_tensor", "aten::_has_compatible_shallow_copy_type", "detach",
}
OP_GROUPS = [
    ("matmuls (mm, addmm, bmm)", lambda n: n in MATMUL_OPS),
    ("attention (SDPA forward and backward)", lambda n: "scaled_dot_product" in n or "flash_attention" in n),
    ("optimiser (AdamW)", lambda n: "adam" in n.lower() or n.startswith("aten::_foreach_") or "Optimizer.step" in n),
    ("loss (log-softmax, NLL)", lambda n: "log_softmax" in n or "nll_loss" in n or "cross_entropy" in n),
    ("casts, copies, gathers", lambda n: n in COPY_OPS),
    ("views and allocations", lambda n: n in VIEW_OPS),
    ("autograd engine (per-node bookkeeping)", lambda n: n.startswith("autograd::") or "AccumulateGrad" in n or n.endswith("Backward0") or n.endswith("Backward1")),
    ("elementwise, norms, activations", lambda n: n.startswith("aten::")),
    ("other (custom functions, annotations)", lambda n: True),
]
# Top-level operators that run between the timed regions (zeroing the gradients, reading the
# loss), and annotations whose whole subtree does: left out of the profile's step.
UNTIMED_TOP = {"aten::zero_", "aten::item", "aten::_local_scalar_dense", "aten::fill_"}
UNTIMED_SUBTREE = ("zero_grad",)


def op_group(name: str) -> str:
    return next(label for label, test in OP_GROUPS if test(name))


def op_profile(trace: Path, steps: int) -> dict:
    """Self time per operator group (ms per step) of a Chrome trace (Kineto's, from either
    side), the top operators by self time, and the time the step's thread spent inside
    operators."""
    events = json.loads(trace.read_text()).get("traceEvents", [])
    by_thread: dict = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation") and "dur" in e:
            by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    groups: dict[str, float] = {label: 0.0 for label, _ in OP_GROUPS}
    ops: dict[str, float] = {}
    inside = 0.0
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[list] = []  # [event, children's time, untimed]

        def close(entry: list) -> None:
            nonlocal inside
            e, child, untimed = entry
            if untimed:
                return
            self_us = max(e["dur"] - child, 0.0)
            groups[op_group(e["name"])] += self_us
            ops[e["name"]] = ops.get(e["name"], 0.0) + self_us
            if not stack:
                inside += e["dur"]

        for e in evs:
            while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]:
                close(stack.pop())
            parent = stack[-1] if stack else None
            untimed = (parent[2] if parent else e["name"] in UNTIMED_TOP) or any(
                k in e["name"] for k in UNTIMED_SUBTREE
            )
            if parent is not None:
                parent[1] += e["dur"]
            stack.append([e, 0.0, untimed])
        while stack:
            close(stack.pop())
    per_step = lambda us: us / 1000 / steps  # noqa: E731
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
    return {
        "groups": {k: per_step(v) for k, v in groups.items()},
        "top": [(k, per_step(v)) for k, v in top],
        "inside_ms": per_step(inside),
    }


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


def compute_dtype(prec: str) -> str:
    """The autocast of a precision: `f32` for f32, `bf16` for both bf16 settings."""
    return "f32" if prec == "f32" else "bf16"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="smollm2", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="f32", help=argparse.SUPPRESS)
    ap.add_argument("--base", default="f32", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="lora", help=argparse.SUPPRESS)
    ap.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--models", default="smollm2,minilm")
    ap.add_argument(
        "--dtypes",
        default="f32,bf16,bf16-base",
        help="precisions: f32, bf16 (autocast over f32 weights), bf16-base (bf16 base under bf16 autocast)",
    )
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank; ARD-LoRA's r0 (default 8)")
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps per process (default: SmolLM2 4, MiniLM 10)"
    )
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of alternating processes (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-ard", action="store_true", help="skip the ARD-LoRA against LoRA cases")
    ap.add_argument(
        "--no-low-memory", action="store_true", help="skip ardpipe's int8, int4 and checkpointing SmolLM2 cases"
    )
    ap.add_argument(
        "--no-profile", action="store_true", help="skip the operator profile (one profiled process per side and case)"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 round, SmolLM2 2 and MiniLM 3 timed steps, 0.3 s of matmul timing per size",
    )
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
    if args.quick:
        args.rounds = 1
    step_counts = QUICK_STEPS if args.quick else DEFAULT_STEPS
    matmul_seconds = 0.3 if args.quick else 1.0

    for exe, fix in [
        (args.ardpipe, "build it: cargo build -p ardpipe (or scripts/setup.sh)"),
        (args.peer_python, "run scripts/setup.sh without --no-peer (it creates the Python peer venv)"),
    ]:
        if not Path(exe).exists():
            sys.exit(f"error: {exe} does not exist\n  fix: {fix}")
    models = args.models.split(",")
    precs = args.dtypes.split(",")
    for m in models:
        if m not in TARGETS:
            sys.exit(f"error: unknown model `{m}` (smollm2, minilm)")
    for d in precs:
        if d not in PRECISIONS:
            sys.exit(f"error: unknown precision `{d}` (f32, bf16, bf16-base)")
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
    for d in sorted({compute_dtype(x) for x in precs}, key=["f32", "bf16"].index):
        peaks[d] = run_json(
            [args.ardpipe, "-q", "bench", "matmul", "--dtype", d, "--threads", str(args.threads),
             "--seconds", str(matmul_seconds), "--json"]
        )
        log(f"matmul peak {d}: {peaks[d]['peak_gflops']:.0f} GFLOP/s")

    def cases_of(model: str, prec: str) -> list[tuple[str, str, list[str]]]:
        """(key, side, extra ardpipe arguments) of one model and precision."""
        cases = [("lora", "ardpipe", ["--method", "lora"]), ("lora", "peer", [])]
        if not args.no_ard and prec in ("f32", "bf16"):
            cases += [
                ("lora_max", "ardpipe", ["--method", "lora", "--per-head"]),
                ("ard", "ardpipe", ["--method", "ard_lora"]),
                ("ard_compacted", "ardpipe", ["--method", "ard_lora", "--compacted"]),
            ]
        if not args.no_low_memory and prec == "bf16-base" and model == "smollm2":
            cases += [(key, "ardpipe", ["--method", "lora", *extra]) for key, (_, extra) in LOW_MEMORY.items()]
        return cases

    def case_cmd(model: str, prec: str, side: str, extra: list[str]) -> list[str]:
        steps = args.steps or step_counts[model]
        common = ["--steps", str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
        dtype = compute_dtype(prec)
        base = "bf16" if prec == "bf16-base" else "f32"
        if side == "ardpipe":
            cmd = [args.ardpipe, "-q", "bench", "models", "--model", model, "--dtype", dtype]
            return cmd + ["--base", base, "--rank", str(args.rank), *extra, "--json", *common]
        cmd = [args.peer_python, __file__, "--peer", "--model", model, "--dtype", dtype]
        return cmd + ["--base", base, "--method", "lora", "--rank", str(args.rank), "--work", str(work), *extra, *common]

    results: dict[tuple, list[dict]] = {}
    total = args.rounds * sum(len(cases_of(m, d)) for m in models for d in precs)
    done = 0
    for r in range(args.rounds):
        for model in models:
            for prec in precs:
                cases = cases_of(model, prec)
                order = cases if r % 2 == 0 else list(reversed(cases))
                for key, side, extra in order:
                    res = run_json(case_cmd(model, prec, side, extra))
                    results.setdefault((model, prec, key, side), []).append(res)
                    done += 1
                    el = time.monotonic() - started
                    log(
                        f"{done}/{total} round {r + 1} {model} {prec:<9} {key:<13} {side:<7} "
                        f"step {res['median_step_s']:.3f} s  {res['tokens_per_s']:.0f} tok/s  "
                        f"RSS {res['peak_rss_mb']:.0f} MiB  loss {res['loss']:.3f}  "
                        f"(about {el / done * (total - done) / 60:.1f} min left)"
                    )
    # One more process per side, model and precision with the operator profiler on (its
    # overhead would bias the timings above, so these are separate runs).
    profiles: dict[tuple, dict] = {}
    if not args.no_profile:
        for model in models:
            for prec in precs:
                for side in ("ardpipe", "peer"):
                    trace = work / f"profile-{model}-{prec}-{side}.json"
                    method = ["--method", "lora"] if side == "ardpipe" else []
                    res = run_json(case_cmd(model, prec, side, [*method, "--profile", str(trace)]))
                    prof = op_profile(trace, res["steps"])
                    prof["step_ms"] = res["median_step_s"] * 1000
                    profiles[(model, prec, side)] = prof
                    log(f"profile {model} {prec:<9} {side:<7} step {prof['step_ms']:.0f} ms, "
                        f"{prof['inside_ms']:.0f} ms inside operators")
    load_after = load()
    info = machine(args)
    report = render(args, argv, info, peaks, results, profiles, models, precs, step_counts, load_before, load_after,
                    time.monotonic() - started)
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


def render(args, argv, info, peaks, results, profiles, models, precs, step_counts, load_before, load_after, seconds) -> str:
    def med(model, prec, key, side, field):
        return statistics.median(x[field] for x in results[(model, prec, key, side)])

    def first(model, prec, key, side):
        return results[(model, prec, key, side)][0]

    def has(model, prec, key, side="ardpipe"):
        return (model, prec, key, side) in results

    versions = next(iter(x for k, v in results.items() if k[3] == "peer" for x in v))["versions"]
    ard_precs = [d for d in precs if d in ("f32", "bf16")] if not args.no_ard else []
    low_mem = [k for k in LOW_MEMORY if has("smollm2", "bf16-base", k)]
    lines: list[str] = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w(f"Written by `{argv}` on {info['date']} ({seconds / 60:.0f} minutes). Figures, not tests: "
      "rerun the command to measure your machine.")
    if args.quick:
        w("")
        w("**Quick run** (`--quick`: one round, few steps): a smoke test of the script, not a measurement.")
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
    w("Both sides train the same weights (SmolLM2-135M-Instruct's GGUF dequantised once by "
      "`ardpipe bench models --prepare` and loaded by transformers from that folder; MiniLM from "
      "the same safetensors) on the same token ids, with the same thread count, in three precisions:")
    w("")
    w("- **f32**: f32 throughout.")
    w("- **bf16 autocast, f32 base**: f32 weights under bf16 autocast (`torch.autocast(\"cpu\", "
      "dtype=torch.bfloat16)` on the peer, libtorch's autocast on ardpipe `--dtype bf16`): matmuls in bf16.")
    w("- **bf16 autocast, bf16 base**: the frozen base cast to bf16 once at load (the peer: "
      "`from_pretrained(..., dtype=torch.bfloat16)`; ardpipe: `--dtype bf16 --base bf16`, what a "
      "pipeline under bf16 precision does by default), the LoRA weights f32 (PEFT's "
      "`autocast_adapter_dtype=True` default; ardpipe's adapters are f32), the step under bf16 "
      "autocast: the peer's best usual CPU configuration. MiniLM's trained head is a copy of a base "
      "module, so it is bf16 on both sides here.")
    w("")
    w(f"- **SmolLM2**: causal LM loss on a 4 × 128 batch of Hamlet; LoRA r = {args.rank}, "
      f"lora_alpha = {LORA_SCALING * args.rank:g}, no dropout on `q_proj, k_proj, v_proj, o_proj` of all 30 "
      "layers. ardpipe computes the loss with its chunked LM-head cross-entropy (`Llama::lm_loss`, "
      "never the whole [b, t, vocab] logits); the peer with transformers' own loss over the logits.")
    w(f"- **MiniLM**: 16-class classification of a 32 × 64 batch of health tweets; LoRA r = {args.rank}, "
      f"lora_alpha = {LORA_SCALING * args.rank:g}, no dropout on `query, value` of all 6 layers; the head "
      "(`bert.pooler.dense` and `classifier`) trains too (PEFT `modules_to_save`).")
    w("- A timed step is forward + loss + backward + AdamW (lr 1e-3, weight decay 0.01) over the "
      "trainable tensors; gradients are zeroed outside the timing on both sides. The peer is "
      "`peft.get_peft_model(model, LoraConfig(...))` with `torch.optim.AdamW` (its CPU default, "
      "not fused); ardpipe is `ardpipe bench models --method lora`, which attaches its LoRA "
      "adapters and steps its AdamW (one fused `_fused_adamw_` call per group).")
    steps = args.steps or f"SmolLM2 {step_counts['smollm2']}, MiniLM {step_counts['minilm']}"
    w(f"- Each case is its own process: {args.warmup} warm-up step(s), then {steps} timed steps; "
      f"the process reports its median step and its peak RSS (ardpipe: VmHWM; peer: ru_maxrss), "
      "loading included. "
      f"The cases alternate within each of {args.rounds} round(s), in reverse order every other round; "
      "the tables show the median over rounds. Tokens/s = batch × tokens / step time.")
    w("")
    w(f"## ardpipe against transformers + peft (LoRA r = {args.rank})")
    w("")
    w("| model | batch | precision | ardpipe step | ardpipe tokens/s | ardpipe peak RSS | peer step | peer tokens/s | peer peak RSS | "
      f"tokens/s ardpipe/peer (≥ {SPEED_TARGET}) | RSS ardpipe/peer (≤ {RSS_TARGET}) | trainable (both) | trainable dtypes (ardpipe / peer) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    speed_ok, rss_ok, mismatch = [], [], []
    for model in models:
        for prec in precs:
            a = lambda f: med(model, prec, "lora", "ardpipe", f)  # noqa: E731
            p = lambda f: med(model, prec, "lora", "peer", f)  # noqa: E731
            sr = p("median_step_s") / a("median_step_s")
            rr = a("peak_rss_mb") / p("peak_rss_mb")
            speed_ok.append((model, prec, sr, sr >= SPEED_TARGET))
            rss_ok.append((model, prec, rr, rr <= RSS_TARGET))
            fa, fp = first(model, prec, "lora", "ardpipe"), first(model, prec, "lora", "peer")
            ta, tp = fa["trainable_params"], fp["trainable_params"]
            if ta != tp:
                mismatch.append(f"{model} {prec}: ardpipe {ta:,}, peer {tp:,}")
            b = fa["batch"]
            dts = f"{', '.join(fa.get('trainable_dtypes', []))} / {', '.join(fp.get('trainable_dtypes', []))}"
            w(f"| {model} | {b[0]}×{b[1]} | {PRECISIONS[prec]} | {a('median_step_s'):.3f} s | {a('tokens_per_s'):,.0f} | "
              f"{a('peak_rss_mb'):,.0f} MiB | {p('median_step_s'):.3f} s | {p('tokens_per_s'):,.0f} | {p('peak_rss_mb'):,.0f} MiB | "
              f"**{sr:.2f}×** {mark(sr >= SPEED_TARGET)} | **{rr:.2f}** {mark(rr <= RSS_TARGET)} | "
              f"{ta:,}{'' if ta == tp else f' / peer {tp:,}'} | {dts} |")
    w("")
    if mismatch:
        w("**Warning: the two sides train different numbers of parameters** (" + "; ".join(mismatch) + ").")
        w("")

    int8_rows = []
    if low_mem:
        w("## SmolLM2 with less memory (ardpipe only)")
        w("")
        w("ardpipe's LoRA r = 8 SmolLM2 step under bf16 autocast with the frozen base in bf16 (as above), "
          "and: the adaptable linears (q, k, v, o, gate, up, down of every layer) stored as int8 (one "
          "scale per output channel) or int4 (asymmetric, an f16 step and minimum per 32 input columns) and dequantised on the "
          "fly (the exact input gradient in backward, no dense copy kept); and/or layer checkpointing "
          "(`--checkpointing`: each decoder layer's activations recomputed in the backward pass). The "
          "RSS ratios compare with the peer's f32 and bf16-base LoRA processes above (the issue's "
          f"target: int8 base ≤ {INT8_RSS_TARGET}× the f32 peer's). The peer has no counterpart here: "
          "its venv holds no bitsandbytes-free CPU int8 training path (no `torchao`, no "
          "`optimum-quanto`, no `hqq`; torch's own `torch.ao.quantization.quantize_dynamic` int8 "
          "Linear gives its input no gradient and is not a module PEFT can wrap).")
        w("")
        w("| case | step | tokens/s | peak RSS | RSS / f32 peer's | RSS / bf16-base peer's | tokens/s / bf16-base peer's | "
          "tokens/s / ardpipe bf16 base | loss after the last step |")
        w("|---|---|---|---|---|---|---|---|---|")
        have_f32 = has("smollm2", "f32", "lora", "peer")
        pf32 = med("smollm2", "f32", "lora", "peer", "peak_rss_mb") if have_f32 else None
        pb_rss = med("smollm2", "bf16-base", "lora", "peer", "peak_rss_mb")
        pb_step = med("smollm2", "bf16-base", "lora", "peer", "median_step_s")
        ab_step = med("smollm2", "bf16-base", "lora", "ardpipe", "median_step_s")
        rows = [("lora", "bf16 base (as above)")] + [(k, LOW_MEMORY[k][0]) for k in low_mem]
        for key, label in rows:
            st = med("smollm2", "bf16-base", key, "ardpipe", "median_step_s")
            rss = med("smollm2", "bf16-base", key, "ardpipe", "peak_rss_mb")
            tps = med("smollm2", "bf16-base", key, "ardpipe", "tokens_per_s")
            loss = med("smollm2", "bf16-base", key, "ardpipe", "loss")
            if pf32 is not None:
                r32 = rss / pf32
                cell32 = f"**{r32:.2f}**"
                if key == "int8":
                    int8_rows.append(r32)
                    cell32 += f" {mark(r32 <= INT8_RSS_TARGET)} (≤ {INT8_RSS_TARGET})"
            else:
                cell32 = "– (no f32 run)"
            w(f"| {label} | {st:.3f} s | {tps:,.0f} | {rss:,.0f} MiB | {cell32} | {rss / pb_rss:.2f} | "
              f"{pb_step / st:.2f}× | {ab_step / st:.2f}× | {loss:.3f} |")
        w("")

    ard_rows = []
    if ard_precs:
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
          "AdamW's moments before the timed steps. Ratios are step times (lower is faster). f32 base "
          "in both precisions, as the rows of the first table that the peer matches.")
        w("")
        w("| model | precision | LoRA (same max rank) step | ARD-LoRA step | ARD/LoRA before compaction (≤ 1.10) | "
          "ARD-LoRA compacted step | ARD/LoRA after compaction (< 1) | ranks stored, before → after | "
          "trainable, before → after | mean effective rank at the end (3.0 at compaction) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for model in models:
            for prec in ard_precs:
                lm = med(model, prec, "lora_max", "ardpipe", "median_step_s")
                a0 = med(model, prec, "ard", "ardpipe", "median_step_s")
                a1 = med(model, prec, "ard_compacted", "ardpipe", "median_step_s")
                r0, r1 = a0 / lm, a1 / lm
                f0, f1 = first(model, prec, "ard", "ardpipe"), first(model, prec, "ard_compacted", "ardpipe")
                ard_rows.append((model, prec, r0, r1))
                w(f"| {model} | {PRECISIONS[prec]} | {lm:.3f} s | {a0:.3f} s | **{r0:.2f}×** {mark(r0 <= ARD_BEFORE_TARGET)} | "
                  f"{a1:.3f} s | **{r1:.2f}×** {mark(r1 < ARD_AFTER_TARGET)} | {f0['rank_total']:,} → {f1['rank_total']:,} | "
                  f"{f0['trainable_params']:,} → {f1['trainable_params']:,} | {f1['mean_effective_rank']:.2f} |")
        w("")

    if profiles:
        w("## Where a LoRA step's time goes (operator profile)")
        w("")
        w("One more process per side and case, with libtorch's operator profiler on over the same timed "
          "steps (Kineto on both sides: `ardpipe bench models --profile` and `torch.profiler` on the "
          "peer). Each operator's self time (its duration less its children's) is summed by group, in "
          "ms per step; zeroing the gradients and reading the loss are left out, as from the timings. "
          "*Between operators* is the profiled step less the time inside operators: the framework "
          "(Python, PEFT's module hooks on the peer; Rust and tch on ardpipe) and the dispatch between "
          "kernels. The profiler slows every operator call a little on both sides, so these steps are "
          "slower than the table's. *Kernel bound* is the peer's profiled step over ardpipe's matmul "
          "and attention time: the speed-up ardpipe would reach if everything but those kernels "
          "(which both sides call alike) cost nothing.")
        w("")
        for model in models:
            for prec in precs:
                a, p = profiles.get((model, prec, "ardpipe")), profiles.get((model, prec, "peer"))
                if not a or not p:
                    continue
                w(f"**{model}, {PRECISIONS[prec]}**")
                w("")
                w("| operator group | ardpipe ms/step | peer ms/step | peer − ardpipe |")
                w("|---|---|---|---|")
                for label, _ in OP_GROUPS:
                    x, y = a["groups"][label], p["groups"][label]
                    if x < 0.05 and y < 0.05:
                        continue
                    w(f"| {label} | {x:,.1f} | {y:,.1f} | {y - x:+,.1f} |")
                xa, xp = a["step_ms"] - a["inside_ms"], p["step_ms"] - p["inside_ms"]
                w(f"| between operators | {xa:,.1f} | {xp:,.1f} | {xp - xa:+,.1f} |")
                w(f"| **profiled step** | **{a['step_ms']:,.1f}** | **{p['step_ms']:,.1f}** | "
                  f"{p['step_ms'] - a['step_ms']:+,.1f} |")
                kern = a["groups"][OP_GROUPS[0][0]] + a["groups"][OP_GROUPS[1][0]]
                w("")
                w(f"Kernel bound: {p['step_ms'] / kern:.2f}× (matmuls and attention are "
                  f"{100 * kern / a['step_ms']:.0f}% of ardpipe's profiled step). Top operators by self time — "
                  "ardpipe: " + ", ".join(f"`{n}` {t:.1f}" for n, t in a["top"][:5])
                  + "; peer: " + ", ".join(f"`{n}` {t:.1f}" for n, t in p["top"][:5]) + " (ms/step).")
                w("")

    w("## Fraction of this machine's matmul peak")
    w("")
    w("Peak: `ardpipe bench matmul` — square n × n × n matmuls (n = 512, 1024, 2048, 3072) through "
      "the same libtorch at the same thread count, f32 operands or bf16 operands (what autocast "
      f"feeds the kernels), best time of repeated products over about {0.3 if args.quick else 1:g} s "
      "per size; the fastest size is the peak.")
    w("")
    w("| dtype | peak | per size (GFLOP/s) |")
    w("|---|---|---|")
    for d in peaks:
        sizes = ", ".join(f"{n}: {g:,.0f}" for n, g in peaks[d]["sizes"])
        w(f"| {d} | {peaks[d]['peak_gflops']:,.0f} GFLOP/s | {sizes} |")
    w("")
    w("Achieved = matmul FLOPs of one step / step time. FLOPs are counted from the shapes (2 per "
      "multiply-add; N = batch × tokens): each frozen linear 2·N·d_in·d_out forward and as much "
      "again backward (the input gradient); each adapter 2·N·(|A| + |B|) forward and twice that "
      "backward (|A|, |B| the stored sizes, so ARD-LoRA's block-diagonal B counts per head); "
      "attention 4·b·t²·d_q per layer forward and twice that backward; SmolLM2's tied LM head "
      "2·N·576·49152 forward and as much backward; MiniLM's pooler and classifier 3 × their "
      "forward. Norms, softmax, activations, dequantisation and the optimiser are not counted, nor "
      "is checkpointing's recomputed forward (the same useful work, so the same count). Both sides "
      f"do the same work, so the same count serves both. Target: bf16 steps ≥ {PEAK_TARGET:.0%} of the "
      "bf16 peak (marked on ardpipe's bf16 rows).")
    w("")
    w(f"| model | precision | case | GFLOP/step | ardpipe GFLOP/s | ardpipe % of peak (bf16: ≥ {PEAK_TARGET:.0%}) | peer GFLOP/s | peer % of peak |")
    w("|---|---|---|---|---|---|---|---|")
    names = {"lora": f"LoRA r = {args.rank}", "lora_max": "LoRA, same max rank as ARD", "ard": "ARD-LoRA",
             "ard_compacted": "ARD-LoRA compacted", **{k: f"LoRA r = {args.rank}, {v[0]}" for k, v in LOW_MEMORY.items()}}
    peak_rows = []
    for model in models:
        for prec in precs:
            dtype = compute_dtype(prec)
            peak = peaks[dtype]["peak_gflops"]
            for key in names:
                if not has(model, prec, key):
                    continue
                fl = first(model, prec, key, "ardpipe")["flops_per_step"] / 1e9
                ga = fl / med(model, prec, key, "ardpipe", "median_step_s")
                frac = ga / peak
                cell = f"{100 * frac:.0f}%"
                if dtype == "bf16":
                    peak_rows.append((model, prec, names[key], frac))
                    cell += f" {mark(frac >= PEAK_TARGET)}"
                peer_cells = "– | –"
                if has(model, prec, key, "peer"):
                    gp = fl / med(model, prec, key, "peer", "median_step_s")
                    peer_cells = f"{gp:,.0f} | {100 * gp / peak:.0f}%"
                w(f"| {model} | {PRECISIONS[prec]} | {names[key]} | {fl:,.1f} | {ga:,.0f} | {cell} | {peer_cells} |")
    w("")

    w("## Targets")
    w("")
    w("| target | result |")
    w("|---|---|")
    for model, prec, sr, ok in speed_ok:
        w(f"| ardpipe ≥ {SPEED_TARGET}× the peer's tokens/s, {model}, {PRECISIONS[prec]} | {sr:.2f}×: {mark(ok)} |")
    for model, prec, rr, ok in rss_ok:
        w(f"| ardpipe ≤ {RSS_TARGET}× the peer's peak RSS, {model}, {PRECISIONS[prec]} | {rr:.2f}: {mark(ok)} |")
    for r32 in int8_rows:
        w(f"| int8 base peak RSS ≤ {INT8_RSS_TARGET}× the f32 peer's, smollm2 | {r32:.2f}: {mark(r32 <= INT8_RSS_TARGET)} |")
    for model, prec, case, frac in peak_rows:
        w(f"| bf16 step ≥ {PEAK_TARGET:.0%} of the bf16 matmul peak, {model}, {PRECISIONS[prec]}, {case} | "
          f"{100 * frac:.0f}%: {mark(frac >= PEAK_TARGET)} |")
    for model, prec, r0, r1 in ard_rows:
        w(f"| ARD-LoRA ≤ 10% slower than LoRA before compaction, {model}, {PRECISIONS[prec]} | {r0:.2f}×: {mark(r0 <= ARD_BEFORE_TARGET)} |")
        w(f"| ARD-LoRA faster than LoRA after compaction, {model}, {PRECISIONS[prec]} | {r1:.2f}×: {mark(r1 < ARD_AFTER_TARGET)} |")
    w("")
    misses = []
    for model, prec, sr, ok in speed_ok:
        if not ok:
            misses.append(
                f"- Speed, {model}, {PRECISIONS[prec]}: ardpipe reaches {sr:.2f}× the peer's tokens/s, not {SPEED_TARGET}×"
                + (" — it is slower than the peer here." if sr < 1 else ".")
            )
    for model, prec, rr, ok in rss_ok:
        if not ok:
            misses.append(f"- Memory, {model}, {PRECISIONS[prec]}: ardpipe's peak RSS is {rr:.2f}× the peer's, above {RSS_TARGET}×.")
    for r32 in int8_rows:
        if r32 > INT8_RSS_TARGET:
            misses.append(f"- Memory, smollm2 int8 base: peak RSS {r32:.2f}× the f32 peer's, above {INT8_RSS_TARGET}×.")
    for model, prec, case, frac in peak_rows:
        if frac < PEAK_TARGET:
            misses.append(f"- Matmul peak, {model}, {PRECISIONS[prec]}, {case}: {100 * frac:.0f}% of the bf16 peak, "
                          f"below {PEAK_TARGET:.0%}.")
    for model, prec, r0, r1 in ard_rows:
        if r0 > ARD_BEFORE_TARGET:
            misses.append(f"- ARD-LoRA before compaction, {model}, {PRECISIONS[prec]}: {100 * (r0 - 1):.0f}% slower than "
                          "LoRA at the same maximum rank, more than 10%.")
        if r1 >= ARD_AFTER_TARGET:
            misses.append(f"- ARD-LoRA after compaction, {model}, {PRECISIONS[prec]}: {r1:.2f}× LoRA's step time, not faster.")
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
