#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for N seconds each (default 60): ./scripts/fuzz.sh [N]
# Needs a nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz if absent.
# A crash leaves its input under fuzz/artifacts/<target>/ and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

for target in $(cargo +nightly fuzz list); do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    extra=()
    if [ -d "fuzz/seeds/$target" ]; then
        extra+=("fuzz/seeds/$target")
    fi
    flags=(-max_total_time="$secs")
    if [ -f "fuzz/$target.dict" ]; then
        flags+=(-dict="fuzz/$target.dict")
    fi
    echo "== fuzz $target for ${secs}s"
    cargo +nightly fuzz run "$target" "$corpus" "${extra[@]}" -- "${flags[@]}"
done
