#!/usr/bin/env bash
# The README's second command: the whole test suite — formatting, lints, unit, golden (real
# models), end-to-end CLI and peer round-trip tests. Needs scripts/setup.sh to have run once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need cargo "Install the Rust toolchain from https://rustup.rs."
if [ ! -e .ardpipe/libtorch/lib/libtorch_cpu.so ] || [ ! -e .ardpipe/assets ]; then
    echo "error: libtorch or the example assets are not set up in this checkout." >&2
    echo "  fix: run scripts/setup.sh first (it reuses the per-user cache, so it is quick if done before)" >&2
    exit 3
fi

# The same profile as scripts/setup.sh, so nothing compiles twice.
phase "cargo fmt --check" cargo fmt --all --check
phase "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# --no-fail-fast: one red test binary must not hide what the others would say.
phase "cargo test" cargo test --workspace --no-fail-fast
phase_summary
