#!/usr/bin/env bash
# Reference-counting and allocation calls per packet of each `chatlog bench socketio` path,
# counted with uprobes on the Swift runtime's and libc's entry points: unlike timings, the
# same in every run, so codec changes can be compared on a noisy machine.
#
#   tools/codec-refcounts.sh [path/to/chatlog]      # needs perf and root (uprobes)
set -euo pipefail
chatlog=${1:-.build/release/chatlog}
packets=100000
runtime=$(ldd "$chatlog" | awk '/libswiftCore.so/ {print $3}')
libc=$(ldd "$chatlog" | awk '/libc.so.6/ {print $3}')
[ -n "$runtime" ] && [ -n "$libc" ] || { echo "cannot find libswiftCore.so or libc.so.6 for $chatlog" >&2; exit 1; }
probes=()
for function in swift_retain swift_release swift_bridgeObjectRetain swift_bridgeObjectRelease swift_allocObject; do
    perf probe -q -x "$runtime" "$function" 2>/dev/null || true
    probes+=("probe_libswiftCore:$function")
done
perf probe -q -x "$libc" malloc 2>/dev/null || true
probes+=("probe_libc:malloc")
events=$(IFS=,; echo "${probes[*]}")
for path in relay build arguments typed; do
    perf stat -x, -e "$events" "$chatlog" bench socketio --packets "$packets" --only "$path" --rounds 1 2>&1 >/dev/null |
        awk -F, -v n="$packets" -v path="$path" '$3 ~ /probe_/ {split($3, name, ":"); line = line sprintf(" %s=%.1f", name[2], $1 / n)} END {print path ":" line}'
done
