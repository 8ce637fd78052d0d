#!/usr/bin/env bash
# Fuzzes the Socket.IO / Engine.IO decoders (polling payloads, packets, the JSON validator
# against the parser, and both session state machines) with libFuzzer and AddressSanitizer,
# through Tests/SocketIOTests/FuzzHarness.swift, starting from the committed corpus.
#
#   tools/fuzz.sh [SECONDS]
#
# SECONDS (default 60) bounds the run; the corpus it grows lives in a temporary folder. The
# committed corpus stays small on purpose (hand-picked inputs, one per edge case: a
# one-minute run would add about a thousand generated ones). A broken property or a crash
# leaves crash-* in the current directory: once fixed, add that input to the committed
# corpus under a name that says what it is; FuzzCorpusTests replays the corpus on every
# test run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:-60}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The C helpers (`import CByteScan`), as SwiftPM would map them.
mkdir -p "$work/include"
printf 'module CByteScan {\n    header "%s"\n    export *\n}\n' "$root/Sources/CByteScan/include/bytescan.h" > "$work/include/module.modulemap"

swiftc -sanitize=fuzzer,address -parse-as-library -O -g \
  -module-name SocketIOFuzz -D SOCKETIO_FUZZ_SINGLE_MODULE -I "$work/include" \
  "$root"/Sources/SocketIO/*.swift "$root"/Tests/SocketIOTests/FuzzHarness.swift "$root"/tools/fuzz/Entry.swift \
  -o "$work/fuzz-socketio"

# Swift's crash backtracer reads memory in ways AddressSanitizer reports: leave it off.
export SWIFT_BACKTRACE=enable=no
mkdir -p "$work/corpus"
cp "$root"/Tests/SocketIOTests/FuzzCorpus/* "$work/corpus/"
"$work/fuzz-socketio" -max_total_time="$seconds" -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -print_final_stats=1 "$work/corpus"
