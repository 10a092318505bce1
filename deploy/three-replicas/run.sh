#!/usr/bin/env bash
# Three `socbridge serve` replicas on one PostgreSQL database, polling the built-in vendor
# emulators (`socbridge sim`), on one machine. See README.md beside this script.
#
#   deploy/three-replicas/run.sh                 # until Ctrl-C
#   DATABASE_URL=postgres://user@host:5432/db deploy/three-replicas/run.sh
#
# Environment:
#   DATABASE_URL   the shared database (default postgres://postgres@127.0.0.1:5432/socbridge);
#                  it must exist. Tables go into a schema of their own (SCHEMA).
#   SCHEMA         the schema the replicas share (default socbridge_three; created if missing,
#                  left in place at the end).
#   SOCBRIDGE      the binary (default: target/release/socbridge, else socbridge on PATH).
#   TENANTS        emulated tenants (default 5), each with a Secure Endpoint source.
#   BASE_PORT      replica i listens on BASE_PORT+i (default 18080: 18081, 18082, 18083).
#   WORK           where configs, data dirs and logs go (default: a new temp dir).
#   SOCBRIDGE_MASTER_KEY  the master key all replicas share (default: a fresh random one).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/socbridge}"
schema="${SCHEMA:-socbridge_three}"
tenants="${TENANTS:-5}"
base_port="${BASE_PORT:-18080}"
work="${WORK:-$(mktemp -d -t socbridge-three.XXXXXX)}"

if [[ -n "${SOCBRIDGE:-}" ]]; then
    bin="$SOCBRIDGE"
elif [[ -x "$root/target/release/socbridge" ]]; then
    bin="$root/target/release/socbridge"
elif command -v socbridge >/dev/null; then
    bin="$(command -v socbridge)"
else
    echo "no socbridge binary: run 'cargo build --release' or set SOCBRIDGE=/path/to/socbridge" >&2
    exit 2
fi

if ! [[ "$schema" =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
    echo "SCHEMA must be lowercase letters, digits and _ (got '$schema')" >&2
    exit 2
fi

# Every replica's connections start in the schema (libpq's `options`, which sqlx reads too).
case "$url" in
    *\?*) shared_url="$url&options=-c%20search_path%3D$schema" ;;
    *) shared_url="$url?options=-c%20search_path%3D$schema" ;;
esac

if command -v psql >/dev/null; then
    if ! psql "$url" -qAt -c "CREATE SCHEMA IF NOT EXISTS \"$schema\"" >/dev/null; then
        echo "cannot reach $url (create the database first: createdb socbridge)" >&2
        exit 1
    fi
else
    echo "psql not found: make sure schema $schema exists in $url" >&2
fi

key="${SOCBRIDGE_MASTER_KEY:-$(head -c 32 /dev/urandom | base64)}"
mkdir -p "$work"
pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping (SIGTERM: each replica finishes what it is doing)..."
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    echo "logs, config and endpoints are in $work"
}
trap stop INT TERM EXIT

# The emulators: every vendor on free ports, a config pointing at them, secrets beside it.
"$bin" --log warn sim --tenants "$tenants" --rate 30 \
    --write-config "$work/socbridge.toml" --endpoints-file "$work/endpoints.json" \
    >"$work/sim.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
    [[ -s "$work/endpoints.json" ]] && break
    sleep 0.1
done
if ! [[ -s "$work/endpoints.json" ]]; then
    echo "the emulators did not start; see $work/sim.log" >&2
    exit 1
fi
control="$(sed -n 's/^ *"control": *"\(.*\)",*$/\1/p' "$work/endpoints.json" | head -n1)"

# The source secrets the config names (api_key_env = ...), for every replica.
set -a
# shellcheck disable=SC1091
. "$work/socbridge.env"
set +a

# One after the other, each once ready, so that their first application of the config and
# the migrations do not all start at the same instant (either would be safe, but the logs read
# better).
for i in 1 2 3; do
    port=$((base_port + i))
    SOCBRIDGE_MASTER_KEY="$key" \
    SOCBRIDGE_DATABASE_URL="$shared_url" \
        "$bin" --config "$work/socbridge.toml" --data-dir "$work/replica-$i" \
        serve --listen "127.0.0.1:$port" >"$work/replica-$i.log" 2>&1 &
    pids+=("$!")
    ready=""
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            ready=yes
            break
        fi
        sleep 0.1
    done
    if [[ -z "$ready" ]]; then
        echo "replica $i never became ready; see $work/replica-$i.log" >&2
        exit 1
    fi
    echo "replica $i: http://127.0.0.1:$port (pid ${pids[-1]}, log: $work/replica-$i.log)"
done

cat <<EOF

Three replicas share $url (schema $schema); the emulators' control API is $control.

  # who runs, which replica holds which job, how far behind each source is:
  SOCBRIDGE_DATABASE_URL='$shared_url' $bin status
  # polls of one source that overlapped (two pollers at once), per vendor:
  curl -s $control/counters | jq '{secure_endpoint: .secure_endpoint.polls, umbrella: .umbrella.polls, symantec_mss: .symantec_mss.polls}'
  # a replica's metrics:
  curl -s http://127.0.0.1:$((base_port + 1))/metrics | grep ^socbridge_polls_total

Stop one replica (kill -TERM <pid>) and watch its jobs move to the others. Ctrl-C stops all.
Replica pids: ${pids[*]:1}
EOF

wait
