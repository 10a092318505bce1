#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ for N seconds each (default 60):
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]        (no TARGET: every target)
# Works with the stable toolchain: cargo-fuzz builds with -Z flags (sanitizer, coverage),
# which RUSTC_BOOTSTRAP=1 allows on a stable rustc; a nightly rustc is used as it is. Installs
# cargo-fuzz if absent. Each target starts from fuzz/seeds/<target>/ (committed) and grows
# fuzz/corpus/<target>/ (not committed). A crash leaves its input under
# fuzz/artifacts/<target>/; once fixed, copy it into fuzz/regressions/<target>/ so that
# `cargo test -p socbridge-fuzz-checks` replays it. Ends with runs per target, and fails if
# any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if ! rustc -V | grep -q -- -nightly; then
    export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build
logs="$(mktemp -d)"
summary=()
failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    extra=()
    if [ -d "fuzz/seeds/$target" ]; then
        extra+=("fuzz/seeds/$target")
    fi
    flags=(-max_total_time="$secs" -timeout=10)
    if [ -f "fuzz/$target.dict" ]; then
        flags+=(-dict="fuzz/$target.dict")
    fi
    echo "== fuzz $target for ${secs}s"
    if cargo fuzz run "$target" "$corpus" "${extra[@]}" -- "${flags[@]}" 2>&1 | tee "$logs/$target.log"; then
        done_line="$(grep -E '^Done [0-9]+ runs' "$logs/$target.log" | tail -n 1 || true)"
        summary+=("$target: ${done_line:-no run count}")
    else
        summary+=("$target: CRASHED (input under fuzz/artifacts/$target/)")
        failed+=("$target")
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
rm -rf "$logs"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
