# Shared by the scripts that drive a real `socbridge serve` against the emulators
# (browser test, API fuzzing): sourced, not run.

# The target dir cargo builds into.
socbridge_target_dir() {
    if [ -n "${CARGO_TARGET_DIR:-}" ]; then
        echo "$CARGO_TARGET_DIR"
    else
        cargo metadata --format-version 1 --no-deps 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
    fi
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for_url URL SECONDS: polls until URL answers 2xx, or fails naming it.
wait_for_url() {
    local url="$1" secs="$2" i=0
    while ! curl -fsS -o /dev/null "$url" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt $((secs * 10)) ]; then
            echo "error: $url did not answer within ${secs}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# wait_for_file PATH SECONDS
wait_for_file() {
    local path="$1" secs="$2" i=0
    while [ ! -s "$path" ]; do
        i=$((i + 1))
        if [ "$i" -gt $((secs * 10)) ]; then
            echo "error: $path was not written within ${secs}s" >&2
            return 1
        fi
        sleep 0.1
    done
}
