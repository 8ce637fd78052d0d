#!/usr/bin/env bash
# Two builds of chatlog against each other, alternated in one run so that both see the same
# machine: the check that a change costs nothing (docs/performance.md, "Margins").
#
#   tools/bench-ab.sh NEW-CHATLOG OLD-CHATLOG [ROUNDS]     (3 rounds by default)
#
# Each round runs, for each binary in turn (new first in odd rounds, old first in even ones),
# on a fresh journal: deliveries (1 room x 100 clients, 10 senders x 500 messages, 8 in
# flight) and acknowledged durable sends (100 senders x 2,000, 16 in flight). Prints each
# run's summary line, then per build the range and mean of deliveries/s, acked sends/s and
# server CPU per acked send. Needs two release builds (e.g. `git worktree add /tmp/old REV`
# and `swift build -c release` in both) and one of them for the load generator (NEW's).
set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${1:?usage: tools/bench-ab.sh NEW-CHATLOG OLD-CHATLOG [ROUNDS]}
OLD=${2:?usage: tools/bench-ab.sh NEW-CHATLOG OLD-CHATLOG [ROUNDS]}
ROUNDS=${3:-3}
source tools/bench-servers.sh
RESULTS="$WORK/results.jsonl"

one() { # LABEL BINARY
    local label=$1 binary=$2
    start "$label" "$binary" serve --journal "$WORK/journal-$label-$RANDOM" --port 0 --dev --log-level warning \
        --events-per-second 1000000 --events-burst 1000000 --connections-max 20000
    for scenario in deliveries sends; do
        local args=(--rooms 1 --clients-per-room 100 --senders 10 --messages 500 --window 8)
        [[ $scenario == sends ]] && args=(--rooms 100 --clients-per-room 1 --senders 100 --messages 2000 --window 16)
        "$NEW" bench load --url "$URL" --server-pid "$PID" --label "$label-$scenario" "${args[@]}" \
            | grep -v "^connecting\|^all joined" | tee -a "$RESULTS" | grep -v "^{"
    done
    stop "$PID"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round"
    if (( round % 2 == 1 )); then one new "$NEW"; one old "$OLD"; else one old "$OLD"; one new "$NEW"; fi
done

python3 - "$RESULTS" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def stat(label, value):
    values = [value(r) for r in runs if r.get("label") == label]
    values = [v for v in values if v is not None]
    if not values: return "n/a"
    return f"{min(values):,.1f}-{max(values):,.1f} (mean {sum(values) / len(values):,.1f})"
def cpu_per_ack(r):
    return r["server_cpu_s"] / r["acked_sends"] * 1e6 if r.get("server_cpu_s") and r["acked_sends"] else None
def cpu_per_delivery(r):
    return r["server_cpu_s"] / r["deliveries"] * 1e6 if r.get("server_cpu_s") and r["deliveries"] else None
for build in ("new", "old"):
    print(f"{build}: deliveries/s {stat(build + '-deliveries', lambda r: r['deliveries_per_s'])}, "
          f"server CPU per delivery (us) {stat(build + '-deliveries', cpu_per_delivery)}; "
          f"acked sends/s {stat(build + '-sends', lambda r: r['acked_sends_per_s'])}, "
          f"server CPU per acked send (us) {stat(build + '-sends', cpu_per_ack)}")
PY
