#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then runs the suite.
# A warm cargo target directory is reused when present (CARGO_TARGET_DIR, default
# ~/.cache/tinynas-target); the tests never depend on anything else outside this checkout.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinynas-target}"
# Release profile only: one build of burn serves the tests, the benchmarks and the binary.
cargo build --release --all-targets
cargo test --release --all-targets
cargo test --release --doc
