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

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds, or fails
# naming WHAT after SECONDS.
wait_until() {
    local secs="$1" what="$2" i=0
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt $((secs * 10)) ]; then
            echo "error: $what within ${secs}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# wait_for_url URL SECONDS: until URL answers 2xx.
wait_for_url() {
    wait_until "$2" "$1 did not answer" curl -fsS -o /dev/null "$1"
}

# wait_for_file PATH SECONDS: until PATH exists and is not empty.
wait_for_file() {
    wait_until "$2" "$1 was not written" test -s "$1"
}
