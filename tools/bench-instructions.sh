#!/usr/bin/env bash
# Instructions the server executes per acknowledged send and per delivery, counted by valgrind's
# callgrind: figures that do not move with the machine's noise, to set beside the timings of
# `tools/bench-ab.sh` (docs/performance.md, "Instructions per send and per delivery").
#
#   tools/bench-instructions.sh NEW-CHATLOG [OLD-CHATLOG]     (release builds)
#   tools/bench-instructions.sh --profile sends|deliveries CHATLOG
#       where one more send (or delivery) spends them: N against 3N messages, per function,
#       its own instructions (self) and the project's functions with what they call
#       (inclusive; async functions resumed by others count their callers' work too).
#   ROUNDS=3 MESSAGES=40 (the defaults): rounds per build, alternated, reported as medians;
#   messages per sender of the smaller run.
#
# For each build and scenario, the server runs twice under callgrind, the load generator (NEW's,
# not under valgrind) sending N and then 2N messages; the difference between the two runs' totals,
# over the difference in sends (or deliveries), is what one more costs: start-up, connecting
# the clients and shutting down cancel out. Scenarios are those of bench-ab.sh, smaller
# (valgrind runs the server 50 to 100 times slower, on one thread at a time): acknowledged sends
# (100 senders, 16 in flight, 1 client per room) and deliveries (1 room x 100 clients, 10
# senders, 8 in flight). Timing still shapes the counts (how many events share a group commit, a
# batch, a socket write: more than at full speed, as the server is slower), so two runs of one
# build differ by up to about 5 % (sends) and 10 % (deliveries): compare medians of rounds.
#
# Needs valgrind, gcc and objcopy (Debian: apt-get install valgrind gcc binutils). Two things
# make Debian's valgrind 3.19 run a Swift 6 server: the binary's DWARF 5 debug information,
# which it cannot read, is stripped from a copy (symbols stay); and libdispatch parks the main
# thread in sigsuspend with a mask in read-only memory, which valgrind writes to (it removes
# its own signals from the mask) and crashes on: a preloaded sigsuspend copies the mask first.
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: tools/bench-instructions.sh NEW-CHATLOG [OLD-CHATLOG] | --profile sends|deliveries CHATLOG"
PROFILE=
if [[ ${1:-} == --profile ]]; then
    PROFILE=${2:?$USAGE}
    [[ $PROFILE == sends || $PROFILE == deliveries ]] || { echo "$USAGE" >&2; exit 2; }
    shift 2
fi
NEW=${1:?$USAGE}
OLD=${2:-}
# N: messages per sender in the smaller run (the larger sends 2N).
MESSAGES=${MESSAGES:-40}
# Rounds per build, alternated; the medians are reported.
ROUNDS=${ROUNDS:-3}
for tool in valgrind gcc objcopy; do
    command -v "$tool" > /dev/null || { echo "needs $tool (Debian: apt-get install valgrind gcc binutils)" >&2; exit 1; }
done
source tools/bench-servers.sh

cat > "$WORK/sigsuspend.c" <<'C'
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
/* valgrind writes to the mask it is given: give it a copy on the stack. */
int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
C
gcc -shared -fPIC -O2 -o "$WORK/libsigsuspend.so" "$WORK/sigsuspend.c"

# total BINARY SCENARIO MESSAGES: the instructions of one server run under callgrind.
total() {
    local binary=$1 scenario=$2 messages=$3 out="$WORK/callgrind.$RANDOM.out"
    START_SECONDS=120 start callgrind env LD_PRELOAD="$WORK/libsigsuspend.so" \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" \
        serve --journal "$WORK/journal-$RANDOM" --port 0 --dev --log-level warning \
        --events-per-second 1000000 --events-burst 1000000
    local args=(--rooms 100 --clients-per-room 1 --senders 100 --window 16)
    [[ $scenario == deliveries ]] && args=(--rooms 1 --clients-per-room 100 --senders 10 --window 8)
    "$NEW" bench load --url "$URL" --server-pid "$PID" --label "$scenario" --messages "$messages" "${args[@]}" \
        > "$WORK/load.json"
    grep -q '"lost":0,' "$WORK/load.json" || { echo "the load lost messages:" >&2; cat "$WORK/load.json" >&2; exit 1; }
    stop "$PID"
    awk '/^totals:/ { print $2 }' "$out"
    LAST_OUT=$out
}

