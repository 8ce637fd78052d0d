# Sourced by the benchmark scripts (from the repository's root): a scratch directory $WORK,
# removed on exit with every server started, and starting and stopping servers in it.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# start NAME COMMAND...: starts a server that prints "listening on URL"; sets URL and PID.
# Waits START_SECONDS (10 by default) for it.
start() {
    local name=$1; shift
    "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 1 $(( ${START_SECONDS:-10} * 10 ))); do
        if grep -q "listening on" "$WORK/$name.out" 2>/dev/null; then
            URL=$(grep -m1 "listening on" "$WORK/$name.out" | awk '{print $3}')
            return
        fi
        sleep 0.1
    done
    echo "$name did not start:"; cat "$WORK/$name.err"; exit 1
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
