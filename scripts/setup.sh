#!/usr/bin/env bash
# The README's first command: install libtorch, the example assets and the Python peer into the
# per-user cache (verified by sha256), build ardpipe, and run the quickstart pipeline end to end.
# One cargo profile (dev, with optimised dependencies) serves the binary, lints and tests, so
# libtorch's bindings compile once.
# Idempotent: a second run only checks what is there and rebuilds nothing that is current.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh --gpu      build against the CUDA libtorch (device = cuda); see README
#   scripts/setup.sh --no-peer  skip the Python peer (PEFT round-trip tests and benchmarks need it)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

need python3 "Install Python 3 with pip (Debian: apt-get install python3 python3-pip python3-venv)."
need cargo "Install the Rust toolchain from https://rustup.rs (rustup installs cargo)."
# The C++ bridge to libtorch's c10d and the C-plugin tests compile with the system's C/C++ compiler.
need cc "Install a C and C++ compiler (Debian: apt-get install build-essential)."
need c++ "Install a C++ compiler (Debian: apt-get install g++)."

phase "libtorch + assets + peer" python3 scripts/setup.py "$@"
phase "build" cargo build --workspace
phase "ardpipe doctor" ./target/debug/ardpipe doctor
phase "vqa model" scripts/vqa_model.sh
phase "quickstart" ./target/debug/ardpipe run pipelines/quickstart.ard
phase_summary
printf '\nardpipe is ready: ./target/debug/ardpipe --help\n'
