#!/usr/bin/env bash
# The project's test command (see README): installs what the tests need, then runs the suite.
# It builds into cargo's usual target folder (./target, or $CARGO_TARGET_DIR when set), the one
# `cargo run --release` uses, so the README's two commands share one build. The tests never
# depend on anything outside this checkout that this script does not install.
set -euo pipefail
cd "$(dirname "$0")"
# Tests that cannot run here skip loudly and are listed at the end (a skip is not a pass); what
# this script managed to install is required, so a test needing it fails instead of skipping.
TINYNAS_SKIP_LOG="$(mktemp)"
export TINYNAS_SKIP_LOG
required=()
report_skips() {
    if [ -s "$TINYNAS_SKIP_LOG" ]; then
        echo "test.sh: SKIPPED, not counted as passed:" >&2
        sort -u "$TINYNAS_SKIP_LOG" | sed 's/^/  /' >&2
    fi
    rm -f "$TINYNAS_SKIP_LOG"
}
trap report_skips EXIT
# LiteRT (the TFLite interpreter) for tests/export.rs, installed once.
if python3 -c "import ai_edge_litert, numpy" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check ai-edge-litert numpy; then
    required+=(litert)
else
    echo "test.sh: could not install ai-edge-litert; tests/export.rs will skip the LiteRT comparison" >&2
fi
# PyYAML, which tests/launch_files.rs parses the Kubernetes manifests with.
if python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml; then
    required+=(yaml)
else
    echo "test.sh: could not install PyYAML; tests/launch_files.rs will skip the manifest checks" >&2
fi
# The Arm cross compiler and QEMU for tests/codegen.rs, tests/latency.rs and the codegen unit
# tests (Debian packages; qemu-system-arm from bookworm-backports).
if ./scripts/install-mcu-tools.sh; then
    required+=(mcu)
else
    echo "test.sh: could not install the Arm toolchain / QEMU; the Cortex-M tests will skip" >&2
fi
# Open MPI and libclang for the data-parallel tests (tests/mpi.rs, the `mpi` feature).
mpi=0
if ./scripts/install-mpi.sh; then
    required+=(mpi)
    mpi=1
else
    echo "test.sh: could not install Open MPI; tests/mpi.rs will not run" >&2
fi
TINYNAS_REQUIRE="$(IFS=,; echo "${required[*]}")"
export TINYNAS_REQUIRE
# The `mpi` feature's tests first, so the default build below is the one target/release/nas
# holds afterwards (the README's `cargo run --release` then has nothing to rebuild).
if [ "$mpi" = 1 ]; then
    cargo test --release --features mpi --test mpi
else
    echo "tests/mpi.rs: Open MPI could not be installed (scripts/install-mpi.sh)" >>"$TINYNAS_SKIP_LOG"
fi
# Release profile only: one build of burn serves the tests, the benchmarks and the binary.
cargo build --release --all-targets
# The library's unit tests one at a time: burn 0.22's autodiff lets a backward() on one thread
# free graph steps another thread is still using (tracel-ai/burn#5573), and several unit tests
# compare gradients. The binaries never run two backward passes at once.
cargo test --release --lib -- --test-threads=1
# Every other target (tests/mpi.rs needs --features mpi: above). No --benches: the project has
# no bench target, and it would run the library's unit tests again, in parallel.
targets=()
for f in tests/*.rs; do
    name="$(basename "$f" .rs)"
    [ "$name" = mpi ] || targets+=(--test "$name")
done
cargo test --release --bins "${targets[@]}" --examples
cargo test --release --doc
# The GPU backends must keep compiling (no GPU is needed to check them). The cuda feature is not
# checked: burn's CUDA stack downloads its LLVM toolchain at build time (see README).
cargo check --release --features vulkan,wgpu --lib --bins
