#!/usr/bin/env bash
# Browser test of the web console, from a fresh machine:
#   - Debian's chromium (installed with apt-get when absent; never a Playwright download),
#   - playwright-core from e2e/package-lock.json (npm ci),
#   - the socbridge binary (debug build; honours CARGO_TARGET_DIR),
#   - `socbridge sim` (the emulators, ServiceNow included) and `socbridge serve` on free ports
#     with a fresh data dir, an admin token and an analyst token of one tenant,
#   - e2e/console.test.mjs, which drives the console and saves screenshots in
#     $SCREENSHOT_DIR (default target/screenshots).
# Everything it starts is stopped on exit, whatever happens. Exit 0 only when every step passed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/lib.sh
target="$(socbridge_target_dir)"
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$root/target/screenshots}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nbrowser-test: %s\n' "$*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/socbridge-browser-test.XXXXXX")"
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Ten seconds to stop cleanly, then SIGKILL.
    local deadline=$((SECONDS + 10))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ]; then
        for log in "$work"/*.log; do
            [ -f "$log" ] || continue
            printf '\n--- last lines of %s\n' "$(basename "$log")" >&2
            tail -n 30 "$log" >&2 || true
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------ tools
if [ ! -x "$CHROMIUM" ]; then
    say "installing Debian's chromium"
    [ "$(id -u)" -eq 0 ] || fail "$CHROMIUM is missing and installing it needs root (apt-get install chromium)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x "$CHROMIUM" ] || fail "chromium was installed but $CHROMIUM is not there"
fi
command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm is missing (apt-get install npm)"

say "npm ci (e2e)"
# No browser download, whatever the package might try.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

say "building socbridge"
# The same build as `cargo test --workspace` (its feature set), so nothing is built twice.
cargo test --quiet --workspace --locked --no-run 2>/dev/null || cargo test --workspace --locked --no-run
bin="$target/debug/socbridge"
[ -x "$bin" ] || fail "no binary at $bin"

# ------------------------------------------------------------------------------ services
# Waits until `probe` (a command) succeeds, for at most $1 seconds.
wait_for() {
    local seconds="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within ${seconds} s"
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || fail "$what: a process it needs has exited"
        done
        sleep 0.2
    done
}
http_ok() {
    node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
}
# A clean environment for socbridge: nothing of the developer's SOCBRIDGE_* settings.
for var in $(env | sed -n 's/^\(SOCBRIDGE_[A-Z_]*\)=.*/\1/p'); do
    unset "$var"
done
unset RUST_LOG || true

data="$work/data"
config="$work/socbridge.toml"
say "starting the emulators (socbridge sim)"
"$bin" --data-dir "$data" sim --listen 127.0.0.1:0 --tenants 3 --seed 11 --rate 12 \
    --initial-events 60 --write-config "$config" >"$work/sim.log" 2>&1 &
pids+=($!)
wait_for 60 "the emulators write their config" test -s "$config"
# Ticketing on: the config has the ServiceNow emulator's section written commented out.
sed -i -E '/^# \[servicenow\]/,/^# webhook_header/ s/^# //' "$config"
grep -q '^\[servicenow\]' "$config" || fail "no [servicenow] section to turn on in $config"

port="$(free_port)"
base="http://127.0.0.1:$port"
say "starting socbridge serve on $base"
"$bin" --data-dir "$data" --config "$config" serve --listen "127.0.0.1:$port" \
    >"$work/serve.log" 2>&1 &
pids+=($!)
wait_for 90 "serve answers /readyz" http_ok "$base/readyz"

token() {
    "$bin" --data-dir "$data" --output json token create "$@" |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))'
}
tenant="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$config" | head -n 1)"
[ -n "$tenant" ] || fail "no tenant in $config"
wait_for 60 "serve has created tenant $tenant" "$bin" --data-dir "$data" tenant show "$tenant"
ADMIN_TOKEN="$(token --role admin --label browser-test-admin)"
ANALYST_TOKEN="$(token --role analyst --tenant "$tenant" --label browser-test-analyst)"
export BASE_URL="$base" ADMIN_TOKEN ANALYST_TOKEN ANALYST_TENANT="$tenant"

# ------------------------------------------------------------------------------ the test
say "browser test (screenshots in $SCREENSHOT_DIR)"
mkdir -p "$SCREENSHOT_DIR"
rm -f "$SCREENSHOT_DIR"/*.png
started=$SECONDS
node e2e/console.test.mjs
echo "browser test took $((SECONDS - started)) s"