# profile SCENARIO BINARY: per-function instructions of one more send or delivery.
profile() {
    local scenario=$1 binary="$WORK/chatlog-profile" n=$MESSAGES
    objcopy --strip-debug "$2" "$binary"
    total "$binary" "$scenario" "$n" > /dev/null
    local small=$LAST_OUT
    total "$binary" "$scenario" $(( 3 * n )) > /dev/null
    local large=$LAST_OUT
    local per=$(( 2 * n * 100 ))  # sends: 100 senders, one more each...
    [[ $scenario == deliveries ]] && per=$(( 2 * n * 10 * 100 ))  # ...deliveries: 10 senders to 100 readers
    python3 - "$small" "$large" "$per" <<'PY' | { command -v swift > /dev/null && swift demangle --simplified || cat; }
import collections, re, subprocess, sys
def functions(path, inclusive):
    args = ["callgrind_annotate", "--threshold=100"] + (["--inclusive=yes"] if inclusive else []) + [path]
    costs = collections.Counter()
    for line in subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines():
        match = re.match(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*)$", line)
        if not match or "PROGRAM TOTALS" in match.group(2):
            continue
        name = re.sub(r"\[/[^\]]*/chatlog-profile\]", "[chatlog]", match.group(2))
        costs[name] = max(costs[name], int(match.group(1).replace(",", "")))
    return costs
small, large, per = sys.argv[1], sys.argv[2], float(sys.argv[3])
for inclusive in (False, True):
    a, b = functions(small, inclusive), functions(large, inclusive)
    rows = [(b[k] - a[k]) / per for k in set(a) | set(b)]
    names = [k for k in set(a) | set(b)]
    ranked = sorted(zip(rows, names), reverse=True)
    if inclusive:
        ranked = [(v, k) for v, k in ranked if k.endswith("[chatlog]")]
    print("== " + ("inclusive, the project's functions" if inclusive else "self") + ", instructions per one more")
    for value, name in ranked[:40]:
        print(f"{value:9.0f}  {name[:160]}")
PY
}

if [[ -n $PROFILE ]]; then
    profile "$PROFILE" "$NEW"
    exit 0
fi

# measure LABEL BINARY: one round's instructions per acked send and per delivery, appended to
# $WORK/LABEL.counts.
measure() {
    local label=$1 binary=$2 one two n=$MESSAGES
    one=$(total "$binary" sends "$n"); two=$(total "$binary" sends $(( 2 * n )))
    local per_send=$(( (two - one) / (100 * n) ))
    one=$(total "$binary" deliveries "$n"); two=$(total "$binary" deliveries $(( 2 * n )))
    local per_delivery=$(( (two - one) / (10 * n * 100) ))
    echo "$label: $per_send instructions per acknowledged send, $per_delivery per delivery"
    echo "$per_send $per_delivery" >> "$WORK/$label.counts"
}

objcopy --strip-debug "$NEW" "$WORK/chatlog-new"
[[ -n $OLD ]] && objcopy --strip-debug "$OLD" "$WORK/chatlog-old"
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round"
    if [[ -z $OLD ]]; then
        measure new "$WORK/chatlog-new"
    elif (( round % 2 == 1 )); then
        measure new "$WORK/chatlog-new"; measure old "$WORK/chatlog-old"
    else
        measure old "$WORK/chatlog-old"; measure new "$WORK/chatlog-new"
    fi
done
for label in new old; do
    [[ -f $WORK/$label.counts ]] || continue
    sort -n -k1 "$WORK/$label.counts" | awk -v label="$label" '{ s[NR] = $1 } END {
        printf "%s: instructions per acknowledged send: median %d (%d-%d)", label, s[int((NR + 1) / 2)], s[1], s[NR] }'
    sort -n -k2 "$WORK/$label.counts" | awk '{ d[NR] = $2 } END {
        printf "; per delivery: median %d (%d-%d)\n", d[int((NR + 1) / 2)], d[1], d[NR] }'
done
