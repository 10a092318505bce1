#!/usr/bin/env bash
# API fuzzing: schemathesis against the OpenAPI document of a running `socbridge serve` filled
# from the emulators. Fails on any 5xx, any answer that breaks the document (schema, status
# code, content type, headers), and on the other checks schemathesis offers.
#   scripts/api-fuzz.sh [SECONDS]     time budget of the fuzzing phase (default 60)
# Installs schemathesis (pinned in scripts/requirements-api-fuzz.txt) into a virtualenv under
# the target dir; builds the debug binary; leaves a report in <target>/api-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

budget="${1:-60}"
target="$(socbridge_target_dir)"
venv="$target/tools/api-fuzz-venv"
out="$target/api-fuzz"
mkdir -p "$out"

if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s scripts/requirements-api-fuzz.txt "$venv/requirements.txt"; then
    echo "== installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-api-fuzz.txt
    cp scripts/requirements-api-fuzz.txt "$venv/requirements.txt"
fi

echo "== building socbridge"
# The same build as `cargo test --workspace` (its feature set), so nothing is built twice.
cargo test --quiet --workspace --locked --no-run 2>/dev/null || cargo test --workspace --locked --no-run
bin="$target/debug/socbridge"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

export SOCBRIDGE_DATA_DIR="$work/data"
unset SOCBRIDGE_CONFIG SOCBRIDGE_DATABASE_URL SOCBRIDGE_OUTPUT
"$bin" sim --tenants 2 --write-config "$work/socbridge.toml" --endpoints-file "$work/endpoints.json" \
    >"$out/sim.log" 2>&1 &
pids+=($!)
wait_for_file "$work/endpoints.json" 60
"$bin" --config "$work/socbridge.toml" serve --until-idle >"$out/fill.log" 2>&1
admin="$("$bin" token create --role admin --label api-fuzz)"
tenant="$("$bin" --output json tenant list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')"
analyst="$("$bin" token create --role analyst --tenant "$tenant" --label api-fuzz)"

port="$(free_port)"
base="http://127.0.0.1:$port"
"$bin" --config "$work/socbridge.toml" serve --listen "127.0.0.1:$port" >"$out/serve.log" 2>&1 &
pids+=($!)
wait_for_url "$base/readyz" 60

st() {
    "$venv/bin/schemathesis" --config-file scripts/api-fuzz.toml run "$base/api/v1/openapi.json" --url "$base" \
        --checks all --workers 2 --request-timeout 30 --suppress-health-check all \
        --warnings off "$@"
}

status=0
# Revoking tokens is run last and alone: a generated id may be the token the run signs with.
echo "== schemathesis as an admin (${budget}s)"
st --header "Authorization: Bearer $admin" --max-time "$budget" \
    --exclude-path '/api/v1/tokens/{id}' --report junit --report-dir "$out/admin" || status=1
echo "== schemathesis as an analyst of $tenant"
st --header "Authorization: Bearer $analyst" --max-time "$((budget / 2 + 1))" \
    --exclude-path '/api/v1/tokens/{id}' --report junit --report-dir "$out/analyst" || status=1
echo "== schemathesis: revoking tokens"
st --header "Authorization: Bearer $admin" --max-time 20 \
    --include-path '/api/v1/tokens/{id}' --report junit --report-dir "$out/revoke" || status=1

if grep -qE '" 5[0-9][0-9] |status=5[0-9][0-9]|panicked' "$out/serve.log"; then
    echo "error: serve logged a server error or a panic (see $out/serve.log)" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "API fuzzing FAILED (reports in $out)" >&2
else
    echo "API fuzzing passed: no 5xx, every answer matches the OpenAPI document (reports in $out)"
fi
exit "$status"
