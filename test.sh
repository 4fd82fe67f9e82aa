#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then runs the suite.
# A warm cargo target directory is reused when present (CARGO_TARGET_DIR, default
# ~/.cache/tinynas-target); the tests never depend on anything else outside this checkout.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinynas-target}"
# LiteRT (the TFLite interpreter) for tests/export.rs, installed once; without it that test skips
# its LiteRT comparison loudly.
python3 -c "import ai_edge_litert, numpy" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check ai-edge-litert numpy ||
    echo "test.sh: could not install ai-edge-litert; tests/export.rs will skip the LiteRT comparison" >&2
# The Arm cross compiler and QEMU for tests/codegen.rs, tests/latency.rs and the codegen unit
# tests (Debian packages; qemu-system-arm from bookworm-backports); without them those tests skip
# loudly.
./scripts/install-mcu-tools.sh ||
    echo "test.sh: could not install the Arm toolchain / QEMU; the Cortex-M tests will skip" >&2
# Release profile only: one build of burn serves the tests, the benchmarks and the binary.
cargo build --release --all-targets
cargo test --release --all-targets
cargo test --release --doc
# The GPU backends must keep compiling (no GPU is needed to check them). The cuda feature is not
# checked: burn's CUDA stack downloads its LLVM toolchain at build time (see README).
cargo check --release --features vulkan,wgpu --lib --bins
