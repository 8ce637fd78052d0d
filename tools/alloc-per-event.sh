#!/usr/bin/env bash
# Heap allocations per appended-and-read event: runs `chatlog bench journal` for N and 2N
# events with tools/malloc-count.c preloaded and divides the difference in allocation calls
# by N, so fixed costs (start-up, the record pool, threads) cancel out. (valgrind 3.19 cannot
# read the DWARF 5 of Swift 6 binaries, hence the small preload library.)
#
#   tools/alloc-per-event.sh [N]        (default N=200000; builds release if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
binary=.build/release/chatlog
[ -x "$binary" ] || swift build -c release >/dev/null
library=$(mktemp --suffix=.so)
trap 'rm -f "$library"' EXIT
cc -O2 -shared -fPIC -o "$library" tools/malloc-count.c

# Journal appends and reads only: --skip-sqlite. 64 producers x 16 records as by default.
allocs() {
    LD_PRELOAD="$library" "$binary" bench journal --events "$1" --skip-sqlite --durability none 2>&1 >/dev/null \
        | sed -n 's/^malloc-count: \([0-9]*\) allocations$/\1/p'
}
first=$(allocs "$n")
second=$(allocs $((2 * n)))
python3 - "$n" "$first" "$second" <<'PY'
import json, sys
n, a, b = (int(x) for x in sys.argv[1:])
per_event = (b - a) / n
print(f"{a} allocations for {n} events, {b} for {2 * n}: {per_event:.3f} per appended+read event")
print(json.dumps({"events": n, "allocs_n": a, "allocs_2n": b, "allocs_per_event": round(per_event, 3)}))
PY
