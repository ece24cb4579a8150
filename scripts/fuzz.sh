#!/usr/bin/env bash
# Fuzzing: each cargo-fuzz target (fuzz/fuzz_targets: amounts, bearer headers, cursors, the export
# manifest, webhook signatures) runs for FUZZ_SECONDS (default 60) with libFuzzer and
# AddressSanitizer; a panic or a crash stops it with the input that caused it (fuzz/artifacts/).
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if missing.
#
#   bash scripts/fuzz.sh                  # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh amount cursor
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(amount bearer cursor manifest webhook_signature)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

for target in "${TARGETS[@]}"; do
    echo "== fuzz $target (${SECONDS_EACH} s)"
    mkdir -p "fuzz/corpus/$target"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -max_len=4096 -print_final_stats=1 2>&1 | tail -n 20
done
echo "== every target ran ${SECONDS_EACH} s without a crash"
