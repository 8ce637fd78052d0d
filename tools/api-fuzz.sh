#!/usr/bin/env bash
# Runs schemathesis (property-based tests from the OpenAPI document) against a live
# `chatlog serve` in token mode: every generated request, valid and invalid, must get a
# non-5xx answer whose status, content type, headers and body the document allows, and
# requests without a valid token must be refused.
#
#   tools/api-fuzz.sh [EXAMPLES]     EXAMPLES per operation and phase (default 25: the test
#                                    suite's short run; 500 is the documented long run)
#
# Not checked: `positive_data_acceptance` and `negative_data_rejection`. Ids and texts are
# limited in UTF-8 bytes, which JSON Schema cannot state (it counts characters), so some
# schema-valid requests are refused and the document's character bounds are only upper ones.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-25}"
chatlog="${CHATLOG:-.build/debug/chatlog}"
st=.venv/bin/schemathesis
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT

# A generous rate limit: the run is one user sending as fast as it can.
"$chatlog" serve --journal "$work/journal" --host 127.0.0.1 --port 0 \
    --events-per-second 100000 --events-burst 100000 >"$work/stdout" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    grep -q "^listening on " "$work/stdout" && break
    sleep 0.1
done
url="$(sed -n 's/^listening on //p' "$work/stdout")"
[ -n "$url" ] || { echo "api-fuzz: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
token="$("$chatlog" token issue fuzzer --journal "$work/journal")"

status=0
"$st" run "$url/openapi.yaml" --url "$url" -H "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance,negative_data_rejection \
    --max-examples "$examples" --workers 1 --seed "${SEED:-$RANDOM}" --request-timeout 10 \
    --suppress-health-check all --warnings off || status=$?
if grep -q " critical " "$work/server.log"; then
    echo "api-fuzz: the server logged a critical error" >&2
    grep " critical " "$work/server.log" >&2
    status=1
fi
exit "$status"
