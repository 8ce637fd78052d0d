#!/usr/bin/env bash
# Replication benchmarks, each against a baseline measured in the same run:
#   1. catch-up of an empty standby from a journal of about 1 GiB over loopback, against a plain
#      copy of the segment files (chatlog bench replication);
#   2. acknowledged durable sends with --sync-replicas 1 (a standby on the same machine) against
#      the same leader without synchronous replicas (chatlog bench load, 100 senders).
#
#   tools/bench-replication.sh            # the full run (a few minutes)
#   tools/bench-replication.sh --quick    # small sizes, to check the script works
#
# Prints each run's summary line and its JSON line; the docs/performance.md quotes them.
# Needs the release build (swift build -c release).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
CHATLOG=${CHATLOG:-.build/release/chatlog}
source tools/bench-servers.sh

if [[ $QUICK == 1 ]]; then
    BYTES=$((32 << 20)); SENDS=100
else
    BYTES=$((1 << 30)); SENDS=2000
fi

echo "== catch-up of an empty standby"
"$CHATLOG" bench replication --bytes "$BYTES" --directory "$WORK/catch-up"
rm -rf "$WORK/catch-up"

load() {
    local label=$1 url=$2 pid=$3; shift 3
    "$CHATLOG" bench load --url "$url" --server-pid "$pid" --label "$label" \
        --rooms 100 --clients-per-room 1 --senders 100 --messages "$SENDS" "$@" | grep -v "^connecting\|^all joined"
}
head -c 32 /dev/urandom | base64 > "$WORK/secret"
COMMON=(--dev --log-level warning --events-per-second 1000000 --events-burst 1000000 --connections-max 20000)

for window in 8 16; do
    echo "== acked durable sends, 100 senders, $window in flight each: alone, then with --sync-replicas 1"
    start alone "$CHATLOG" serve --journal "$WORK/alone-$window" --port 0 "${COMMON[@]}"
    load "unreplicated-w$window" "$URL" "$PID" --window "$window"; stop "$PID"
    start leader "$CHATLOG" serve --journal "$WORK/leader-$window" --port 0 "${COMMON[@]}" \
        --replication-secret-file "$WORK/secret" --sync-replicas 1
    LEADER_URL=$URL; LEADER_PID=$PID
    start standby "$CHATLOG" serve --journal "$WORK/standby-$window" --port 0 "${COMMON[@]}" \
        --replication-secret-file "$WORK/secret" --standby-of "$LEADER_URL"
    STANDBY_PID=$PID
    load "sync-replicas-1-w$window" "$LEADER_URL" "$LEADER_PID" --window "$window"
    stop "$STANDBY_PID"; stop "$LEADER_PID"
done
