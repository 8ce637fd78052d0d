#!/usr/bin/env bash
# chatlog against the stack it replaces, with one load generator, in one run:
#   chatlog serve (fsync on every commit), the reference python-socketio server relaying only,
#   and the reference server saving each message to SQLite first (tools/reference-server/).
# Scenarios: 1 room x 100 clients, 10 rooms x 20 clients, 1 room x 1,000 clients; then, for
# chatlog alone: acked durable sends from 100 senders, 10,000 idle connections, and a resume
# 100,000 messages behind.
#
#   tools/bench-load.sh            # the full run (a few minutes)
#   tools/bench-load.sh --quick    # small counts, to check the script works
#
# Prints each run's summary line and its JSON line; the docs/performance.md quotes
# them. Needs the release build and the .venv of `make test` (tools/ensure-deps.sh --python).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
CHATLOG=${CHATLOG:-.build/release/chatlog}
source tools/bench-servers.sh
PYTHON=${PYTHON:-.venv/bin/python}

if [[ $QUICK == 1 ]]; then
    MESSAGES=50; MESSAGES_1000=5; SENDS=200; IDLE=500; RESUME=2000
else
    MESSAGES=500; MESSAGES_1000=50; SENDS=2000; IDLE=10000; RESUME=100000
fi


# load LABEL URL PID ARGS...: one run of the generator.
load() {
    local label=$1 url=$2 pid=$3; shift 3
    "$CHATLOG" bench load --url "$url" --server-pid "$pid" --label "$label" "$@" | grep -v "^connecting\|^all joined"
}

scenario() {
    local name=$1; shift
    echo "== $name"
    start chatlog "$CHATLOG" serve --journal "$WORK/journal-$name" --port 0 --dev --log-level warning \
        --events-per-second 1000000 --events-burst 1000000 --connections-max 20000
    load chatlog "$URL" "$PID" "$@"; stop "$PID"
    start reference "$PYTHON" tools/reference-server/server.py --port 0
    load reference-relay "$URL" "$PID" "$@"; stop "$PID"
    start reference-sqlite "$PYTHON" tools/reference-server/server.py --port 0 --sqlite "$WORK/reference-$name.db"
    load reference-sqlite "$URL" "$PID" "$@"; stop "$PID"
}

scenario 1x100 --rooms 1 --clients-per-room 100 --senders 10 --messages "$MESSAGES" --window 8
scenario 10x20 --rooms 10 --clients-per-room 20 --senders 20 --messages "$MESSAGES" --window 8
scenario 1x1000 --rooms 1 --clients-per-room 1000 --senders 10 --messages "$MESSAGES_1000" --window 8

echo "== acked durable sends: 100 senders, 1, 8 and 16 in flight each"
start chatlog "$CHATLOG" serve --journal "$WORK/journal-sends" --port 0 --dev --log-level warning \
    --events-per-second 1000000 --events-burst 1000000 --connections-max 20000
load chatlog-sends "$URL" "$PID" --rooms 100 --clients-per-room 1 --senders 100 --messages "$SENDS" --window 1
load chatlog-sends-window8 "$URL" "$PID" --rooms 100 --clients-per-room 1 --senders 100 --messages "$SENDS" --window 8
load chatlog-sends-window16 "$URL" "$PID" --rooms 100 --clients-per-room 1 --senders 100 --messages "$SENDS" --window 16
echo "== resume and idle connections"
load chatlog-resume "$URL" "$PID" --messages 0 --resume-events "$RESUME"
load chatlog-idle-transport "$URL" "$PID" --messages 0 --idle-connections "$IDLE" --idle-without-rooms
stop "$PID"
start chatlog "$CHATLOG" serve --journal "$WORK/journal-idle" --port 0 --dev --log-level warning --connections-max 20000
load chatlog-idle "$URL" "$PID" --messages 0 --idle-connections "$IDLE"
stop "$PID"
